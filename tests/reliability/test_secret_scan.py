"""The secret scan of a whole test run: no token, unseal key, migration string, fernet key or plaintext in any
output or artifact the run left behind.

Run last (``make test`` does: ``-m secret_scan`` after everything else).  Roots: $KEYOPS_SCAN_ROOTS
(os.pathsep-separated: the pytest base directory, molecule's scenario directories, the saved console logs).

Secrets come from
* the registry the lab writes while the run makes them ($KEYOPS_SECRET_REGISTRY: root and admin tokens,
  service-account tokens, K10 migration strings, consumer plaintexts), and
* the secret stores the run wrote, harvested here: vault_init keys files (unseal/recovery keys, root token),
  fernet/credential key repositories, token files.
Every file is scanned except those stores themselves - private files (mode 0600 or stricter), which is what
the collection writes secrets into.  A secret counts as found in its plain form, without base64 padding,
and base64-encoded (e.g. a Secret's data).
"""

import base64
import json
import os
import re
import stat

import pytest

from reliability_counts import count

pytestmark = pytest.mark.secret_scan
SUITE = "secret_scan"
TOKEN = re.compile(r"[A-Za-z0-9_\-.+/=]{12,}")
FERNET = re.compile(r"^[A-Za-z0-9_\-]{43}=$")
KEYS_FIELDS = ("root_token", "unseal_keys_b64", "unseal_keys_hex", "recovery_keys_b64", "recovery_keys_hex",
               "keys", "keys_base64")


def roots():
    value = os.environ.get("KEYOPS_SCAN_ROOTS")
    if not value:
        pytest.fail("KEYOPS_SCAN_ROOTS is not set: run the scan through `make test` (after the other tests)")
    return [root for root in value.split(os.pathsep) if root and os.path.exists(root)]


def walk(paths):
    for root in paths:
        if os.path.isfile(root):
            yield root
            continue
        for folder, _dirs, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                if os.path.isfile(path) and not os.path.islink(path):
                    yield path


def executable_binary(path):
    """An ELF executable: the OpenBao binaries the install tests unpack (180 MB each, copied verbatim from the
    release archive and never written by the collection) - nine tenths of what a run leaves behind."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF" and os.access(path, os.X_OK)
    except OSError:
        return False


def private(path):
    return stat.S_IMODE(os.stat(path).st_mode) & 0o077 == 0


def harvest(path, text, secrets):
    """Secrets held by a store the run wrote (keys file, key repository file, token file)."""
    name = os.path.basename(path)
    if name.endswith(".json") and ("root_token" in text or "unseal_keys" in text or "recovery_keys" in text):
        try:
            data = json.loads(text)
        except ValueError:
            return
        for field in KEYS_FIELDS:
            value = data.get(field) if isinstance(data, dict) else None
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, str) and len(item) >= 12:
                    secrets[item] = "vault_init:" + field
    elif name.isdigit() and FERNET.match(text.strip()):
        secrets[text.strip()] = "key_repository"
    elif "token" in name and "\n" not in text.strip() and 16 <= len(text.strip()) <= 4096:
        secrets[text.strip()] = "token_file"


def registered(secrets):
    directory = os.environ.get("KEYOPS_SECRET_REGISTRY")
    if not directory or not os.path.isdir(directory):
        pytest.fail("KEYOPS_SECRET_REGISTRY is not set or missing: the lab registers secrets only when it is")
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as handle:
            for line in handle:
                kind, _tab, value = line.rstrip("\n").partition("\t")
                if len(value) >= 12:
                    secrets[value] = kind


def variants(secrets):
    """secret form -> (kind, secret): plain, without padding, base64 of it."""
    out = {}
    for secret, kind in secrets.items():
        for form in (secret, secret.rstrip("="), base64.b64encode(secret.encode()).decode(),
                     base64.b64encode(secret.encode()).decode().rstrip("=")):
            if len(form) >= 12:
                out[form] = (kind, secret)
    return out


# The separators a token is also split at ("vault:v1:<secret>", "key=<secret>", paths): one translate and one
# split per token instead of a regular expression, the scan's hot loop over every token of every file.
_SEPARATORS = str.maketrans("=:.,", "////")


def pieces(token):
    yield token
    if any(separator in token for separator in "=:.,/"):
        for part in token.translate(_SEPARATORS).split("/"):
            if len(part) >= 12:
                yield part
    yield token.strip("=.")


def scan_files(paths, forms):
    """``(files scanned, characters, hits)``: every token of every file in ``paths`` looked up in ``forms``."""
    scanned, size, hits = 0, 0, []
    for path in paths:
        try:
            with open(path, errors="replace") as handle:
                text = handle.read()
        except OSError:
            continue
        scanned += 1
        size += len(text)
        for token in set(TOKEN.findall(text)):
            for piece in pieces(token):
                if piece in forms:
                    kind, secret = forms[piece]
                    hits.append("%s: %s (%s...)" % (path, kind, secret[:6]))
    return scanned, size, hits


def test_no_secret_in_any_output_or_artifact():
    paths = roots()
    files = list(walk(paths))
    secrets = {}
    registered(secrets)
    stores = []
    for path in files:
        if private(path):
            stores.append(path)
            try:
                with open(path, errors="replace") as handle:
                    harvest(path, handle.read(1 << 20), secrets)
            except OSError:
                pass
    forms = variants(secrets)
    skipped = set(stores)
    todo, binaries = [], []
    for path in files:
        if path in skipped or os.path.basename(path) == "secrets-registry.tsv":
            continue
        (binaries if executable_binary(path) else todo).append(path)
    scanned, size, hits = scan_files(todo, forms)
    kinds = {}
    for kind in secrets.values():
        kinds[kind.split(":")[0]] = kinds.get(kind.split(":")[0], 0) + 1
    count(SUITE, "files_scanned", scanned)
    count(SUITE, "megabytes_scanned", round(size / 1e6))
    count(SUITE, "secret_stores_skipped", len(stores))
    count(SUITE, "executables_skipped", len(binaries))
    count(SUITE, "secrets_known", len(secrets))
    for kind, number in kinds.items():
        count(SUITE, "secrets_" + kind, number)
    count(SUITE, "hits", len(hits))
    assert hits == [], "\n".join(sorted(set(hits))[:50])
    # A scan of nothing proves nothing: the run must have left outputs and made secrets of every kind.
    assert scanned > 200 and size > 1e5, (scanned, size)
    for kind in ("vault_root_token", "plaintext", "receive_string", "service_account_token", "key_repository",
                 "vault_init"):
        assert kinds.get(kind), "no %s secrets known: the scan would not notice them leaking (%s)" % (kind, kinds)
