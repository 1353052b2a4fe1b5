"""Separate SSH hosts on one machine: a network namespace per host, all on one bridge in the test's namespace
(a LAN: the controller reaches every host, and the hosts reach one another - ``rsync`` from one host to the
others over SSH, as openstack-ansible and kolla-ansible distribute keystone's keys), each running its own
sshd (needs root, ``ip`` and openssh-server; requirements/system.txt).

Ansible reaches them over real SSH - transfer, ordering and connection handling as in production - while
nothing listens outside this machine.  The hosts share the filesystem, so each one gets its own paths.
"""

import os
import shutil
import subprocess
import time

from lab import _process

SSHD = "/usr/sbin/sshd"


def available():
    """Why SSH hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "ssh", "ssh-keygen"):
        if not shutil.which(tool):
            return "%s is missing" % tool
    if not os.path.exists(SSHD):
        return "openssh-server is missing (make system-deps installs it)"
    return None


def run(*argv):
    subprocess.run(list(argv), check=True, capture_output=True)


class SshHosts:
    """``count`` hosts ``ssh0``, ``ssh1``, ... at 10.<subnet>.0.2, .3, ...; the bridge (this side) is .1.

    ``subnet`` defaults to one derived from the process id, so parallel test workers do not share addresses.
    """

    def __init__(self, workdir, count, subnet=None):
        if count > 250:
            raise ValueError("at most 250 hosts on one bridge")
        self.workdir = _process.private_dir(workdir)
        self.count = count
        self.tag = "%x" % (os.getpid() % 0xFFFF)
        self.subnet = 100 + os.getpid() % 150 if subnet is None else subnet
        self.bridge = "kb%s" % self.tag
        self.hosts = []  # dicts: name, namespace, address, proc
        self.key = os.path.join(self.workdir, "id_ed25519")

    def start(self):
        try:
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key)
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
            run("ip", "link", "add", self.bridge, "type", "bridge")
            run("ip", "addr", "add", "10.%d.0.1/24" % self.subnet, "dev", self.bridge)
            run("ip", "link", "set", self.bridge, "up")
            for index in range(self.count):
                self._host(index)
            for host in self.hosts:
                self._wait(host)
        except BaseException:
            self.stop()
            raise
        return self

    def _host(self, index):
        namespace = "ko%s-%d" % (self.tag, index)
        outside, inside = "kv%s%do" % (self.tag, index), "kv%s%di" % (self.tag, index)
        address = "10.%d.0.%d" % (self.subnet, index + 2)
        host = {"name": "ssh%d" % index, "namespace": namespace, "address": address, "proc": None,
                "outside": outside}
        self.hosts.append(host)
        run("ip", "netns", "add", namespace)
        run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
        run("ip", "link", "set", inside, "netns", namespace)
        run("ip", "link", "set", outside, "master", self.bridge)
        run("ip", "link", "set", outside, "up")
        run("ip", "netns", "exec", namespace, "ip", "addr", "add", address + "/24", "dev", inside)
        run("ip", "netns", "exec", namespace, "ip", "link", "set", inside, "up")
        run("ip", "netns", "exec", namespace, "ip", "link", "set", "lo", "up")
        directory = _process.private_dir(os.path.join(self.workdir, host["name"]))
        host["directory"] = directory
        host_key = os.path.join(directory, "host_key")
        run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key)
        authorized = os.path.join(directory, "authorized_keys")
        shutil.copy(self.key + ".pub", authorized)
        os.chmod(authorized, 0o600)
        config = os.path.join(directory, "sshd_config")
        with open(config, "w") as handle:
            handle.write("ListenAddress %s\nPort 22\nHostKey %s\nAuthorizedKeysFile %s\nPermitRootLogin "
                         "prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
                         "UsePAM no\nStrictModes no\nPidFile %s\nMaxStartups 100\nMaxSessions 100\n"
                         "Subsystem sftp internal-sftp\n"
                         % (address, host_key, authorized, os.path.join(directory, "sshd.pid")))
        host["proc"] = _process.spawn(["ip", "netns", "exec", namespace, SSHD, "-D", "-e", "-f", config],
                                      os.path.join(directory, "sshd.log"))

    def _wait(self, host):
        deadline = time.monotonic() + 20
        while subprocess.run(["ssh"] + self.ssh_options() + ["root@" + host["address"], "true"],
                             capture_output=True, check=False, timeout=20).returncode != 0:
            if time.monotonic() > deadline or host["proc"].poll() is not None:
                raise RuntimeError("sshd in %s did not come up:\n%s" % (
                    host["namespace"], _process.tail(os.path.join(host["directory"], "sshd.log"))))
            time.sleep(0.2)

    def ssh_options(self):
        return ["-i", self.key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]

    def ssh_command(self):
        """The ``ssh`` command line (a string, for ``rsync -e``) with which one host reaches another."""
        return " ".join(["ssh"] + self.ssh_options())

    @staticmethod
    def ansible_env(control_dir, pipelining=True):
        """How ansible-playbook connects, the same for everything a test compares: one SSH master per host,
        kept for the run (ControlMaster/ControlPersist, ansible's defaults made explicit), sockets in
        ``control_dir`` (short: a socket path has at most 107 characters), pipelining on."""
        return {"ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=60s",
                "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
                "ANSIBLE_PIPELINING": "1" if pipelining else "0"}

    @staticmethod
    def close_masters(control_dir):
        """End the SSH masters a run left in ``control_dir`` (the next run starts cold, as a scheduled job)."""
        if not os.path.isdir(str(control_dir)):
            return
        for name in os.listdir(str(control_dir)):
            subprocess.run(["ssh", "-o", "ControlPath=" + os.path.join(str(control_dir), name), "-O", "exit",
                            "unused"], capture_output=True, check=False, timeout=20)

    def address(self, name):
        return [host["address"] for host in self.hosts if host["name"] == name][0]

    def inventory_lines(self, group, python, host_vars):
        """INI lines for ``group``; ``host_vars(name) -> dict`` adds per-host variables."""
        lines = ["[%s]" % group]
        for host in self.hosts:
            extra = " ".join("%s=%s" % kv for kv in host_vars(host["name"]).items())
            lines.append("%s ansible_host=%s ansible_user=root ansible_ssh_private_key_file=%s "
                         "ansible_python_interpreter=%s %s"
                         % (host["name"], host["address"], self.key, python, extra))
        lines += ["[%s:vars]" % group,
                  "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'"]
        return lines

    def stop(self):
        for host in self.hosts:
            if host["proc"] is not None:
                _process.stop_pid(host["proc"].pid, proc=host["proc"])
            subprocess.run(["ip", "netns", "del", host["namespace"]], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", host["outside"]], capture_output=True, check=False)
        self.hosts = []
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, check=False)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
