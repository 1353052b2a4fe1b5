"""A Kasten K10 emulator on top of the lab Kubernetes API server, with real cryptography.

What it does, as K10's crypto and export/import services do:

* **Primary key.** 32 random bytes made at install.  It is never kept usable on its own: every operation
  that needs it (a new passkey, an export, a validity check) first *unlocks* it through a passkey, so a
  passkey that can no longer decrypt is noticed exactly as K10 notices it.
* **Passkeys** (``vault.kio.kasten.io/v1alpha1`` ``Passkey``, cluster-scoped) envelope-encrypt the primary key:
  Vault transit (``vaulttransitkeyname``/``vaulttransitpath``; the real OpenBao ``encrypt``/``decrypt`` with the
  ``vault_token`` of the ``vault-creds`` Secret and the ``vault.address`` of the emulator's config), AWS CMK
  (``awscmkkeyid``; the moto KMS server) and passphrase (``passphrase: {name, namespace}`` Secret with key
  ``passphrase``; scrypt + AES-256-GCM).  Their spec cannot be changed.
* **Status shapes.**  ``version=7``: ``status: {inuse, keytype[, error]}``, one passkey in use (``usenow``
  moves it), the one in use cannot be deleted.  ``version=8``: ``status: {valid, keytype[, error]}``, every
  passkey that decrypts the primary key is valid, the last valid one cannot be deleted.  Validity is checked
  again every ``refresh_seconds`` (so raising ``min_decryption_version`` too early shows up as an error).
* **Export / import.**  An export ``Policy`` (``config.kio.kasten.io/v1alpha1``, action ``export``) gets
  ``exportParameters.receiveString``: the migration string, carrying the keys of the current primary key's
  migration epochs.  Collections are written to the lab object store sealed with ChaCha20-Poly1305 under a
  key derived (HKDF) from the primary key and the epoch.  An import policy (action ``import``) opens them with
  ``importParameters.receiveString``.  ``RunAction`` (``actions.kio.kasten.io/v1alpha1``) runs a policy: its
  ``status.state`` goes ``Running`` then ``Complete`` or ``Failed`` (``status.error`` is the K10 migration-string failure's nested
  chain ending in ``chacha20poly1305: message authentication failed``).
* **Operations** (``POST /lab/k10/<op>``, admin token): ``upgrade`` (new migration epoch: the export
  policies' strings change), ``reinstall`` (``no_dr``: new primary key; older collections can never be opened
  again), ``export`` (one more collection for a policy), ``check`` (the primary key can be unlocked).
"""

import base64
import hashlib
import json
import os
import queue
import threading
import time
import uuid

import requests
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from lab import _process
from lab.k8s_api import ApiError

NAMESPACE = "kasten-io"
PASSKEYS = ("vault.kio.kasten.io", "passkeys")
POLICIES = ("config.kio.kasten.io", "policies")
RUN_ACTIONS = ("actions.kio.kasten.io", "runactions")
AUTH_FAILED = "chacha20poly1305: message authentication failed"


class PasskeyError(Exception):
    """A passkey could not wrap or unwrap the primary key; the message is what K10 would put in status."""


def b64(data):
    return base64.b64encode(data).decode()


def unb64(text):
    return base64.b64decode(text)


def error_chain(*messages):
    """K10's nested error: the outermost message first, the root cause last."""
    chain = None
    functions = ["kasten.io/k10/kio/crypto.(*easyAE).Open", "kasten.io/k10/kio/collections.decryptData"]
    for depth, message in enumerate(reversed(messages)):
        node = {"message": message}
        if 0 < depth <= len(functions):
            node.update(function=functions[depth - 1], linenumber=116 if depth == 1 else 348)
        if chain is not None:
            node["cause"] = chain
        chain = node
    chain["fields"] = []
    return chain


class K10Emulator:
    def __init__(self, cluster, object_store, version=7, vault_address=None, vault_secret_name="vault-creds",
                 kms=None, cluster_name="lab", refresh_seconds=1.0):
        self.cluster = cluster  # lab.k8s_api.ClusterState
        self.store = cluster.store
        self.object_store = object_store
        self.version = int(version)
        self.vault_address = vault_address
        self.vault_secret_name = vault_secret_name
        self.kms = kms  # {"endpoint", "region", "access_key", "secret_key"}
        self.cluster_name = cluster_name
        self.refresh_seconds = refresh_seconds
        self.lock = threading.RLock()
        self.events = queue.Queue()
        self.stopping = threading.Event()
        self.worker = None
        self._install(new_cluster_id=True)

    # ---------------------------------------------------------------- lifecycle
    def _install(self, new_cluster_id):
        with self.lock:
            self.primary_key = os.urandom(32)
            self.wrapped = {}  # passkey name -> {"keytype", "ciphertext"[, "salt"]}
            self.epoch = 1
            self.imported = set()  # collection ids this cluster imported
            if new_cluster_id:
                self.cluster_id = str(uuid.uuid4())
            self._ensure_namespace()
            self._default_passkey()
            # The primary key is only reachable through passkeys from now on.
            self.primary_key = None

    def _ensure_namespace(self):
        namespaces = self._resource("", "namespaces")
        try:
            self.store.get(namespaces, None, NAMESPACE)
        except ApiError:
            self.store.create(namespaces, None, {"metadata": {"name": NAMESPACE}})

    def _default_passkey(self):
        """K10's install: a random passphrase in k10-cluster-passphrase and a passkey using it."""
        secrets = self._resource("", "secrets")
        passphrase = b64(os.urandom(24))
        try:
            self.store.delete(secrets, NAMESPACE, "k10-cluster-passphrase")
        except ApiError:
            pass
        self.store.create(secrets, NAMESPACE, {"metadata": {"name": "k10-cluster-passphrase"},
                                               "stringData": {"passphrase": passphrase}})
        name = "k10-default-passphrase"
        self.wrapped[name] = self._wrap({"passphrase": {"name": "k10-cluster-passphrase", "namespace": NAMESPACE}},
                                        self.primary_key)
        passkeys = self._resource(*PASSKEYS)
        try:
            self.store.delete(passkeys, None, name)
        except ApiError:
            pass
        self.store.create(passkeys, None, {"metadata": {"name": name},
                                           "spec": {"passphrase": {"name": "k10-cluster-passphrase",
                                                                   "namespace": NAMESPACE}, "usenow": True}})
        self._set_status(PASSKEYS, None, name, self._passkey_status(name, "passphrase", ok=True, inuse=True))

    def start(self):
        self.store.admission.append(self._admit)
        self.store.hooks.append(self._on_event)
        for operation in ("upgrade", "reinstall", "export", "check"):
            self.cluster.lab_operations["k10/" + operation] = getattr(self, "op_" + operation)
        self.worker = threading.Thread(target=self._run, name="k10-emulator", daemon=True)
        self.worker.start()
        return self

    def stop(self):
        self.stopping.set()
        self.events.put(None)
        if self.worker:
            self.worker.join(timeout=10)

    def _run(self):
        next_refresh = time.monotonic() + self.refresh_seconds
        while not self.stopping.is_set():
            try:
                event = self.events.get(timeout=max(0.05, next_refresh - time.monotonic()))
            except queue.Empty:
                event = None
            try:
                if event is not None:
                    self._handle(*event)
                if time.monotonic() >= next_refresh:
                    self.refresh()
                    next_refresh = time.monotonic() + self.refresh_seconds
            except Exception:  # pylint: disable=broad-except
                # A controller keeps going; the failure is visible in the objects' status.
                import traceback  # pylint: disable=import-outside-toplevel
                traceback.print_exc()

    # ---------------------------------------------------------------- API plumbing
    def _resource(self, group, plural):
        return self.cluster.resource(group, plural)

    def _get(self, kind, namespace, name):
        try:
            return self.store.get(self._resource(*kind), namespace, name)
        except ApiError:
            return None

    def _list(self, kind, namespace=None):
        return self.store.list(self._resource(*kind), namespace)["items"]

    def _set_status(self, kind, namespace, name, status):
        current = self._get(kind, namespace, name)
        if current is None or current.get("status") == status:
            return
        current["status"] = status
        current["metadata"].pop("resourceVersion", None)
        self.store.update(self._resource(*kind), namespace, name, current, subresource="status")

    def _secret_value(self, namespace, name, key):
        secret = self._get(("", "secrets"), namespace, name)
        if secret is None:
            raise PasskeyError('secret "%s/%s" not found' % (namespace, name))
        value = (secret.get("data") or {}).get(key)
        if value is None:
            raise PasskeyError('secret "%s/%s" has no key "%s"' % (namespace, name, key))
        return unb64(value).decode()

    def _on_event(self, event, resource, obj):
        if (resource.group, resource.plural) in (PASSKEYS, POLICIES, RUN_ACTIONS):
            self.events.put((event, (resource.group, resource.plural), obj))

    def _admit(self, verb, resource, namespace, name, new, current):
        if (resource.group, resource.plural) != PASSKEYS:
            return
        if verb == "update" and new.get("spec") != current.get("spec"):
            raise ApiError(422, "Invalid", 'Passkey.vault.kio.kasten.io "%s" is invalid: spec: Forbidden: a '
                           "passkey cannot be changed; create a new passkey (usenow: true) and delete this one"
                           % name, name, resource.plural)
        if verb == "delete":
            status = current.get("status") or {}
            if self.version < 8 and status.get("inuse"):
                raise ApiError(403, "Forbidden", 'passkey "%s" is in use and cannot be deleted; create a new '
                               "passkey with usenow: true first" % name, name, resource.plural)
            if self.version >= 8 and status.get("valid"):
                others = [p for p in self._list(PASSKEYS) if p["metadata"]["name"] != name
                          and (p.get("status") or {}).get("valid")]
                if not others:
                    raise ApiError(403, "Forbidden", 'passkey "%s" is the last valid passkey and cannot be '
                                   "deleted" % name, name, resource.plural)

    # ---------------------------------------------------------------- passkeys: wrap / unwrap
    @staticmethod
    def keytype(spec):
        if spec.get("vaulttransitkeyname"):
            return "vault"
        if spec.get("awscmkkeyid"):
            return "awscmk"
        if spec.get("passphrase"):
            return "passphrase"
        raise PasskeyError("the passkey names no key: set vaulttransitkeyname, awscmkkeyid or passphrase")

    def _vault(self, spec, operation, data):
        if not self.vault_address:
            raise PasskeyError("vault.address is not configured for K10")
        token = self._secret_value(NAMESPACE, self.vault_secret_name, "vault_token")
        path = "%s/%s/%s" % (spec.get("vaulttransitpath", "transit").strip("/"), operation,
                             spec["vaulttransitkeyname"])
        try:
            response = requests.post("%s/v1/%s" % (self.vault_address, path), json=data, timeout=10,
                                     headers={"X-Vault-Token": token})
        except requests.RequestException as exc:
            raise PasskeyError("vault: %s" % exc)
        if response.status_code != 200:
            try:
                errors = "; ".join(response.json().get("errors") or [])
            except ValueError:
                errors = response.text
            raise PasskeyError("vault: %s %s: %s" % (operation, path, errors or response.status_code))
        return response.json()["data"]

    def _kms(self):
        import boto3  # pylint: disable=import-outside-toplevel
        if not self.kms:
            raise PasskeyError("AWS KMS is not configured for K10")
        return boto3.client("kms", endpoint_url=self.kms["endpoint"], region_name=self.kms["region"],
                            aws_access_key_id=self.kms["access_key"], aws_secret_access_key=self.kms["secret_key"])

    def _passphrase_key(self, spec, salt):
        ref = spec["passphrase"]
        passphrase = self._secret_value(ref.get("namespace", NAMESPACE), ref["name"], "passphrase")
        return Scrypt(salt=salt, length=32, n=2 ** 14, r=8, p=1).derive(passphrase.encode())

    def _wrap(self, spec, primary_key):
        keytype = self.keytype(spec)
        if keytype == "vault":
            return {"keytype": keytype, "ciphertext": self._vault(spec, "encrypt", {"plaintext": b64(primary_key)})[
                "ciphertext"]}
        if keytype == "awscmk":
            try:
                blob = self._kms().encrypt(KeyId=spec["awscmkkeyid"], Plaintext=primary_key)["CiphertextBlob"]
            except Exception as exc:  # pylint: disable=broad-except
                raise PasskeyError("aws kms: %s" % exc)
            return {"keytype": keytype, "ciphertext": b64(blob)}
        salt, nonce = os.urandom(16), os.urandom(12)
        sealed = AESGCM(self._passphrase_key(spec, salt)).encrypt(nonce, primary_key, b"k10-primary-key")
        return {"keytype": keytype, "ciphertext": b64(nonce + sealed), "salt": b64(salt)}

    def _unwrap(self, spec, wrapped):
        keytype = wrapped["keytype"]
        if keytype == "vault":
            return unb64(self._vault(spec, "decrypt", {"ciphertext": wrapped["ciphertext"]})["plaintext"])
        if keytype == "awscmk":
            try:
                return self._kms().decrypt(CiphertextBlob=unb64(wrapped["ciphertext"]))["Plaintext"]
            except Exception as exc:  # pylint: disable=broad-except
                raise PasskeyError("aws kms: %s" % exc)
        blob = unb64(wrapped["ciphertext"])
        try:
            return AESGCM(self._passphrase_key(spec, unb64(wrapped["salt"]))).decrypt(
                blob[:12], blob[12:], b"k10-primary-key")
        except InvalidTag:
            raise PasskeyError("the passphrase does not decrypt the primary key")

    def _passkey_status(self, name, keytype, ok, inuse=False, error=None):
        status = {"keytype": keytype}
        if self.version < 8:
            status["inuse"] = bool(inuse)
        else:
            status["valid"] = bool(ok)
        if error:
            status["error"] = error
        return status

    def unlock(self):
        """The primary key, decrypted through a passkey (7.x: the one in use; 8.x: any valid one)."""
        with self.lock:
            errors = []
            for passkey in self._ordered_passkeys():
                name = passkey["metadata"]["name"]
                if name not in self.wrapped:
                    continue
                try:
                    return self._unwrap(passkey["spec"], self.wrapped[name])
                except PasskeyError as exc:
                    errors.append("%s: %s" % (name, exc))
                if self.version < 8:
                    break  # 7.x only ever uses the passkey in use
            raise PasskeyError("cannot decrypt the primary key: " + ("; ".join(errors) or "no usable passkey"))

    def _ordered_passkeys(self):
        passkeys = self._list(PASSKEYS)
        # The passkey in use first (7.x), then oldest first.
        return sorted(passkeys, key=lambda p: (not (p.get("status") or {}).get("inuse"),
                                               int(p["metadata"]["resourceVersion"])))

    # ---------------------------------------------------------------- controller
    def _handle(self, event, kind, obj):
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace")
        if kind == PASSKEYS:
            if event == "ADDED":
                self._passkey_added(obj)
            elif event == "DELETED":
                with self.lock:
                    self.wrapped.pop(name, None)
        elif kind == POLICIES and event != "DELETED":
            self._policy_changed(obj)
        elif kind == RUN_ACTIONS and event == "ADDED":
            self._run_action(namespace, name, obj)

    def _passkey_added(self, passkey):
        name, spec = passkey["metadata"]["name"], passkey.get("spec") or {}
        with self.lock:
            try:
                keytype = self.keytype(spec)
                self.wrapped[name] = self._wrap(spec, self.unlock())
            except PasskeyError as exc:
                self.wrapped.pop(name, None)
                self._set_status(PASSKEYS, None, name, self._passkey_status(
                    name, spec and self._safe_keytype(spec), ok=False, error="failed to create passkey: %s" % exc))
                return
            switch = self.version < 8 and (spec.get("usenow") or not any(
                (p.get("status") or {}).get("inuse") for p in self._list(PASSKEYS)))
            if switch:
                for other in self._list(PASSKEYS):
                    if other["metadata"]["name"] != name and (other.get("status") or {}).get("inuse"):
                        status = dict(other["status"], inuse=False)
                        self._set_status(PASSKEYS, None, other["metadata"]["name"], status)
            self._set_status(PASSKEYS, None, name, self._passkey_status(name, keytype, ok=True, inuse=switch))

    def _safe_keytype(self, spec):
        try:
            return self.keytype(spec)
        except PasskeyError:
            return ""

    def refresh(self):
        """Check every passkey against its key store, as K10 does periodically."""
        with self.lock:
            for passkey in self._list(PASSKEYS):
                name, status = passkey["metadata"]["name"], dict(passkey.get("status") or {})
                if name not in self.wrapped:
                    continue
                try:
                    self._unwrap(passkey.get("spec") or {}, self.wrapped[name])
                    status.pop("error", None)
                    ok = True
                except PasskeyError as exc:
                    status["error"] = "cannot decrypt the primary key with this passkey: %s" % exc
                    ok = False
                if self.version >= 8:
                    status["valid"] = ok
                self._set_status(PASSKEYS, None, name, status)

    # ---------------------------------------------------------------- migration
    def _migration_key(self, primary_key, epoch):
        info = ("k10-migration/%s/%d" % (self.cluster_id, epoch)).encode()
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(primary_key)

    def migration_string(self):
        primary_key = self.unlock()
        document = {"cluster": self.cluster_id, "location": self.cluster_id,
                    "keys": {str(epoch): b64(self._migration_key(primary_key, epoch))
                             for epoch in range(1, self.epoch + 1)}}
        value = b64(json.dumps(document, sort_keys=True).encode())
        _process.register_secret("receive_string", value)
        return value

    @staticmethod
    def _actions(policy, action):
        return [a for a in ((policy.get("spec") or {}).get("actions") or []) if a.get("action") == action]

    def _policy_changed(self, policy):
        exports = self._actions(policy, "export")
        name, namespace = policy["metadata"]["name"], policy["metadata"]["namespace"]
        if not exports:
            self._set_status(POLICIES, namespace, name, {"validation": "Success",
                                                         "hash": self._hash(policy.get("spec"))})
            return
        try:
            current = self.migration_string()
        except PasskeyError as exc:
            self._set_status(POLICIES, namespace, name, {"validation": "Failed", "error": str(exc)})
            return
        if any((a.get("exportParameters") or {}).get("receiveString") != current for a in exports):
            for action in exports:
                action.setdefault("exportParameters", {})["receiveString"] = current
            policy["metadata"].pop("resourceVersion", None)
            self.store.update(self._resource(*POLICIES), namespace, name, policy)
            return  # the update comes back as an event and sets the status
        self._set_status(POLICIES, namespace, name, {"validation": "Success", "hash": self._hash(policy["spec"])})

    @staticmethod
    def _hash(spec):
        return int(hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8], 16)

    def _collection_dir(self, location, policy):
        return os.path.join(self.object_store, location, policy)

    def export_collection(self, policy_name, namespace=NAMESPACE):
        """Seal one collection (the policy's exported restore points) into the object store."""
        with self.lock:
            policy = self._get(POLICIES, namespace, policy_name)
            if policy is None or not self._actions(policy, "export"):
                raise PasskeyError('no export policy "%s/%s"' % (namespace, policy_name))
            key = self._migration_key(self.unlock(), self.epoch)
            collection = "%s-%s" % (time.strftime("%Y%m%d%H%M%S"), uuid.uuid4().hex[:8])
            payload = json.dumps({"policy": policy_name, "cluster": self.cluster_name,
                                  "restorePoints": [{"app": "app-%d" % i, "collection": collection}
                                                    for i in range(2)]}).encode()
            nonce = os.urandom(12)
            aad = collection.encode()
            sealed = ChaCha20Poly1305(key).encrypt(nonce, payload, aad)
            directory = self._collection_dir(self.cluster_id, policy_name)
            os.makedirs(directory, exist_ok=True)
            path = os.path.join(directory, collection + ".json")
            with open(path + ".tmp", "w", encoding="utf-8") as handle:
                json.dump({"epoch": self.epoch, "nonce": b64(nonce), "sealed": b64(sealed)}, handle)
            os.replace(path + ".tmp", path)
            return {"collection": collection, "epoch": self.epoch}

    def import_collections(self, policy):
        """Open every collection the import policy's string points at that was not imported yet."""
        (action,) = self._actions(policy, "import")[:1] or [None]
        receive = ((action or {}).get("importParameters") or {}).get("receiveString")
        if not receive:
            raise ImportFailure(error_chain("Job failed to be executed", "import policy has no receiveString"))
        try:
            document = json.loads(unb64(receive))
            keys = {int(epoch): unb64(key) for epoch, key in document["keys"].items()}
            location = document["location"]
        except (ValueError, KeyError, TypeError):
            raise ImportFailure(error_chain("Job failed to be executed", "the migration string is malformed"))
        directory = os.path.join(self.object_store, location)
        opened = []
        for root, _dirs, files in sorted(os.walk(directory)):
            for filename in sorted(f for f in files if f.endswith(".json")):
                collection = filename[:-len(".json")]
                if collection in self.imported:
                    continue
                with open(os.path.join(root, filename), encoding="utf-8") as handle:
                    sealed = json.load(handle)
                # Like K10: try the key of the collection's epoch, then the latest one the string carries.
                candidates = [keys[k] for k in (sealed["epoch"], max(keys)) if k in keys]
                for key in candidates:
                    try:
                        ChaCha20Poly1305(key).decrypt(unb64(sealed["nonce"]), unb64(sealed["sealed"]),
                                                      collection.encode())
                        break
                    except InvalidTag:
                        continue
                else:
                    raise ImportFailure(error_chain("Job failed to be executed",
                                                    "Could not Open data during decryption",
                                                    "Could not decrypt cipher text", AUTH_FAILED),
                                        collection=collection, opened=opened)
                self.imported.add(collection)
                opened.append(collection)
        return opened

    def _run_action(self, namespace, name, action):
        subject = (action.get("spec") or {}).get("subject") or {}
        self._set_status(RUN_ACTIONS, namespace, name, {"state": "Running"})
        time.sleep(0.2)  # a real action takes a while; callers must poll
        policy = self._get(POLICIES, subject.get("namespace", namespace), subject.get("name", ""))
        status = {"state": "Complete"}
        try:
            if policy is None:
                raise ImportFailure(error_chain("Job failed to be executed", 'policy "%s" not found'
                                                % subject.get("name")))
            if self._actions(policy, "import"):
                with self.lock:
                    status["collections"] = self.import_collections(policy)
            else:
                status["collections"] = [self.export_collection(policy["metadata"]["name"],
                                                                policy["metadata"]["namespace"])["collection"]]
        except ImportFailure as exc:
            status = {"state": "Failed", "error": exc.chain}
            if exc.collection:
                status["failedCollection"] = exc.collection
        except PasskeyError as exc:
            status = {"state": "Failed", "error": error_chain("Job failed to be executed", str(exc))}
        self._set_status(RUN_ACTIONS, namespace, name, status)

    # ---------------------------------------------------------------- lab operations
    def _refresh_exports(self):
        for policy in self._list(POLICIES):
            self.events.put(("MODIFIED", POLICIES, policy))

    def op_upgrade(self, _body):
        with self.lock:
            self.epoch += 1
            self._refresh_exports()
            return {"epoch": self.epoch}

    def op_reinstall(self, body):
        if not body.get("no_dr", True):
            return {"reinstalled": False, "reason": "a reinstall with DR restores the primary key: nothing changes"}
        with self.lock, self.store.lock:
            # Uninstalling K10 removes its passkeys with it (no admission: the API service is gone too).
            for key in [k for k in self.store.objects if k[0] == PASSKEYS[1]]:
                del self.store.objects[key]
            self._install(new_cluster_id=False)
            self._refresh_exports()
            return {"reinstalled": True}

    def op_export(self, body):
        try:
            return self.export_collection(body["policy"], body.get("namespace", NAMESPACE))
        except PasskeyError as exc:
            raise ApiError(422, "Invalid", str(exc))

    def op_check(self, _body):
        try:
            self.unlock()
            return {"primary_key": "unlocked"}
        except PasskeyError as exc:
            return {"primary_key": "locked", "error": str(exc)}


class ImportFailure(Exception):
    def __init__(self, chain, collection=None, opened=None):
        super().__init__(chain.get("message"))
        self.chain, self.collection, self.opened = chain, collection, opened or []
