#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: process_service
short_description: Run a server as a background process with a pid file (where there is no systemd)
version_added: 0.1.0
description:
  - The C(process) service manager of the vault_server role, for containers and test hosts without systemd.
  - V(started) starts O(argv) detached (own session, output appended to O(log_file)) unless the process in
    O(pid_file) is alive and runs the same program; V(stopped) sends SIGTERM, waits, then SIGKILL;
    V(restarted) does both.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
extends_documentation_fragment:
  - keyops.lifecycle.attributes
options:
  argv:
    description: Program and arguments.
    type: list
    elements: str
    required: true
  pid_file:
    description: Pid file (written 0600).
    type: path
    required: true
  log_file:
    description: File the process's output is appended to.
    type: path
    required: true
  state:
    description: Wanted state.
    type: str
    choices: [started, stopped, restarted]
    default: started
  chdir:
    description: Working directory of the process.
    type: path
  environment:
    description: Extra environment variables for the process. Never logged (they may carry credentials).
    type: dict
    default: {}
  stop_timeout:
    description: Seconds to wait after SIGTERM before SIGKILL.
    type: int
    default: 20
  user:
    description: Run the process as this user (and its primary group); needs root. Default - the current user.
    type: str
  listen_address:
    description:
      - C(host:port) the program listens on once it is up. When set, a start waits until a TCP connection to it
        succeeds or the process exits, whichever comes first, so a program that dies on a bad configuration is
        reported with its own error however slowly it fails.
      - Without it, the process only has to be alive half a second after the start.
    type: str
    version_added: 1.1.0
  start_timeout:
    description: Seconds a start waits for O(listen_address) before it fails (the process is left running).
    type: int
    default: 60
    version_added: 1.1.0
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Run OpenBao without systemd
  keyops.lifecycle.process_service:
    argv: [/usr/local/bin/bao, server, -config=/etc/openbao/openbao.hcl]
    pid_file: /run/openbao/openbao.pid
    log_file: /var/log/openbao/openbao.log
"""

RETURN = r"""
pid:
  description: Pid of the running process (null when stopped).
  returned: always
  type: int
"""

import os
import pwd
import signal
import socket
import time

from ansible.module_utils.basic import AnsibleModule


def alive(pid):
    """Whether ``pid`` is a live process (not a zombie)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (IOError, OSError, IndexError):
        return False


def running_pid(pid_file, program):
    """The pid in ``pid_file`` if that process is alive and runs ``program``."""
    try:
        with open(pid_file) as handle:
            pid = int(handle.read().strip())
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            cmdline = handle.read().split(b"\0")
    except (IOError, OSError, ValueError):
        return None
    if not alive(pid):
        return None
    return pid if cmdline and os.path.basename(cmdline[0].decode(errors="replace")) == os.path.basename(program) else None


def last_error(log_file):
    """The program's own last error line, so a bad configuration explains itself."""
    try:
        with open(log_file, errors="replace") as handle:
            lines = [line.strip() for line in handle.readlines()[-30:] if line.strip()]
    except (IOError, OSError):
        return "no log"
    errors = [line for line in lines if "rror" in line]
    return (errors or lines or ["no output"])[-1]


def split_address(address):
    """``host:port`` (``[v6]:port`` too) as a (host, port) pair; None when it is not one."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def listening(host, port):
    try:
        socket.create_connection((host, port), timeout=1).close()
    except (IOError, OSError):
        return False
    return True


def wait_started(pid, address, timeout):
    """'up', 'exited' or 'timeout': whether the process ``pid`` listens on ``address`` or died first.

    Asks whether ``pid`` lives, not whether it runs the program yet: just after the fork it may not have
    reached its exec. Without an address the process only has to survive half a second (how long a bad
    configuration usually takes to kill a server on an idle host; the address is the reliable check).
    """
    if address is None:
        time.sleep(0.5)
        return "up" if alive(pid) else "exited"
    deadline = time.monotonic() + timeout
    while True:
        if not alive(pid):
            return "exited"
        if listening(*address):
            return "up"
        if time.monotonic() >= deadline:
            return "timeout"
        time.sleep(0.1)


def stop(pid, timeout):
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def start(argv, pid_file, log_file, chdir, environment, user=None):
    """Double-fork a daemon (own session, no controlling terminal, output to ``log_file``); return its pid."""
    for path in (os.path.dirname(pid_file), os.path.dirname(log_file)):
        if not os.path.isdir(path):
            os.makedirs(path, 0o700)
    env = dict(os.environ)
    env.update(dict((k, str(v)) for k, v in environment.items()))
    log_fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # first child: new session, fork the daemon, report its pid, leave
        try:
            os.close(read_end)
            os.setsid()
            daemon = os.fork()
            if daemon:
                os.write(write_end, str(daemon).encode())
                os._exit(0)
            null_fd = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null_fd, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            os.closerange(3, 65536)
            if user:
                account = pwd.getpwnam(user)
                os.initgroups(user, account.pw_gid)
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)
                env.update(HOME=account.pw_dir, USER=user, LOGNAME=user)
            if chdir:
                os.chdir(chdir)
            os.execve(argv[0], argv, env)
        except Exception as exc:  # pylint: disable=broad-except
            # Lands in the log file (stderr), where last_error() finds it for the module's message.
            os.write(2, ("error: cannot exec %s: %s\n" % (argv[0], exc)).encode())
        finally:
            os._exit(127)
    os.close(write_end)
    os.close(log_fd)
    os.waitpid(child, 0)
    with os.fdopen(read_end, "rb") as handle:
        pid = int(handle.read() or 0)
    if not pid:
        raise OSError("the daemon could not be forked")
    fd = os.open(pid_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("%d\n" % pid)
    return pid


def main():
    module = AnsibleModule(
        argument_spec=dict(
            argv=dict(type="list", elements="str", required=True),
            pid_file=dict(type="path", required=True),
            log_file=dict(type="path", required=True),
            state=dict(type="str", default="started", choices=["started", "stopped", "restarted"]),
            chdir=dict(type="path"),
            environment=dict(type="dict", default={}, no_log=True),  # may carry credentials (awskms keys)
            stop_timeout=dict(type="int", default=20),
            user=dict(type="str"),
            listen_address=dict(type="str"),
            start_timeout=dict(type="int", default=60),
        ),
        supports_check_mode=True,
    )
    params = module.params
    argv, state = params["argv"], params["state"]
    if not argv:
        module.fail_json(msg="argv is empty: give the program to run and its arguments, e.g. [/usr/local/bin/bao, server]")
    address = None
    if params["listen_address"]:
        address = split_address(params["listen_address"])
        if address is None:
            module.fail_json(msg="listen_address %r is not host:port (e.g. 127.0.0.1:8200)" % params["listen_address"])
    if not os.path.isfile(argv[0]) or not os.access(argv[0], os.X_OK):
        module.fail_json(msg="%s is not an executable file" % argv[0])
    if params["user"]:
        try:
            pwd.getpwnam(params["user"])
        except KeyError:
            module.fail_json(msg="user %s does not exist" % params["user"])
        if os.geteuid() != 0 and pwd.getpwnam(params["user"]).pw_uid != os.geteuid():
            module.fail_json(msg="running %s as %s needs root" % (argv[0], params["user"]))
    pid = running_pid(params["pid_file"], argv[0])
    if state == "started" and pid:
        module.exit_json(changed=False, pid=pid)
    if state == "stopped" and not pid:
        module.exit_json(changed=False, pid=None)
    if module.check_mode:
        module.exit_json(changed=True, pid=pid)
    if pid:
        stop(pid, params["stop_timeout"])
    if state == "stopped":
        if os.path.exists(params["pid_file"]):
            os.unlink(params["pid_file"])
        module.exit_json(changed=True, pid=None)
    try:
        pid = start(argv, params["pid_file"], params["log_file"], params["chdir"], params["environment"],
                    params["user"])
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot start %s: %s" % (argv[0], exc))
    outcome = wait_started(pid, address, params["start_timeout"])
    if outcome == "exited":
        module.fail_json(msg="%s exited while starting: %s (log: %s)" % (argv[0], last_error(params["log_file"]),
                                                                         params["log_file"]))
    if outcome == "timeout":
        module.fail_json(changed=True, pid=pid,
                         msg="%s runs (pid %d) but did not listen on %s within %ds; its last log line: %s (log: %s)"
                         % (argv[0], pid, params["listen_address"], params["start_timeout"],
                            last_error(params["log_file"]), params["log_file"]))
    module.exit_json(changed=True, pid=pid)


if __name__ == "__main__":
    main()
