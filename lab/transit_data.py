"""Consumer data for tests, benchmarks and the demo: files full of real transit ciphertexts."""

import base64
import json

import hvac
import hvac.adapters

from lab import _process

BATCH = 400  # under OpenBao's default JSON complexity limit


def client(address, token):
    return hvac.Client(url=address, token=token, adapter=hvac.adapters.RawAdapter)


def _post(vault, path, body):
    response = vault.adapter.request("POST", "/v1/" + path, json=body)
    return response.json()["data"]


def plaintexts(count, prefix="secret"):
    values = ["%s-%07d" % (prefix, index) for index in range(count)]
    for value in values:
        _process.register_secret("plaintext", value)
    return values


def encrypt_many(vault, mount, key, values):
    """Encrypt ``values`` (str) with the key's current version; returns ciphertexts in order."""
    out = []
    for start in range(0, len(values), BATCH):
        batch = [{"plaintext": base64.b64encode(v.encode()).decode()} for v in values[start:start + BATCH]]
        results = _post(vault, "%s/encrypt/%s" % (mount, key), {"batch_input": batch})["batch_results"]
        out.extend(item["ciphertext"] for item in results)
    return out


def decrypt_many(vault, mount, key, ciphertexts):
    """Decrypt in batches; returns plaintexts, with None for every item Vault refused."""
    out = []
    for start in range(0, len(ciphertexts), BATCH):
        batch = [{"ciphertext": c} for c in ciphertexts[start:start + BATCH]]
        response = vault.adapter.request("POST", "/v1/%s/decrypt/%s" % (mount, key),
                                         json={"batch_input": batch}, raise_exception=False)
        body = response.json()
        results = (body.get("data") or {}).get("batch_results")
        if results is None:  # a whole-batch refusal (e.g. every item too old)
            out.extend([None] * len(batch))
            continue
        for item in results:
            out.append(base64.b64decode(item["plaintext"]).decode() if "plaintext" in item else None)
    return out


def write_lines(path, ciphertexts, field=None, extra=None):
    """One ciphertext per line, or JSON lines ``{"id": n, field: ciphertext, **extra}``."""
    with open(path, "w") as handle:
        for index, value in enumerate(ciphertexts):
            if field is None:
                handle.write(value + "\n")
            else:
                document = {"id": index, field: value}
                document.update(extra or {})
                handle.write(json.dumps(document) + "\n")


def read_ciphertexts(path, field=None):
    values = []
    with open(path) as handle:
        for line in handle:
            if not line.strip():
                continue
            values.append(json.loads(line)[field] if field else line.strip())
    return values


def versions_in(path, field=None):
    return sorted({int(value.split(":")[1][1:]) for value in read_ciphertexts(path, field)})
