"""Shared by the rotation tests: seed a fresh mount, run rotate_keys.yml, check every invariant."""

import json
import os

import yaml

from lab import seed, transit_data

from _ansible import ROOT, ansible_playbook

ROTATE_KEYS = os.path.join(ROOT, "playbooks", "rotate_keys.yml")


class Rotation:
    """A fresh mount with seeded keys and consumer files, and the vars file naming them."""

    def __init__(self, vault, mount, tmp_path, keys, rotate_older_than=None, trim=(), backupable=()):
        self.vault = vault
        self.mount = mount
        self.tmp_path = tmp_path
        self.keys = keys
        self.client = transit_data.client(vault.address, vault.token)
        self.vars_path = seed.seed_transit(str(tmp_path / "consumers"), vault.address, vault.token, mount=mount,
                                           keys=keys, rotate_older_than=rotate_older_than, trim=trim,
                                           backupable=backupable)
        self.report_dir = tmp_path / "reports"
        self.seeded = dict((entry["name"], entry["consumers"][0]["path"])
                           for entry in self.rotation_vars["transit_rotation_keys"])
        self.runs = 0

    @property
    def rotation_vars(self):
        with open(self.vars_path) as handle:
            return yaml.safe_load(handle)

    def write_vars(self, data):
        with open(self.vars_path, "w") as handle:
            yaml.safe_dump(data, handle)

    def run(self, *args, env=None, inventory=None, **kwargs):
        self.runs += 1
        if inventory is None:
            inventory = str(self.tmp_path / "local.ini")
            with open(inventory, "w") as handle:
                handle.write("localhost ansible_connection=local\n")
        run_env = dict(self.vault.env)
        run_env.update(env or {})
        return ansible_playbook(ROTATE_KEYS, self.tmp_path / ("run-%d.jsonl" % self.runs), env=run_env,
                                args=["-e", "@" + self.vars_path, "-e", "rotation_report_dir=%s" % self.report_dir]
                                + list(args), inventory=inventory, **kwargs)

    def report(self):
        with open(self.report_dir / "rotation-report.json") as handle:
            return dict((entry["name"], entry) for entry in json.load(handle))

    def key(self, name):
        response = self.client.adapter.request("GET", "/v1/%s/keys/%s" % (self.mount, name))
        return response.json()["data"]

    def consumers(self, name):
        for entry in self.rotation_vars["transit_rotation_keys"]:
            if entry["name"] == name:
                return entry["consumers"]
        return []

    def check_all_decryptable(self):
        """The crash invariant: every stored ciphertext decrypts, so min_decryption_version <= oldest in use."""
        for name, (per_version, _field) in self.keys.items():
            key = self.key(name)
            for consumer in self.consumers(name):
                if consumer["type"] != "file" or not os.path.exists(consumer["path"]):
                    continue
                values = transit_data.read_ciphertexts(consumer["path"], consumer.get("field"))
                versions = transit_data.versions_in(consumer["path"], consumer.get("field"))
                assert min(versions) >= key["min_decryption_version"], (
                    "%s: min_decryption_version %d above oldest version in use %d"
                    % (name, key["min_decryption_version"], min(versions)))
                plain = transit_data.decrypt_many(self.client, self.mount, name, values)
                assert None not in plain, "%s: undecryptable ciphertext" % consumer["path"]
                if consumer["path"] == self.seeded[name]:
                    assert plain == seed.expected_plaintexts(name, per_version), "%s: data lost" % consumer["path"]

    def check_complete(self):
        """After a completed run: every consumer at the latest version, min_decryption_version raised to it."""
        self.check_all_decryptable()
        for name in self.keys:
            key = self.key(name)
            assert key["min_decryption_version"] == key["latest_version"], (name, key["min_decryption_version"])
            for consumer in self.consumers(name):
                assert transit_data.versions_in(consumer["path"], consumer.get("field")) == [key["latest_version"]]
