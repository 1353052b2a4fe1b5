"""Init and unseal without a server: request shapes, the keys file, and the unseal loop against a fake seal."""

import json
import os
import stat

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _server as s
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VaultModuleError

URL = "http://vault.test:8200"


def init_params(**kwargs):
    return dict({"secret_shares": 3, "secret_threshold": 2, "pgp_keys": None, "recovery_shares": None,
                 "recovery_threshold": None, "recovery_pgp_keys": None, "root_token_pgp_key": None,
                 "keys_file": "/root/.secrets/bao-keys.json"}, **kwargs)


# ------------------------------------------------------------------ init: pure
def test_init_request_shamir_and_recovery():
    assert s.init_request(init_params()) == {"secret_shares": 3, "secret_threshold": 2}
    assert s.init_request(init_params(pgp_keys=["a", "b", "c"], root_token_pgp_key="r")) == {
        "secret_shares": 3, "secret_threshold": 2, "pgp_keys": ["a", "b", "c"], "root_token_pgp_key": "r"}
    # auto-unseal: recovery keys replace the unseal shares entirely
    assert s.init_request(init_params(recovery_shares=5, recovery_threshold=3, recovery_pgp_keys=["p"] * 5)) == {
        "recovery_shares": 5, "recovery_threshold": 3, "recovery_pgp_keys": ["p"] * 5}


@pytest.mark.parametrize("params,text", [
    (init_params(secret_threshold=4), r"secret_threshold must be between 1 and secret_shares \(3\); got 4"),
    (init_params(secret_threshold=0), "got 0"),
    (init_params(recovery_shares=5, recovery_threshold=None), r"recovery_threshold must be between 1 and "
                                                              r"recovery_shares \(5\); got None"),
    (init_params(pgp_keys=["a"]), "secret pgp keys: 1 given for 3 shares; give one per share"),
    (init_params(keys_file=None), "nowhere to keep the unseal keys: set keys_file"),
])
def test_validate_init_refuses_before_anything_is_sent(params, text):
    with pytest.raises(VaultModuleError, match=text):
        s.validate_init(params)


def test_validate_init_accepts_pgp_instead_of_a_keys_file():
    s.validate_init(init_params(keys_file=None, pgp_keys=["a", "b", "c"]))
    s.validate_init(init_params(recovery_shares=1, recovery_threshold=1))


def test_keys_document_is_operator_init_json():
    answer = {"keys": ["h1", "h2", "h3"], "keys_base64": ["b1", "b2", "b3"], "root_token": "s.root"}
    assert s.keys_document(answer, init_params()) == {
        "unseal_keys_b64": ["b1", "b2", "b3"], "unseal_keys_hex": ["h1", "h2", "h3"], "unseal_shares": 3,
        "unseal_threshold": 2, "recovery_keys_b64": [], "recovery_keys_hex": [], "recovery_keys_shares": 0,
        "recovery_keys_threshold": 0, "root_token": "s.root"}
    recovery = s.keys_document({"recovery_keys_base64": ["r1"], "recovery_keys": ["x1"], "root_token": "s.r"},
                               init_params(recovery_shares=1, recovery_threshold=1))
    assert recovery["unseal_shares"] == recovery["unseal_threshold"] == 0 and recovery["unseal_keys_b64"] == []
    assert recovery["recovery_keys_b64"] == ["r1"] and recovery["recovery_keys_shares"] == 1


# ------------------------------------------------------------------ keys file
def test_keys_file_exists_before_init_and_appears_only_on_commit(tmp_path):
    path = tmp_path / "secrets" / "bao-keys.json"
    keys_file = s.KeysFile(str(path))
    twins = os.listdir(path.parent)
    assert len(twins) == 1 and not path.exists()  # opened before sys/init is sent
    assert stat.S_IMODE(os.stat(path.parent / twins[0]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    keys_file.commit({"unseal_keys_b64": ["b1"], "root_token": "s.root"})
    assert json.loads(path.read_text()) == {"unseal_keys_b64": ["b1"], "root_token": "s.root"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and os.listdir(path.parent) == ["bao-keys.json"]


def test_keys_file_discard_leaves_nothing(tmp_path):
    keys_file = s.KeysFile(str(tmp_path / "keys.json"))
    keys_file.discard()
    assert os.listdir(tmp_path) == []


def test_an_existing_keys_file_is_never_overwritten_by_default(tmp_path):
    path = tmp_path / "keys.json"
    path.write_text('{"unseal_keys_b64": ["other server"]}')
    with pytest.raises(VaultModuleError, match="already exists and the server is not initialised.*nothing was done"):
        s.KeysFile(str(path))
    assert path.read_text() == '{"unseal_keys_b64": ["other server"]}' and os.listdir(tmp_path) == ["keys.json"]
    s.KeysFile(str(path), overwrite=True).commit({"unseal_keys_b64": ["new"]})
    assert json.loads(path.read_text()) == {"unseal_keys_b64": ["new"]}


def test_a_keys_file_that_cannot_be_prepared(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(VaultModuleError, match="cannot prepare keys_file .* the server was not initialised"):
        s.KeysFile(str(tmp_path / "file" / "keys.json"))


@pytest.mark.parametrize("document,keys", [
    ({"unseal_keys_b64": ["b1", "b2"], "unseal_keys_hex": ["h1", "h2"]}, ["b1", "b2"]),
    ({"keys_base64": ["b1"], "keys": ["h1"]}, ["b1"]),
    ({"unseal_keys_hex": ["h1"]}, ["h1"]),
    ({"keys": ["h1"]}, ["h1"]),
])
def test_read_keys_file_formats(tmp_path, document, keys):
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(document))
    assert s.read_keys_file(str(path)) == keys


@pytest.mark.parametrize("content,text", [
    (None, "cannot read keys_file"),
    ("not json", "is not JSON"),
    ('{"unseal_keys_b64": [], "root_token": "s.x"}', "holds no unseal keys"),
])
def test_read_keys_file_errors(tmp_path, content, text):
    path = tmp_path / "keys.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(VaultModuleError, match=text) as info:
        s.read_keys_file(str(path))
    assert "s.x" not in info.value.msg


# ------------------------------------------------------------------ unseal loop
class FakeSeal:
    """sys/seal-status and sys/unseal of a Shamir seal: shares combine when ``threshold`` of ``good`` are given."""

    url = URL

    def __init__(self, good=("k1", "k2", "k3"), threshold=2, sealed=True, initialized=True, stranger=None,
                 joins_late=False, initialized_after=0, refuse=None):
        self.good, self.threshold, self.sealed, self.initialized = set(good), threshold, sealed, initialized
        self.progress = [stranger] if stranger else []
        self.joins_late = joins_late  # a raft follower: sealed in the unseal answer, unsealed on the next read
        self.initialized_after = initialized_after  # seal-status reads before the node reports initialised
        self.refuse = refuse  # VaultModuleError for every unseal request
        self.fed = []
        self.reads = 0

    def status(self):
        return {"sealed": self.sealed, "initialized": self.initialized, "progress": len(self.progress),
                "t": self.threshold, "n": 3, "type": "shamir", "version": "2.1.0"}

    def request(self, method, path, data=None, capability=None):
        if (method, path) == ("GET", "sys/seal-status"):
            self.reads += 1
            if self.initialized_after and self.reads > self.initialized_after:
                self.initialized = True
            if self.joins_late and self.fed and not self.progress:
                self.sealed = False
            return self.status()
        assert (method, path, capability) == ("PUT", "sys/unseal", "update")
        if self.refuse:
            raise self.refuse
        self.fed.append(data["key"])
        self.progress.append(data["key"])
        if len(self.progress) < self.threshold:
            return self.status()
        combined = set(self.progress) <= self.good and len(set(self.progress)) == len(self.progress)
        self.progress = []
        if not combined:
            raise VaultModuleError("Vault refused PUT sys/unseal (HTTP 400): failed to decrypt combined key",
                                   status=400)
        if not self.joins_late:
            self.sealed = False
        return self.status()


def test_seal_view():
    assert s.seal_view({"sealed": True, "initialized": True, "progress": 1, "t": 3, "n": 5, "type": "shamir",
                        "version": "2.1.0", "nonce": "x", "build_date": "y"}) == {
        "sealed": True, "initialized": True, "progress": 1, "threshold": 3, "shares": 5, "type": "shamir",
        "version": "2.1.0"}
    assert s.seal_view({}) == {"sealed": False, "initialized": False, "progress": 0, "threshold": 0, "shares": 0,
                               "type": None, "version": None}


def test_unseal_feeds_keys_until_unsealed():
    seal = FakeSeal()
    changed, status, used = s.unseal(seal, ["k1", "k2", "k3"])
    assert (changed, status["sealed"], used) == (True, False, 2) and seal.fed == ["k1", "k2"]


def test_an_unsealed_server_and_check_mode_send_no_key():
    assert s.unseal(FakeSeal(sealed=False), ["k1"])[::2] == (False, 0)
    seal = FakeSeal()
    changed, status, used = s.unseal(seal, ["k1", "k2"], check_mode=True)
    assert (changed, status["sealed"], used) == (True, True, 0) and seal.fed == []


def test_a_strangers_share_costs_one_round_not_the_unseal():
    seal = FakeSeal(stranger="someone-elses-share")
    changed, status, used = s.unseal(seal, ["k1", "k2"])
    assert changed is True and status["sealed"] is False and used == 2 and seal.fed == ["k1", "k1", "k2"]


def test_keys_of_another_server_fail_after_one_clean_round():
    seal = FakeSeal()
    with pytest.raises(VaultModuleError, match="the unseal keys do not unseal %s .* Nothing else was changed" % URL):
        s.unseal(seal, ["x1", "x2"])
    assert seal.fed == ["x1", "x2", "x1", "x2"]


def test_too_few_keys_say_how_many_are_needed():
    with pytest.raises(VaultModuleError, match="still sealed after 1 key\\(s\\): threshold is 2; give more keys"):
        s.unseal(FakeSeal(), ["k1"])


def test_a_refused_key_is_named_by_position_not_value():
    seal = FakeSeal(refuse=VaultModuleError("Vault refused PUT sys/unseal (HTTP 400): invalid key", status=400))
    with pytest.raises(VaultModuleError) as info:
        s.unseal(seal, ["k1-secret-share"])
    assert info.value.msg == ("unseal key #1 was refused by %s: Vault refused PUT sys/unseal (HTTP 400): invalid key"
                              % URL)
    assert "k1-secret-share" not in info.value.msg


def test_a_raft_follower_that_reports_unsealed_a_moment_later():
    seal = FakeSeal(joins_late=True)
    changed, status, used = s.unseal(seal, ["k1", "k2", "k3"])
    assert (changed, status["sealed"], used) == (True, False, 2) and seal.fed == ["k1", "k2"]


def test_an_uninitialised_server():
    with pytest.raises(VaultModuleError, match="%s is not initialised: run keyops.lifecycle.vault_init first$" % URL):
        s.unseal(FakeSeal(initialized=False), ["k1"])


def test_wait_initialized_polls_until_the_node_joined():
    seal = FakeSeal(initialized=False, initialized_after=2)
    sleeps = []
    status = s.wait_initialized(seal, timeout=60, sleep=sleeps.append)
    assert status["initialized"] is True and sleeps == [1, 1] and seal.reads == 3


def test_wait_initialized_with_no_timeout_reads_once():
    seal = FakeSeal(initialized=False, initialized_after=5)
    assert s.wait_initialized(seal, timeout=0, sleep=pytest.fail)["initialized"] is False and seal.reads == 1
