"""Which Secret data keys hold ciphertexts, and which need rewrapping."""

import base64

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _secret_rewrap
from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import K8sModuleError


def b64(text):
    return base64.b64encode(text.encode()).decode()


DATA = {"a": b64("vault:v1:AAAA"), "b": b64("vault:v3:BBBB\n"), "plain": b64("hello"), "bin": "////"}


def test_plan_counts_ciphertexts_only():
    census, stale = _secret_rewrap.plan(DATA, None, latest=3)
    assert census == {"1": 1, "3": 1} and stale == [("a", "vault:v1:AAAA")]


def test_named_keys_must_exist_and_hold_ciphertext():
    assert _secret_rewrap.plan(DATA, ["b"], latest=3) == ({"3": 1}, [])
    with pytest.raises(K8sModuleError, match="no data key 'zz'"):
        _secret_rewrap.plan(DATA, ["zz"], latest=3)
    with pytest.raises(K8sModuleError, match="not a Vault transit ciphertext"):
        _secret_rewrap.plan(DATA, ["plain"], latest=3)
