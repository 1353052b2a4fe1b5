"""The lab's reader of kubectl's protobuf bodies, against bytes encoded by hand per the wire format."""

import base64

import pytest

from lab import _protobuf


def field(number, payload):
    if isinstance(payload, int):
        return bytes([number << 3 | 0, payload])
    return bytes([number << 3 | 2, len(payload)]) + payload


def unknown(api_version, kind, raw):
    type_meta = field(1, api_version.encode()) + field(2, kind.encode())
    return _protobuf.MAGIC + field(1, type_meta) + field(2, raw)


def test_token_request():
    meta = field(1, b"k10-sa") + field(2, b"")
    spec = field(1, b"vault") + field(1, b"k10") + field(4, 100)
    body = unknown("authentication.k8s.io/v1", "TokenRequest", field(1, meta) + field(2, spec))
    assert _protobuf.decode(body) == {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                                      "metadata": {"name": "k10-sa"},
                                      "spec": {"audiences": ["vault", "k10"], "expirationSeconds": 100}}


def test_secret_maps_and_bytes():
    entry = field(1, b"vault_token") + field(2, b"s3cret")
    label = field(1, b"app") + field(2, b"k10")
    meta = field(1, b"vault-creds") + field(11, label)
    body = unknown("v1", "Secret", field(1, meta) + field(2, entry) + field(3, b"Opaque"))
    secret = _protobuf.decode(body)
    assert secret["metadata"] == {"name": "vault-creds", "labels": {"app": "k10"}}
    assert base64.b64decode(secret["data"]["vault_token"]) == b"s3cret" and secret["type"] == "Opaque"


def test_unknown_types_and_garbage_are_refused():
    with pytest.raises(_protobuf.UnsupportedMessage):
        _protobuf.decode(unknown("apps/v1", "Deployment", b""))
    with pytest.raises(_protobuf.UnsupportedMessage):
        _protobuf.decode(b"{}")
