"""Run a playbook the way AWX does: credentials injected per their credential type, through ansible-runner.

AWX renders each credential type's injectors with the credential's inputs in a Jinja sandbox (an input left
blank renders as an empty string): ``file`` templates become 0600 files in the job's private data directory
(their paths are ``tower.filename.<name>``), ``env`` entries become environment variables and
``extra_vars`` entries extra variables.  The job itself is ansible-runner over the private data directory.
"""

import glob
import json
import os
import stat
import sys
import tempfile

import ansible_runner
import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

from _ansible import BIN, ROOT

CREDENTIAL_TYPES = os.path.join(ROOT, "extensions", "awx", "credential_types")
# Variables an AWX job must get from its credentials only (never from the test process).
CREDENTIAL_ENV_PREFIXES = ("VAULT_", "K8S_AUTH_", "KUBECONFIG")


class VaultAt:
    """A Vault the tests administer (address, root token) - what rotation_helpers.Rotation seeds through."""

    def __init__(self, address, token):
        self.address, self.token = address, token
        self.env = {"VAULT_ADDR": address, "VAULT_TOKEN": token}

    def client(self):
        import hvac  # pylint: disable=import-outside-toplevel

        return hvac.Client(url=self.address, token=self.token)


def credential_type(name):
    with open(os.path.join(CREDENTIAL_TYPES, name + ".yml")) as handle:
        return yaml.safe_load(handle)


class _Filenames(dict):
    __getattr__ = dict.__getitem__


def inject(type_name, inputs, private_data_dir):
    """(env, extra_vars) for one credential of ``type_name`` with ``inputs``, files written like AWX does."""
    definition = credential_type(type_name)
    fields = dict((field["id"], field) for field in definition["inputs"]["fields"])
    unknown = set(inputs) - set(fields)
    assert not unknown, "inputs the credential type does not define: %s" % sorted(unknown)
    missing = [name for name in definition["inputs"].get("required", []) if not inputs.get(name)]
    assert not missing, "required inputs missing: %s" % missing
    sandbox = ImmutableSandboxedEnvironment()
    namespace = dict(inputs)
    namespace["tower"] = _Filenames(filename=_Filenames())
    env_dir = os.path.join(str(private_data_dir), "env")
    os.makedirs(env_dir, exist_ok=True)
    injectors = definition.get("injectors", {})
    for label, template in injectors.get("file", {}).items():
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w") as out:
            out.write(sandbox.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        namespace["tower"]["filename"][label.split(".", 1)[1]] = path
    env = dict((name, sandbox.from_string(str(template)).render(**namespace))
               for name, template in injectors.get("env", {}).items())
    extra_vars = dict((name, sandbox.from_string(str(template)).render(**namespace))
                      for name, template in injectors.get("extra_vars", {}).items())
    return env, extra_vars


class AwxJob:
    """One job: a project checkout (this repo), an inventory, credentials, extra vars."""

    def __init__(self, private_data_dir, playbook, inventory=None):
        self.private_data_dir = str(private_data_dir)
        os.makedirs(self.private_data_dir, exist_ok=True)
        self.playbook = playbook
        # In an execution environment the modules run with the image's Python: here, this venv's.
        self.inventory = inventory or "localhost ansible_connection=local ansible_python_interpreter=%s\n" % (
            sys.executable)
        self.env = {}
        self.extra_vars = {}

    def add_credential(self, type_name, inputs):
        env, extra_vars = inject(type_name, inputs, self.private_data_dir)
        self.env.update(env)
        self.extra_vars.update(extra_vars)

    def run(self, extra_vars=None, verbosity=0):
        for name in list(os.environ):
            assert not name.startswith(CREDENTIAL_ENV_PREFIXES), "%s leaks into the job from the test process" % name
        env = dict(self.env, ANSIBLE_COLLECTIONS_PATH=os.path.join(ROOT, "build", "collections"),
                   PATH=BIN + os.pathsep + os.environ.get("PATH", ""))
        result = ansible_runner.run(
            private_data_dir=self.private_data_dir, project_dir=ROOT, playbook=self.playbook,
            inventory=self.inventory, envvars=env, extravars=dict(self.extra_vars, **(extra_vars or {})),
            verbosity=verbosity, quiet=True,
            # As AWX runs it: the environment (with the credentials) is not written into the artifacts.
            suppress_env_files=True)
        return JobResult(result)


class JobResult:
    def __init__(self, runner):
        self.runner = runner
        self.status, self.rc = runner.status, runner.rc
        self.artifacts = runner.config.artifact_dir

    @property
    def stdout(self):
        with open(os.path.join(self.artifacts, "stdout")) as handle:
            return handle.read()

    def events(self):
        for path in sorted(glob.glob(os.path.join(self.artifacts, "job_events", "*.json"))):
            with open(path) as handle:
                yield json.load(handle)

    def set_stats(self):
        """What set_stats published, as AWX reads it: the artifact_data of the playbook_on_stats event."""
        stats = [event for event in self.events() if event.get("event") == "playbook_on_stats"]
        assert stats, "no playbook_on_stats event"
        return stats[-1]["event_data"].get("artifact_data", {})

    def artifact_texts(self):
        """Every file ansible-runner wrote as artifacts (events, stdout, status, command, fact cache).

        ansible-runner always records the job's environment - the credentials' variables too - in the
        ``command`` artifact, mode 0600, inside the private data directory that AWX deletes after the job;
        AWX keeps the events, stdout and set_stats.  That one field is left out of the scan (checked for
        its mode instead); everything else is scanned.
        """
        for folder, _dirs, files in os.walk(self.artifacts):
            for name in files:
                path = os.path.join(folder, name)
                with open(path, errors="replace") as handle:
                    text = handle.read()
                if os.path.relpath(path, self.artifacts) == "command":
                    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, "the command artifact is readable by others"
                    command = json.loads(text)
                    command.pop("env")
                    text = json.dumps(command)
                yield path, text

    def leaks(self, secrets):
        found = []
        for path, text in self.artifact_texts():
            found.extend((os.path.relpath(path, self.artifacts), secret[:6] + "...")
                         for secret in secrets if secret and secret in text)
        return found
