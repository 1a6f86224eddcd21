#!/usr/bin/env bash
# The test command from the README: installs what the tests need, then runs them all.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
start=$(date +%s)
# The README's main job must build with nothing but the Rust toolchain: build it with
# protoc made unavailable (the seed sweeps below use this release binary).
bash scripts/bare-build.sh
# In CI the property tests draw from a fixed seed so a run is reproducible; locally they
# explore new cases each run (set PROPTEST_RNG_SEED yourself to pin them). Failures
# found either way are saved in the *.proptest-regressions files and replayed first.
if [[ "${CI:-}" == "true" && -z "${PROPTEST_RNG_SEED:-}" ]]; then
    export PROPTEST_RNG_SEED=20261125
fi
cargo test --workspace "$@"
# Seed sweeps: every scenario on a hundred seeds, with its own faults and with
# --nemesis, on the release binary built above (SWEEP_SEEDS=A..B to change the range).
bash scripts/sweep.sh
echo "tests: passed in $(( $(date +%s) - start )) s"
