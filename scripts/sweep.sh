#!/usr/bin/env bash
# Seed sweeps of every scenario, with the scenario's own faults and with --nemesis,
# using the release binary (scripts/bare-build.sh builds it). A liveness bug that
# shows in a few percent of runs passes two fixed seeds almost always; a hundred
# seeds per scenario catch it. Seeds run in parallel (--jobs: every core).
#
#   scripts/sweep.sh                 # seeds 1..101 of every scenario, both ways
#   SWEEP_SEEDS=1..5001 scripts/sweep.sh   # a long sweep (add SWEEP_YES=1 past 10,000)
#   SWEEP_SCENARIOS="api-replicas store-lease" scripts/sweep.sh   # only these, in this order
set -euo pipefail
cd "$(dirname "$0")/.."
keel=${KEEL:-./target/release/keel}  # KEEL: another binary (e.g. a copy, so a rebuild does not change it mid-sweep)
seeds=${SWEEP_SEEDS:-1..101}
extra=()
[[ -n "${SWEEP_YES:-}" ]] && extra+=(--yes)
failed=0
run() {
  if ! $keel "$@"; then failed=$((failed + 1)); fi
}
all=$($keel scenarios --names)
nemesis=$($keel scenarios --names --nemesis)
wanted=${SWEEP_SCENARIOS:-$all}
for scenario in $wanted; do
  if ! grep -qx -- "$scenario" <<<"$all"; then
    echo "sweep: no scenario $scenario (keel scenarios lists them)" >&2
    exit 2
  fi
done
for scenario in $wanted; do
  run sim --scenario "$scenario" --seeds "$seeds" "${extra[@]}"
done
for scenario in $wanted; do
  grep -qx -- "$scenario" <<<"$nemesis" || continue
  run sim --scenario "$scenario" --seeds "$seeds" --nemesis "${extra[@]}"
done
if [[ $failed -gt 0 ]]; then
  echo "sweep: $failed sweeps had failing seeds (tables above)"
  exit 1
fi
echo "sweep: every scenario held on seeds $seeds, and every one that takes it with --nemesis"
