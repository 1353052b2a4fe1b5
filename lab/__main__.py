"""``python -m lab up [vault] [kms] [k8s] [k10] [postgres] [mariadb] | status | down | k10 ...``: the lab as a command.

``up`` starts the named components in the background and prints ``export VAR=...``
lines to ``eval``; ``status`` reports what runs; ``down`` stops everything ``up`` started.
``k8s`` is two Kubernetes API test servers, clusters ``source`` and ``destination`` (one KUBECONFIG,
contexts ``lab-source`` and ``lab-destination``); ``k10`` runs the K10 emulator on both
(``--k10-version 8`` for the newer status shape), with ``vault-creds``, an export policy on the source and
its import policy on the destination.  ``k10 upgrade|reinstall --no-dr|export`` act on one cluster.
``postgres`` / ``mariadb`` are database servers on loopback with an ``app`` database and user (random
password): ``LAB_POSTGRES_URL`` / ``LAB_MARIADB_URL`` (no password) and ``LAB_*_PASSWORD``.
State (pids, addresses, the lab's own dev tokens) lives in ``$LAB_DIR`` (default ``.lab/``),
mode 0700/0600.
"""

import argparse
import json
import os
import shlex
import sys

from lab import _process, database, kube_lab
from lab.kms import FAKE_CREDENTIALS, MotoKMSServer
from lab.openbao import LabError, OpenBaoDevServer, health
from lab.install import stop_server, write_install_vars
from lab.seed import DEMO_ROTATE_OLDER_THAN, seed_transit

COMPONENTS = ("vault", "kms", "k8s", "k10", "postgres", "mariadb")
DATABASES = ("postgres", "mariadb")


def lab_dir():
    default = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".lab")
    return os.environ.get("LAB_DIR", default)


def _state_path():
    return os.path.join(lab_dir(), "state.json")


def load_state():
    try:
        with open(_state_path(), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def save_state(state):
    _process.private_dir(lab_dir())
    _process.write_private(_state_path(), json.dumps(state, indent=2, sort_keys=True))


def exports(state):
    env = {}
    if "vault" in state:
        env["VAULT_ADDR"] = state["vault"]["address"]
        env["VAULT_TOKEN"] = state["vault"]["token"]
    if "kms" in state:
        env["AWS_ENDPOINT_URL_KMS"] = state["kms"]["address"]
        env.update(FAKE_CREDENTIALS)
    if "k8s" in state:
        env["KUBECONFIG"] = state["k8s"]["kubeconfig"]
    for name in DATABASES:
        if name in state:
            env["LAB_%s_URL" % name.upper()] = state[name]["url"]
            env["LAB_%s_PASSWORD" % name.upper()] = state[name]["password"]
    return env


def up_vault(state):
    current = state.get("vault")
    if current and _process.pid_alive(current["pid"]) and health(current["address"])[0] == 200:
        return current
    server = OpenBaoDevServer(os.path.join(lab_dir(), "vault")).start()
    # Detach: the server keeps running after this command exits; 'down' stops it.
    entry = {"pid": server.pid, "address": server.address, "token": server.token, "log": server.log_path}
    server.proc = None
    return entry


def up_kms(state):
    current = state.get("kms")
    if current and _process.pid_alive(current["pid"]):
        return current
    server = MotoKMSServer(os.path.join(lab_dir(), "kms")).start()
    entry = {"pid": server.pid, "address": server.endpoint, "log": server.log_path}
    server.proc = None
    return entry


def up_kube(state, k10, k10_version):
    current = state.get("k8s")
    if current and _process.pid_alive(current["pid"]) and current.get("k10") == k10:
        return current
    if current:
        _process.stop_pid(current["pid"])
    workdir = _process.private_dir(os.path.join(lab_dir(), "kube"))
    described = os.path.join(workdir, "kube.json")
    if os.path.exists(described):
        os.unlink(described)
    kms = None
    if "kms" in state:
        kms = {"endpoint": state["kms"]["address"], "region": FAKE_CREDENTIALS["AWS_REGION"],
               "access_key": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
               "secret_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}
    # K10's Vault: the lab's, else the one VAULT_ADDR/VAULT_TOKEN name (e.g. the server make demo installs).
    vault = state.get("vault") or {"address": os.environ.get("VAULT_ADDR"), "token": os.environ.get("VAULT_TOKEN")}
    env = dict(os.environ, LAB_VAULT_TOKEN=vault.get("token") or "")
    log_path = os.path.join(workdir, "kube.log")
    proc = _process.spawn(kube_lab.spawn_args(workdir, k10, k10_version, vault.get("address"), kms), log_path,
                          env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    # Recorded before waiting, so that 'down' stops it whatever happens next.
    entry = {"pid": proc.pid, "address": None, "k10": k10, "k10_version": k10_version if k10 else None,
             "log": log_path}
    state["k8s"] = entry
    save_state(state)
    try:
        info = kube_lab.wait_described(workdir, proc)
    except RuntimeError as exc:
        _process.stop_pid(proc.pid, proc=proc)
        del state["k8s"]
        save_state(state)
        raise LabError("%s:\n%s" % (exc, _process.tail(log_path)))
    entry.update(address=info["clusters"]["source"]["address"], kubeconfig=info["kubeconfig"],
                 clusters=info["clusters"])
    return entry


def cmd_up(args):
    state = load_state()
    wanted = list(args.components)
    for name in ("vault", "kms"):
        if name in wanted:
            state[name] = {"vault": up_vault, "kms": up_kms}[name](state)
            save_state(state)
    if "k8s" in wanted or "k10" in wanted:
        state["k8s"] = up_kube(state, "k10" in wanted, args.k10_version)
        save_state(state)
    for name in DATABASES:
        if name in wanted and not (name in state and database.alive(state[name])):
            state[name] = database.start_detached(name)
            save_state(state)
    for key, value in exports(state).items():
        print("export %s=%s" % (key, shlex.quote(value)))
    return 0


def cmd_status(_args):
    state = load_state()
    if not state:
        print("lab: nothing running")
        return 0
    code = 0
    for name, entry in sorted(state.items()):
        alive = _process.pid_alive(entry["pid"])
        if name in DATABASES:
            status, body = (200, entry["url"]) if alive else (None, "not running")
        elif name != "vault":
            status, body = (200, "clusters=%s k10=%s" % (",".join(entry.get("clusters", {})), entry.get(
                "k10_version")) if name == "k8s" else "moto") if alive else (None, "not running")
        else:
            status, body = health(entry["address"]) if alive else (None, "not running")
        ok = alive and status == 200
        code = code if ok else 1
        detail = "sealed=%s version=%s" % (body.get("sealed"), body.get("version")) if isinstance(body, dict) else body
        print("%-8s %-5s pid=%s %s %s" % (name, "up" if ok else "DOWN", entry["pid"], entry["address"], detail))
    return code


def cmd_down(_args):
    state = load_state()
    for name, entry in sorted(state.items()):
        if name in DATABASES:
            database.stop_detached(entry)
        else:
            _process.stop_pid(entry["pid"])
        print("lab: stopped %s (pid %s)" % (name, entry["pid"]))
    save_state({})
    return 0


def cmd_seed_transit(args):
    # The server named by VAULT_ADDR/VAULT_TOKEN (e.g. one vault_install.yml made), else the lab's.
    address, token = os.environ.get("VAULT_ADDR"), os.environ.get("VAULT_TOKEN")
    if not (address and token):
        state = load_state()
        if "vault" not in state:
            raise LabError("no server: set VAULT_ADDR/VAULT_TOKEN or run 'python -m lab up vault' first")
        address, token = state["vault"]["address"], state["vault"]["token"]
    k10 = {"kubeconfig": args.k10_kubeconfig, "context": args.k10_context} if args.k10_context else None
    database = None
    if args.database_url:
        database = {"url": args.database_url, "password": os.environ.get("PGPASSWORD")}
    path = seed_transit(args.directory, address, token, mount=args.mount, rotate_older_than=args.rotate_older_than,
                        k10_consumer=k10, database=database)
    print(path)
    return 0


def cmd_install_vars(args):
    print(write_install_vars(args.directory)[0])
    return 0


def cmd_install_stop(args):
    with open(args.vars_file) as handle:
        stop_server(json.load(handle))
    return 0


def cmd_k10(args):
    state = load_state()
    if not (state.get("k8s") or {}).get("k10"):
        raise LabError("the K10 emulator is not running: 'python -m lab up vault kms k10' first")
    body = {}
    if args.operation == "reinstall":
        body["no_dr"] = args.no_dr
    if args.operation == "export":
        body = {"policy": args.policy, "namespace": args.namespace}
    try:
        print(json.dumps(kube_lab.lab_operation(state["k8s"]["kubeconfig"], args.context, "k10/" + args.operation,
                                                body)))
    except (RuntimeError, KeyError) as exc:
        raise LabError(str(exc))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start components in the background and print export lines")
    up.add_argument("components", nargs="*", choices=COMPONENTS, default=["vault"])
    up.add_argument("--k10-version", type=int, choices=(7, 8), default=7, help="K10 passkey status shape")
    sub.add_parser("status", help="show what runs")
    sub.add_parser("down", help="stop everything 'up' started")
    seed = sub.add_parser("seed-transit", help="create demo transit keys and consumer files; print the vars file")
    seed.add_argument("directory")
    seed.add_argument("--mount", default="transit")
    seed.add_argument("--rotate-older-than", default=DEMO_ROTATE_OLDER_THAN,
                      help="rotate_older_than written for every key (default: a template the demo overrides)")
    seed.add_argument("--k10-context", help="add a k10_passkey consumer (K10 in this context) to the key kasten")
    seed.add_argument("--k10-kubeconfig", default=os.environ.get("KUBECONFIG"))
    seed.add_argument("--database-url", help="add a PostgreSQL table of the key payroll as a database consumer "
                                             "(password from PGPASSWORD)")
    install = sub.add_parser("install-vars", help="write vault_install.yml variables for a server under DIR")
    install.add_argument("directory")
    install_stop = sub.add_parser("install-stop", help="stop the server an install-vars file describes")
    install_stop.add_argument("vars_file")
    k10 = sub.add_parser("k10", help="act on one lab cluster's K10 emulator")
    k10.add_argument("operation", choices=("upgrade", "reinstall", "export", "check"))
    k10.add_argument("--context", default="lab-source")
    k10.add_argument("--no-dr", action="store_true", help="reinstall without K10 DR: a new primary key")
    k10.add_argument("--policy", default=kube_lab.EXPORT_POLICY)
    k10.add_argument("--namespace", default="kasten-io")
    serve = sub.add_parser("serve-kube", help=argparse.SUPPRESS)
    serve.add_argument("--workdir", required=True)
    serve.add_argument("--k10", action="store_true")
    serve.add_argument("--k10-version", type=int, default=7)
    serve.add_argument("--vault-address")
    serve.add_argument("--kms")
    args = parser.parse_args(argv)
    try:
        return {"up": cmd_up, "status": cmd_status, "down": cmd_down, "seed-transit": cmd_seed_transit,
                "install-vars": cmd_install_vars, "install-stop": cmd_install_stop, "k10": cmd_k10,
                "serve-kube": kube_lab.serve}[args.command](args)
    except LabError as exc:
        print("lab: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
