"""Keystone itself, for the key repository tests: its own venv, keystone-manage, and a minimal config.

``keystone_python()`` makes ``build/keystone-venv`` from requirements/keystone.txt on first use (under a
lock, so parallel test workers build it once).  ``KeystoneConfig`` writes a config whose fernet token,
receipt and credential repositories are all under a temporary directory - keystone-manage would otherwise
touch the machine's /etc/keystone (the receipt repository defaults there).
"""

import fcntl
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "build", "keystone-venv")
REQUIREMENTS = os.path.join(ROOT, "requirements", "keystone.txt")


def keystone_python():
    python = os.path.join(VENV, "bin", "python")
    stamp = os.path.join(VENV, ".keyops-installed")
    os.makedirs(os.path.dirname(VENV), exist_ok=True)
    with open(VENV + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(stamp):
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
            subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r",
                            REQUIREMENTS], check=True)
            with open(stamp, "w") as handle:
                handle.write("ok\n")
    return python


def keystone_manage():
    keystone_python()
    return os.path.join(VENV, "bin", "keystone-manage")


class KeystoneConfig:
    def __init__(self, directory, max_active_keys=3):
        self.directory = directory
        self.fernet = os.path.join(directory, "fernet-keys")
        self.receipts = os.path.join(directory, "receipt-keys")
        self.credential = os.path.join(directory, "credential-keys")
        self.path = os.path.join(directory, "keystone.conf")
        os.makedirs(directory, exist_ok=True)
        with open(self.path, "w") as handle:
            handle.write("[fernet_tokens]\nkey_repository = %s\nmax_active_keys = %d\n"
                         "[fernet_receipts]\nkey_repository = %s\nmax_active_keys = %d\n"
                         "[credential]\nkey_repository = %s\n"
                         % (self.fernet, max_active_keys, self.receipts, max_active_keys, self.credential))

    def manage(self, *args):
        """Run keystone-manage with this config as the current user; returns the CompletedProcess."""
        user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
        return subprocess.run([keystone_manage(), "--config-file", self.path] + list(args) + (
            user if args[0] in ("fernet_setup", "fernet_rotate", "credential_setup") else []),
            capture_output=True, text=True, timeout=120, check=False)

    def validate(self, repository, token_key_index=None):
        """Keystone's own loader on ``repository``: (number of keys, whether a token made with the primary of
        the repository - or with key ``token_key_index`` - decrypts), through keystone's code."""
        script = (
            "import sys, warnings; warnings.simplefilter('ignore')\n"
            "import keystone.conf\n"
            "keystone.conf.configure(); keystone.conf.CONF(['--config-file', sys.argv[1]], project='keystone')\n"
            "from keystone.common import fernet_utils\n"
            "from cryptography.fernet import Fernet, MultiFernet\n"
            "keys = fernet_utils.FernetUtils(sys.argv[2], 3, 'fernet_tokens').load_keys()\n"
            "import os\n"
            "index = sys.argv[3]\n"
            "key = keys[0] if index == '' else open(os.path.join(sys.argv[2], index)).read()\n"
            "token = Fernet(key).encrypt(b'x')\n"
            "print(len(keys), MultiFernet([Fernet(k) for k in keys]).decrypt(token) == b'x')\n")
        out = subprocess.run([keystone_python(), "-c", script, self.path, repository,
                              "" if token_key_index is None else str(token_key_index)],
                             capture_output=True, text=True, timeout=120, check=True).stdout.split()
        return int(out[0]), out[1] == "True"
