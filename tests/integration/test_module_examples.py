"""Every module's EXAMPLES, run as written against the lab.

The examples name production things (https://vault.example.com:8200, /etc/keystone/fernet-keys, the contexts
prod/destination/green ...).  The only change made before running them is the table of placeholders below,
mapped to the lab's servers and temporary paths; the tasks, options and values are otherwise the docs'.
"""

import base64
import os
import re

import hvac
import kubernetes
import pytest
import yaml
from cryptography.fernet import Fernet

from lab import transit_data
from lab.kube_lab import EXPORT_POLICY, IMPORT_POLICY, KubeLab, lab_operation
from lab.openbao import RAFT_CONFIG, OpenBaoDevServer, OpenBaoRaftServer, bao_binary
from lab import _process

from _ansible import ROOT, run_playbook

MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules"))
                 if name.endswith(".py") and not name.startswith("_"))
# Which test runs each module's examples, in the order they run (later examples use what earlier ones made).
VAULT_AND_KUBE = ["vault_mount", "vault_policy", "vault_token", "vault_transit_rewrap", "vault_transit_key",
                  "vault_transit_key_info", "vault_transit_keys", "transit_rotation_report", "vault_k8s_auth",
                  "vault_k8s_auth_role", "vault_k8s_auth_info", "vault_k8s_auth_probe", "k8s_secret_rewrap",
                  "k8s_secret", "k10_passkey", "k10_passkey_info", "k10_passkey_rotate", "k10_import_policy"]
SERVER_AND_KEYS = ["keyrepo_info", "keyrepo_rotate", "process_service", "vault_init", "vault_unseal",
                   "vault_raft_snapshot"]
DATABASES = ["database_rewrap"]


def examples(module, substitutions):
    with open(os.path.join(ROOT, "plugins", "modules", module + ".py")) as handle:
        text = re.search(r'EXAMPLES = r?"""(.*?)"""', handle.read(), re.S).group(1)
    for placeholder, value in substitutions:
        text = text.replace(placeholder, value)
    tasks = yaml.safe_load(text)
    assert tasks, module
    return tasks


def test_every_module_has_examples_that_a_test_runs():
    assert sorted(VAULT_AND_KUBE + SERVER_AND_KEYS + DATABASES) == MODULES


def check(run, modules, substitutions):
    assert run.rc == 0, run.output[-6000:]
    names = [entry["task"] for entry in run.results]
    for module in modules:
        for task in examples(module, substitutions):
            inner = task.get("block", [task])
            for step in inner:
                assert step["name"] in names, "%s: example %r did not run" % (module, step["name"])
    failed = [entry["task"] for entry in run.results if entry["result"].get("failed")]
    assert failed == [], failed


@pytest.fixture()
def examples_vault(tmp_path):
    with OpenBaoDevServer(str(tmp_path / "openbao")) as server:
        yield server


def test_vault_kubernetes_and_k10_examples(examples_vault, kms, tmp_path):
    vault = examples_vault
    client = hvac.Client(url=vault.address, token=vault.token)
    # What the examples assume exists: a transit mount with kasten (4 versions), payroll, backups, app and k10,
    # payroll also in transit-hr, consumer files holding v1 ciphertexts.
    client.sys.enable_secrets_engine("transit", path="transit")
    client.sys.enable_secrets_engine("transit", path="transit-hr")
    for mount, name, versions in (("transit", "kasten", 4), ("transit", "payroll", 2), ("transit", "backups", 1),
                                  ("transit", "app", 1), ("transit", "k10", 4), ("transit-hr", "payroll", 2)):
        client.secrets.transit.create_key(name, mount_point=mount)
        for _rotation in range(versions - 1):
            client.secrets.transit.rotate_key(name, mount_point=mount)
    files = tmp_path / "files"
    files.mkdir()
    kasten_v1 = "\n".join(c for c in [client.secrets.transit.encrypt_data(
        "kasten", base64.b64encode(p.encode()).decode(), key_version=1)["data"]["ciphertext"]
        for p in transit_data.plaintexts(3, "kasten")])
    (files / "ciphertexts.txt").write_text(kasten_v1 + "\n")
    (files / "records.jsonl").write_text("".join(
        '{"id": %d, "secret": "%s"}\n' % (i, client.secrets.transit.encrypt_data(
            "payroll", base64.b64encode(b"salary-%d" % i).decode(), key_version=1)["data"]["ciphertext"])
        for i in range(2)))
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(mode=0o700)
    token_file = secrets_dir / "k10-vault-token"
    token_file.write_text(vault.token)
    token_file.chmod(0o600)

    with KubeLab(str(tmp_path / "kube"), vault_address=vault.address, vault_token=vault.token,
                 kms=None, refresh_seconds=0.3) as lab:
        kubeconfig = lab.kubeconfig_path
        with open(os.path.join(lab.workdir, "tls", "ca.crt")) as handle:
            (tmp_path / "green-ca.pem").write_text(handle.read())
        source = lab.servers["source"].address
        api = kubernetes.config.new_client_from_config(kubeconfig, context="lab-source")
        core = kubernetes.client.CoreV1Api(api)
        core.create_namespace(kubernetes.client.V1Namespace(metadata=kubernetes.client.V1ObjectMeta(name="payments")))
        core.create_namespaced_service_account("payments", kubernetes.client.V1ServiceAccount(
            metadata=kubernetes.client.V1ObjectMeta(name="app")))
        app_ciphertext = client.secrets.transit.encrypt_data("app", base64.b64encode(b"app-dek").decode())
        core.create_namespaced_secret("payments", kubernetes.client.V1Secret(
            metadata=kubernetes.client.V1ObjectMeta(name="app-wrapped-keys"),
            string_data={"dek": app_ciphertext["data"]["ciphertext"]}))
        lab_operation(kubeconfig, "lab-source", "k10/export", {"policy": EXPORT_POLICY})

        substitutions = [
            ("https://vault.example.com:8200", vault.address),
            ("/var/lib/app/", str(files) + "/"), ("/srv/payroll/", str(files) + "/"),
            ("/root/.secrets/", str(secrets_dir) + "/"),
            ("https://green.example.com:6443", source), ("https://blue.example.com:6443", source),
            ("context: green", "context: lab-source"), ("context: prod", "context: lab-source"),
            ("context: destination", "context: lab-destination"),
            ("import-from-prod", IMPORT_POLICY), ("export-to-dr", EXPORT_POLICY),
            ("./rotation-reports", str(tmp_path / "reports")),
        ]
        tasks = [task for module in VAULT_AND_KUBE for task in examples(module, substitutions)]
        results = [{"name": "kasten", "mount": "transit", "rotated": True, "version_before": 3, "version_after": 4,
                    "min_decryption_version_before": 1, "min_decryption_version_after": 4,
                    "min_available_version_after": 0, "oldest_version_in_use": 4, "consumers": [], "blocked_by": [],
                    "note": "ok"}]
        env = {"VAULT_ADDR": vault.address, "VAULT_TOKEN": vault.token, "K8S_AUTH_KUBECONFIG": kubeconfig,
               "K8S_AUTH_CONTEXT": "lab-source"}
        run = run_playbook(tmp_path, [{"name": "examples", "hosts": "localhost", "connection": "local",
                                       "gather_facts": False, "tasks": tasks,
                                       "vars": {"vault_token": vault.token, "transit_rotation_results": results}}],
                           env=env)
        check(run, VAULT_AND_KUBE, substitutions)
        # The examples did what they say.
        assert client.secrets.transit.read_key("kasten")["data"]["min_decryption_version"] >= 3
        assert "old-key" not in (client.secrets.transit.list_keys().get("data", {}).get("keys", []))
        custom = kubernetes.client.CustomObjectsApi(api)
        passkeys = [p["metadata"]["name"] for p in custom.list_cluster_custom_object(
            "vault.kio.kasten.io", "v1alpha1", "passkeys")["items"]]
        assert "vault-k10-v4" in passkeys and "k10-default-passphrase" not in passkeys
        assert (tmp_path / "reports" / "rotation-report.md").exists()


def test_server_and_key_repository_examples(tmp_path, vault):
    """process_service starts OpenBao, vault_init initialises it, vault_unseal unseals it; the keyrepo examples
    rotate a fernet repository; the recovery-key example initialises an auto-unsealed (transit seal) server."""
    etc, run_dir, log_dir = (tmp_path / "etc"), (tmp_path / "run"), (tmp_path / "log")
    for folder in (etc, run_dir, log_dir):
        folder.mkdir(mode=0o700)
    port, cluster_port = _process.free_port(), _process.free_port()
    data = tmp_path / "raft"
    data.mkdir(mode=0o700)
    _process.write_private(str(etc / "openbao.hcl"), RAFT_CONFIG.format(
        data_dir=data, node_id="node1", port=port, cluster_port=cluster_port, retry_join=""))
    address = "http://127.0.0.1:%d" % port
    repo = tmp_path / "fernet-keys"
    repo.mkdir(mode=0o700)
    for index in (0, 1):
        (repo / str(index)).write_bytes(Fernet.generate_key())
        os.chmod(repo / str(index), 0o600)

    # The auto-unseal example: a node sealed by the session's OpenBao transit key.
    unsealer = hvac.Client(url=vault.address, token=vault.token)
    mount = "autounseal-examples"
    unsealer.sys.enable_secrets_engine("transit", path=mount)
    unsealer.secrets.transit.create_key("unseal", mount_point=mount)
    seal = 'seal "transit" {\n  address = "%s"\n  token = "%s"\n  key_name = "unseal"\n  mount_path = "%s/"\n}\n' % (
        vault.address, vault.token, mount)
    backups = tmp_path / "backups"
    substitutions = [
        ("/var/backups/openbao/", str(backups) + "/"),
        ("/root/.secrets/original-init.json", "{{ playbook_dir }}/secrets/{{ inventory_hostname }}-init.json"),
        ("/usr/local/bin/bao", bao_binary()), ("/etc/openbao/", str(etc) + "/"), ("/run/openbao/", str(run_dir) + "/"),
        ("/var/log/openbao/", str(log_dir) + "/"), ('"http://{{ inventory_hostname }}:8200"', '"%s"' % address),
        ("cluster-init.json", "{{ inventory_hostname }}-init.json"), ("/root/openbao-init.json",
                                                                      str(tmp_path / "openbao-init.json")),
        ("/etc/keystone/fernet-keys", str(repo)), ("owner: keystone", "owner: root"), ("group: keystone", "group: root"),
    ]
    pid_file = run_dir / "openbao.pid"
    try:
        with OpenBaoRaftServer(str(tmp_path / "autounsealed"), seal=seal) as sealed:
            tasks = []
            for module in SERVER_AND_KEYS:
                module_tasks = examples(module, substitutions)
                if module == "process_service":
                    # Between starting a server and talking to it an operator waits for the port.
                    module_tasks.append({"name": "wait for the listener", "ansible.builtin.wait_for": {
                        "port": port, "host": "127.0.0.1", "timeout": 30}})
                if module == "vault_init":
                    module_tasks[1]["environment"] = {"VAULT_ADDR": sealed.address}
                if module == "vault_raft_snapshot":
                    # The snapshot examples take url and token from the environment, as a scheduled job would.
                    for step in module_tasks:
                        step["environment"] = {"VAULT_ADDR": address, "VAULT_TOKEN": "{{ (lookup('file', playbook_dir "
                                               "~ '/secrets/localhost-init.json') | from_json).root_token }}"}
                tasks += module_tasks
            run = run_playbook(tmp_path, [{"name": "examples", "hosts": "localhost", "connection": "local",
                                           "gather_facts": False, "tasks": tasks}])
            check(run, SERVER_AND_KEYS, substitutions)
            assert not hvac.Client(url=address).sys.is_sealed()
            assert hvac.Client(url=sealed.address).sys.is_initialized()
            assert sorted(os.listdir(repo)) == ["0", "1", "2"]
            # the daily snapshot, plus the snapshot of the current state each restore example took first
            snaps = sorted(name for name in os.listdir(backups) if name.endswith(".snap"))
            assert len(snaps) == 3 and len([n for n in snaps if "-pre-restore-" in n]) == 2, snaps
    finally:
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), 9)
        unsealer.sys.disable_secrets_engine(mount)


def test_database_examples(examples_vault, postgres, mariadb, tmp_path):
    """database_rewrap's examples against the lab PostgreSQL (payments) and MariaDB (crm, a derived key)."""
    import sqlalchemy

    vault = examples_vault
    client = transit_data.client(vault.address, vault.token)
    client.sys.enable_secrets_engine("transit", path="transit")
    client.adapter.request("POST", "/v1/transit/keys/payments", json={})
    client.adapter.request("POST", "/v1/transit/keys/tenant-data", json={"derived": True})
    cards = transit_data.encrypt_many(client, "transit", "payments", transit_data.plaintexts(30, "card"))
    notes = []
    for index, plaintext in enumerate(transit_data.plaintexts(12, "note")):
        context = base64.b64encode(("tenant-%d" % (index % 3)).encode()).decode()
        notes.append(client.adapter.request("POST", "/v1/transit/encrypt/tenant-data", json={
            "plaintext": base64.b64encode(plaintext.encode()).decode(), "context": context}).json()["data"]["ciphertext"])
    for key in ("payments", "tenant-data"):
        client.adapter.request("POST", "/v1/transit/keys/%s/rotate" % key, json={})
    suffix = os.urandom(4).hex()
    postgres.execute("CREATE SCHEMA billing_%s" % suffix,
                     "CREATE TABLE billing_%s.cards (id INTEGER PRIMARY KEY, pan_ciphertext TEXT, "
                     "deleted_at TIMESTAMP NULL)" % suffix)
    mariadb.execute("CREATE TABLE notes_%s (id INTEGER PRIMARY KEY, body TEXT, tenant_id VARCHAR(40))" % suffix)
    with postgres.engine.begin() as connection:
        connection.execute(sqlalchemy.text("INSERT INTO billing_%s.cards (id, pan_ciphertext) VALUES (:i, :c)" % suffix),
                           [{"i": i, "c": c} for i, c in enumerate(cards)])
    with mariadb.engine.begin() as connection:
        connection.execute(sqlalchemy.text("INSERT INTO notes_%s (id, body, tenant_id) VALUES (:i, :c, :t)" % suffix),
                           [{"i": i, "c": c, "t": "tenant-%d" % (i % 3)} for i, c in enumerate(notes)])
    substitutions = [
        ("postgresql://app@db1.example.com:5432/payments", postgres.url),
        ("mariadb://app@db2.example.com:3306/crm", mariadb.url),
        ("table: billing.cards", "table: billing_%s.cards" % suffix), ("table: notes", "table: notes_%s" % suffix),
    ]
    run = run_playbook(tmp_path, [{"name": "examples", "hosts": "localhost", "connection": "local",
                                   "gather_facts": False, "tasks": examples("database_rewrap", substitutions),
                                   "vars": {"payments_db_password": postgres.password,
                                            "crm_db_password": mariadb.password}}],
                       env={"VAULT_ADDR": vault.address, "VAULT_TOKEN": vault.token})
    check(run, DATABASES, substitutions)
    assert postgres.password not in run.output and mariadb.password not in run.output
    assert client.secrets.transit.read_key("payments").json()["data"]["min_decryption_version"] == 2
    with postgres.engine.connect() as connection:
        stored = [row[0] for row in connection.execute(sqlalchemy.text(
            "SELECT pan_ciphertext FROM billing_%s.cards" % suffix))]
    assert len(stored) == 30 and all(value.startswith("vault:v2:") for value in stored)
    with mariadb.engine.connect() as connection:
        stored = [row[0] for row in connection.execute(sqlalchemy.text("SELECT body FROM notes_%s" % suffix))]
    assert len(stored) == 12 and all(value.startswith("vault:v2:") for value in stored)
