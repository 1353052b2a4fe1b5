#!/usr/bin/env bash
# `make demo`: start the lab, run the job twice (the second run must change nothing), stop the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
export LAB_DIR="${LAB_DIR:-$PWD/build/demo-lab}"
trap 'python -m lab down >/dev/null' EXIT
eval "$(python -m lab up vault)"
echo "== lab OpenBao at $VAULT_ADDR"
# Modules run with the venv Python, which has hvac.
export ANSIBLE_PYTHON_INTERPRETER="$(command -v python)"
export ANSIBLE_NOCOLOR=1 ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0
echo "== run 1: keys are created and rotated (rotation forced due with demo_rotate_older_than=0s)"
ansible-playbook -i localhost, playbooks/demo_transit_keys.yml -e demo_rotate_older_than=0s
echo "== run 2: the same scheduled job a moment later: nothing is due, nothing changes"
ansible-playbook -i localhost, playbooks/demo_transit_keys.yml | tee build/demo-run2.log
grep -q "changed=0" build/demo-run2.log || { echo "demo: the second run changed something" >&2; exit 1; }
echo "== demo finished: second run reported changed=0"
