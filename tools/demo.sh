#!/usr/bin/env bash
# `make demo`: install a real OpenBao (raft storage, real init and unseal) with playbooks/vault_install.yml,
# start the lab Kubernetes clusters with the K10 emulator and protect K10's primary key with a Vault passkey
# (playbooks/k10_vault_setup.yml), start PostgreSQL, seed keys, consumer files and a table, run rotate_keys.yml twice (K10 is one of the
# consumers; the second run must change nothing), check K10 still decrypts its primary key, then the the K10 migration-string failure
# migration (K10 upgraded on the source -> playbooks/k10_migrate.yml), and stop everything.
#
# DEMO_COLLECTIONS_PATH=<dir>: run the playbooks of the collection installed there (ansible-playbook
# keyops.lifecycle.<name>) instead of this checkout's - `make demo-installed` builds, installs and does that.
set -euo pipefail
cd "$(dirname "$0")/.."
demo_dir="${DEMO_DIR:-$PWD/build/demo}"
if [ -n "${DEMO_COLLECTIONS_PATH:-}" ]; then
  export ANSIBLE_COLLECTIONS_PATH="$DEMO_COLLECTIONS_PATH"
  playbook() { echo "keyops.lifecycle.$1"; }
  echo "== using the collection installed in $DEMO_COLLECTIONS_PATH"
  ansible-galaxy collection list keyops.lifecycle -p "$DEMO_COLLECTIONS_PATH" 2>/dev/null | grep keyops.lifecycle
else
  playbook() { echo "playbooks/$1.yml"; }
fi
if [ -f "$demo_dir/server/install-vars.json" ]; then python -m lab install-stop "$demo_dir/server/install-vars.json" || true; fi
rm -rf "$demo_dir" && mkdir -p "$demo_dir"
# Modules run with the venv Python, which has hvac.
ANSIBLE_PYTHON_INTERPRETER="$(command -v python)"
export ANSIBLE_PYTHON_INTERPRETER
export ANSIBLE_NOCOLOR=1 ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0 ANSIBLE_DISPLAY_SKIPPED_HOSTS=0
printf 'localhost ansible_connection=local\n' > "$demo_dir/hosts.ini"

install_vars=$(python -m lab install-vars "$demo_dir/server")
export LAB_DIR="$demo_dir/lab"
trap 'python -m lab down >/dev/null; python -m lab install-stop "$install_vars"' EXIT
echo "== installing OpenBao with playbooks/vault_install.yml (raft storage, init, unseal, transit)"
ansible-playbook -i "$demo_dir/hosts.ini" "$(playbook vault_install)" -e "@$install_vars" > "$demo_dir/install.log" 2>&1 \
  || { cat "$demo_dir/install.log"; exit 1; }
grep -A2 "PLAY RECAP" "$demo_dir/install.log"
keys_file=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["vault_keys_file"])' "$install_vars")
VAULT_ADDR=$(python -c 'import json,sys; print("http://" + json.load(open(sys.argv[1]))["vault_server_listener"]["address"])' "$install_vars")
export VAULT_ADDR
VAULT_TOKEN=$(python -c 'import json,sys; print(json.load(open(sys.argv[1]))["root_token"])' "$keys_file")
export VAULT_TOKEN
echo "== OpenBao at $VAULT_ADDR is initialised (keys in $keys_file, mode 0600) and unsealed"

echo "== starting PostgreSQL on 127.0.0.1 (the table payroll's ciphertexts live in)"
eval "$(python -m lab up postgres)"
# The database password reaches the module as libpq's own PGPASSWORD: it is in no vars file and no output.
export PGPASSWORD="$LAB_POSTGRES_PASSWORD"
vars_file=$(python -m lab seed-transit "$demo_dir/consumers" --k10-context lab-source \
  --k10-kubeconfig "$LAB_DIR/kube/kubeconfig" --database-url "$LAB_POSTGRES_URL")
echo "== seeded keys kasten, payroll, backups and their consumer files and table (thousands of ciphertexts, some at old versions)"

echo "== starting two lab Kubernetes clusters (source, destination) running the K10 emulator"
eval "$(python -m lab up k8s k10)"
kubectl() { "$(dirname "$(command -v python)")/kubectl" "$@"; }
echo "== K10 on the source: Vault transit key 'kasten' protects its primary key (playbooks/k10_vault_setup.yml)"
ansible-playbook -i "$demo_dir/hosts.ini" "$(playbook k10_vault_setup)" -e k10_vault_setup_key=kasten \
  -e k10_vault_setup_context=lab-source -e "k10_vault_setup_token_file=$demo_dir/secrets/k10-vault-token" \
  -e "k10_vault_setup_helm_values_file=$demo_dir/secrets/k10-values.yaml" \
  -e '{"k10_vault_setup_delete_passkeys": ["k10-default-passphrase"]}' > "$demo_dir/k10-setup.log" 2>&1 \
  || { cat "$demo_dir/k10-setup.log"; exit 1; }
grep -A2 "PLAY RECAP" "$demo_dir/k10-setup.log"
kubectl --context lab-source get passkeys.vault.kio.kasten.io -o 'custom-columns=NAME:.metadata.name,INUSE:.status.inuse,VERSION:.metadata.annotations.keyops\.io/transit-key-version'
run() {
  ansible-playbook -i "$demo_dir/hosts.ini" "$(playbook rotate_keys)" -e "@$vars_file" \
    -e "rotation_report_dir=$demo_dir/reports" -e "transit_rotation_backup_dir=$demo_dir/transit-backups" "$@" > "$demo_dir/run.log" 2>&1 || { cat "$demo_dir/run.log"; exit 1; }
  grep -A2 "PLAY RECAP" "$demo_dir/run.log"
  echo; cat "$demo_dir/reports/rotation-report.md"; echo
}
echo "== run 1: 30 days later (demo_rotate_older_than=0s makes every key due): rotate, rewrap, raise min_decryption_version"
run -e demo_rotate_older_than=0s
echo "== run 2: the same scheduled job again: nothing is due, nothing changes"
run
grep -q "changed=0" "$demo_dir/run.log" || { echo "demo: the second run changed something" >&2; exit 1; }
echo "== K10 after the rotation: a passkey of the new key version is in use, and the primary key still decrypts"
kubectl --context lab-source get passkeys.vault.kio.kasten.io -o 'custom-columns=NAME:.metadata.name,INUSE:.status.inuse,VERSION:.metadata.annotations.keyops\.io/transit-key-version'
python -m lab k10 check --context lab-source | tee "$demo_dir/k10-check.json"
grep -q '"unlocked"' "$demo_dir/k10-check.json" || { echo "demo: K10 cannot decrypt its primary key" >&2; exit 1; }

echo "== the K10 migration-string failure: K10 upgraded on the source changes its migration string; the destination's import policy is stale"
python -m lab k10 upgrade --context lab-source >/dev/null
python -m lab k10 export --context lab-source >/dev/null
cat > "$demo_dir/pairs.yml" <<'PAIRS'
k10_migration_pairs:
  - name: source-to-destination
    source: {context: lab-source, policy: lab-export}
    destination: {context: lab-destination, policy: lab-import}
PAIRS
ansible-playbook -i "$demo_dir/hosts.ini" "$(playbook k10_migrate)" -e "@$demo_dir/pairs.yml" \
  > "$demo_dir/migrate.log" 2>&1 || { cat "$demo_dir/migrate.log"; exit 1; }
grep -A2 "PLAY RECAP" "$demo_dir/migrate.log"
echo "== demo finished: the second rotation run reported changed=0, K10 decrypts its primary key, the import completed"
