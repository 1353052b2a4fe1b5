#!/usr/bin/env bash
# `make demo`: install a real OpenBao (raft storage, real init and unseal) with playbooks/vault_install.yml,
# seed keys and consumer files, run rotate_keys.yml twice (the second run must change nothing), stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
demo_dir="$PWD/build/demo"
if [ -f "$demo_dir/server/install-vars.json" ]; then python -m lab install-stop "$demo_dir/server/install-vars.json" || true; fi
rm -rf "$demo_dir" && mkdir -p "$demo_dir"
# Modules run with the venv Python, which has hvac.
export ANSIBLE_PYTHON_INTERPRETER="$(command -v python)"
export ANSIBLE_NOCOLOR=1 ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0 ANSIBLE_DISPLAY_SKIPPED_HOSTS=0
printf 'localhost ansible_connection=local\n' > "$demo_dir/hosts.ini"

install_vars=$(python -m lab install-vars "$demo_dir/server")
trap 'python -m lab install-stop "$install_vars"' EXIT
echo "== installing OpenBao with playbooks/vault_install.yml (raft storage, init, unseal, transit)"
ansible-playbook -i "$demo_dir/hosts.ini" playbooks/vault_install.yml -e "@$install_vars" > "$demo_dir/install.log" 2>&1 \
  || { cat "$demo_dir/install.log"; exit 1; }
grep -A2 "PLAY RECAP" "$demo_dir/install.log"
keys_file=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["vault_keys_file"])' "$install_vars")
export VAULT_ADDR=$(python -c 'import json,sys; print("http://" + json.load(open(sys.argv[1]))["vault_listener"]["address"])' "$install_vars")
VAULT_TOKEN=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["root_token"])' "$keys_file")
export VAULT_TOKEN
echo "== OpenBao at $VAULT_ADDR is initialised (keys in $keys_file, mode 0600) and unsealed"

vars_file=$(python -m lab seed-transit "$demo_dir/consumers")
echo "== seeded keys kasten, payroll, backups and their consumer files (thousands of ciphertexts, some at old versions)"
run() {
  ansible-playbook -i "$demo_dir/hosts.ini" playbooks/rotate_keys.yml -e "@$vars_file" \
    -e "rotation_report_dir=$demo_dir/reports" "$@" > "$demo_dir/run.log" 2>&1 || { cat "$demo_dir/run.log"; exit 1; }
  grep -A2 "PLAY RECAP" "$demo_dir/run.log"
  echo; cat "$demo_dir/reports/rotation-report.md"; echo
}
echo "== run 1: 30 days later (demo_rotate_older_than=0s makes every key due): rotate, rewrap, raise min_decryption_version"
run -e demo_rotate_older_than=0s
echo "== run 2: the same scheduled job again: nothing is due, nothing changes"
run
grep -q "changed=0" "$demo_dir/run.log" || { echo "demo: the second run changed something" >&2; exit 1; }
echo "== demo finished: the second run reported changed=0"
