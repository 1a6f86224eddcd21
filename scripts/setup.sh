#!/usr/bin/env bash
# Installs what keel's tests need beyond the Rust toolchain. Idempotent and quick when
# everything is already there. Needs root (or sudo) for apt-get; without it, it says
# what is missing and the tests that need those parts skip themselves with a message
# (and fail in CI, where CI=true: CI must never pass with parts missing).
set -uo pipefail

# Debian packages the test suite uses, now or in the issues on the way
# (runc + busybox for containers, iptables/nftables for Services, etcd for store
# comparisons, haproxy in front of API servers; nothing here may be needed to build: see scripts/bare-build.sh).
packages=(runc iptables nftables busybox-static containernetworking-plugins etcd-server haproxy iproute2)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: not root and no sudo: cannot install ${missing[*]}; tests that need them will skip (fail in CI)" >&2
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get update -qq >/dev/null 2>&1; then
  echo "setup: apt-get update failed; tests that need ${missing[*]} will skip (fail in CI)" >&2
  exit 0
fi
# Install one by one so one unavailable package does not block the rest.
for p in "${missing[@]}"; do
  if ! $SUDO apt-get install -y -qq --no-install-recommends "$p" >/dev/null 2>&1; then
    echo "setup: could not install $p; tests that need it will skip (fail in CI)" >&2
  fi
done
# Debian's etcd-server starts a system etcd on the default ports: keel's tests start
# their own on free ports, so stop the packaged one if it is running.
if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl stop etcd >/dev/null 2>&1 || true; fi
echo "setup: done"
exit 0
