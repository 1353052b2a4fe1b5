#!/usr/bin/env bash
# `make demo`: start the lab, run rotate_keys.yml twice (the second run must change nothing), stop the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
export LAB_DIR="${LAB_DIR:-$PWD/build/demo-lab}"
demo_dir="$PWD/build/demo"
rm -rf "$demo_dir" && mkdir -p "$demo_dir"
trap 'python -m lab down >/dev/null' EXIT
eval "$(python -m lab up vault)"
echo "== lab OpenBao at $VAULT_ADDR"
vars_file=$(python -m lab seed-transit "$demo_dir/consumers")
echo "== seeded keys kasten, payroll, backups and their consumer files (thousands of ciphertexts, some at old versions)"
# Modules run with the venv Python, which has hvac.
export ANSIBLE_PYTHON_INTERPRETER="$(command -v python)"
export ANSIBLE_NOCOLOR=1 ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0 ANSIBLE_DISPLAY_SKIPPED_HOSTS=0
run() {
  ansible-playbook playbooks/rotate_keys.yml -e "@$vars_file" -e "rotation_report_dir=$demo_dir/reports" "$@" \
    > "$demo_dir/run.log" 2>&1 || { cat "$demo_dir/run.log"; exit 1; }
  grep -A3 "PLAY RECAP" "$demo_dir/run.log"
  echo; cat "$demo_dir/reports/rotation-report.md"; echo
}
echo "== run 1: 30 days later (demo_rotate_older_than=0s makes every key due): rotate, rewrap, raise min_decryption_version"
run -e demo_rotate_older_than=0s
echo "== run 2: the same scheduled job again: nothing is due, nothing changes"
run
grep -q "changed=0" "$demo_dir/run.log" || { echo "demo: the second run changed something" >&2; exit 1; }
echo "== demo finished: the second run reported changed=0"
