#!/usr/bin/env bash
# Usage: molecule_test.sh SCENARIO...
# Runs `molecule test` for each scenario and fails unless every step of its test sequence ran
# and succeeded: molecule itself only warns, and exits 0, when a step has no playbook.
set -euo pipefail
[ $# -gt 0 ] || { echo "molecule_test.sh: name at least one scenario" >&2; exit 2; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for scenario in "$@"; do
  start=$SECONDS
  NO_COLOR=1 molecule test -s "$scenario" 2>&1 | tee "$log"
  recap=$(grep -E "^${scenario} +: actions=" "$log" | tail -1) || {
    echo "molecule_test.sh: $scenario: no scenario recap in molecule's output" >&2; exit 1; }
  count() { sed -nE "s/.* $1=([0-9]+).*/\1/p" <<<"$recap"; }
  if [ "$(count missing)" != 0 ] || [ "$(count failed)" != 0 ] || [ "$(count skipped)" != 0 ] \
     || [ "$(count successful)" != "$(count actions)" ] || [ "$(count actions)" = 0 ]; then
    echo "molecule_test.sh: $scenario: not every step ran and succeeded: $recap" >&2
    exit 1
  fi
  echo "molecule_test.sh: $scenario: $(count successful) steps succeeded in $((SECONDS - start)) s"
done
