"""``python -m lab up vault | status | down``: the lab as a command for people and ``make demo``.

``up`` starts the named components in the background and prints ``export VAR=...``
lines to ``eval``; ``status`` reports what runs; ``down`` stops everything ``up`` started.
State (pids, addresses, the lab's own dev tokens) lives in ``$LAB_DIR`` (default ``.lab/``),
mode 0700/0600.
"""

import argparse
import json
import os
import shlex
import sys

from lab import _process
from lab.openbao import LabError, OpenBaoDevServer, health
from lab.install import stop_server, write_install_vars
from lab.seed import DEMO_ROTATE_OLDER_THAN, seed_transit

COMPONENTS = ("vault",)


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


def cmd_up(args):
    state = load_state()
    for name in args.components:
        state[name] = {"vault": up_vault}[name](state)
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
        status, body = health(entry["address"]) if alive else (None, "not running")
        ok = alive and status == 200
        code = code if ok else 1
        detail = "sealed=%s version=%s" % (body.get("sealed"), body.get("version")) if isinstance(body, dict) else body
        print("%-8s %-5s pid=%s %s %s" % (name, "up" if ok else "DOWN", entry["pid"], entry["address"], detail))
    return code


def cmd_down(_args):
    state = load_state()
    for name, entry in sorted(state.items()):
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
    path = seed_transit(args.directory, address, token, mount=args.mount, rotate_older_than=args.rotate_older_than)
    print(path)
    return 0


def cmd_install_vars(args):
    print(write_install_vars(args.directory)[0])
    return 0


def cmd_install_stop(args):
    with open(args.vars_file) as handle:
        stop_server(json.load(handle))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start components in the background and print export lines")
    up.add_argument("components", nargs="*", choices=COMPONENTS, default=list(COMPONENTS))
    sub.add_parser("status", help="show what runs")
    sub.add_parser("down", help="stop everything 'up' started")
    seed = sub.add_parser("seed-transit", help="create demo transit keys and consumer files; print the vars file")
    seed.add_argument("directory")
    seed.add_argument("--mount", default="transit")
    seed.add_argument("--rotate-older-than", default=DEMO_ROTATE_OLDER_THAN,
                      help="rotate_older_than written for every key (default: a template the demo overrides)")
    install = sub.add_parser("install-vars", help="write vault_install.yml variables for a server under DIR")
    install.add_argument("directory")
    install_stop = sub.add_parser("install-stop", help="stop the server an install-vars file describes")
    install_stop.add_argument("vars_file")
    args = parser.parse_args(argv)
    try:
        return {"up": cmd_up, "status": cmd_status, "down": cmd_down, "seed-transit": cmd_seed_transit,
                "install-vars": cmd_install_vars, "install-stop": cmd_install_stop}[args.command](args)
    except LabError as exc:
        print("lab: %s" % exc, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
