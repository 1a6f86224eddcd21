#!/usr/bin/env bash
# The test command from the README: installs what the tests need, then runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
start=$(date +%s)
cargo test --workspace "$@"
echo "tests: passed in $(( $(date +%s) - start )) s"
