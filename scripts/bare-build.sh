#!/usr/bin/env bash
# Builds the README's main job (`cargo build --release --bin keel`) as a newcomer's machine
# would: with nothing but the Rust toolchain. A `protoc` that always fails is put first on
# PATH and named by $PROTOC, so any build script that reaches for the protobuf compiler
# (prost-build, tonic-build, protobuf-codegen in protoc mode) fails this build loudly
# instead of passing on a machine that happens to have protoc installed.
# Issue 7: `etcd-client`'s build script once made the main command fail this way.
set -euo pipefail
cd "$(dirname "$0")/.."
fake=$(mktemp -d)
trap 'rm -rf "$fake"' EXIT
cat > "$fake/protoc" <<'SH'
#!/bin/sh
echo "bare-build: a build script called protoc, which a fresh machine does not have" >&2
exit 1
SH
chmod +x "$fake/protoc"
echo "bare-build: cargo build --release --bin keel with protoc unavailable" >&2
PATH="$fake:$PATH" PROTOC="$fake/protoc" cargo build --release --bin keel
echo "bare-build: ok" >&2
