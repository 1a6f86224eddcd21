#!/usr/bin/env bash
# Builds the README's main job (`cargo build --release --bin keel`) as a newcomer's machine
# would: with nothing but the Rust toolchain, so no `protoc`. Issue 7: `etcd-client`'s build
# script once made the main command fail this way.
#
# "No protoc" is simulated faithfully, not with a protoc that fails: $PROTOC is unset and
# every PATH directory holding a `protoc` is replaced by a shadow directory of links to
# everything else in it. A build script that needs protoc (prost-build, tonic-build) fails
# loudly, as on a bare machine; one that brings its own (raft-proto's protobuf-build falls
# back to a protoc bundled in the crate when none is found) builds, as on a bare machine.
# (Session 3's version put a failing `protoc` first on PATH: protobuf-build then panicked on
# its empty version output, which a bare machine never shows — CI failed on that.)
#
# Cargo does not rerun a build script that already ran, so on a warm target directory this
# proves less than on CI's fresh clone; BARE_TARGET=target/bare gives a cold one locally.
set -euo pipefail
cd "$(dirname "$0")/.."
shadow_root=$(mktemp -d)
trap 'rm -rf "$shadow_root"' EXIT
bare_path=()
IFS=: read -r -a dirs <<<"$PATH"
for dir in "${dirs[@]}"; do
  [[ -n "$dir" ]] || continue
  if [[ -e "$dir/protoc" ]]; then
    shadow="$shadow_root/${#bare_path[@]}"
    mkdir -p "$shadow"
    for entry in "$dir"/* "$dir"/.[!.]*; do
      [[ -e "$entry" && "$(basename "$entry")" != protoc ]] || continue
      ln -s "$entry" "$shadow/"
    done
    bare_path+=("$shadow")
  else
    bare_path+=("$dir")
  fi
done
bare_path_joined=$(IFS=:; echo "${bare_path[*]}")
if PATH="$bare_path_joined" command -v protoc >/dev/null 2>&1; then
  echo "bare-build: could not hide protoc ($(PATH="$bare_path_joined" command -v protoc))" >&2
  exit 1
fi
echo "bare-build: cargo build --release --bin keel with no protoc on PATH and PROTOC unset" >&2
env -u PROTOC PATH="$bare_path_joined" CARGO_TARGET_DIR="${BARE_TARGET:-target}" \
  cargo build --release --bin keel
echo "bare-build: ok" >&2
