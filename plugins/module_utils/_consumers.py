# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The consumer contract of the transit rotation: one row per consumer type (private).

A consumer is wherever ciphertext of a transit key lives; step 2 of the rotation makes each one
re-encrypt, and its census (key versions still held) decides how far step 3 may raise
``min_decryption_version``.  Everything the collection knows about a type is in its row here:

* ``module`` and ``module_utils``: the module that rewraps and takes the census, and where its logic lives;
* ``options``: the consumer keys a user writes in ``transit_rotation_keys[].consumers[]``, which are
  required, which are secrets (never copied into facts: the task file reads them from the user's variable);
* ``identity``: the consumer's id in records and reports (never a secret);
* ``records``: how the task file's registered results become census records (``per_item`` - one module
  result per consumer; ``per_host`` - one bulk result per host with a ``consumers`` list; ``shared`` - the work
  of one consumer shared out between hosts, then one census of the whole).

The role's argument spec, its README table and the census RETURN block of the consumer modules are
generated from this table by ``tools/consumer_contract.py``; a unit test fails when they drift, and
another when a type lacks its task file (``roles/transit_rotation/tasks/consumer_<type>.yml``),
module, module_utils file or tests.  Adding a type: a row here, one module_utils file, one task
file, its tests.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re


class ConsumerType:
    def __init__(self, name, summary, module, module_utils, options, identity, records="per_item"):
        self.name = name
        self.summary = summary
        self.module = module
        self.module_utils = module_utils
        self.options = options
        self.identity = identity
        self.records = records

    @property
    def required(self):
        return tuple(name for name, spec in self.options.items() if spec.get("required"))

    @property
    def secret_options(self):
        return tuple(name for name, spec in self.options.items() if spec.get("no_log"))


def option(description, type="str", required=False, no_log=False, **more):
    spec = dict(description=description, type=type)
    if required:
        spec["required"] = True
    if no_log:
        spec["no_log"] = True
    spec.update(more)
    return spec


# Options every consumer takes, whatever its type.
COMMON_OPTIONS = {
    "type": option("Consumer type; one task file per type (tasks/consumer_<type>.yml).", required=True),
}

KUBE_OPTIONS = {
    "kubeconfig": option("Kubeconfig of the cluster; default K8S_AUTH_KUBECONFIG."),
    "context": option("Kubeconfig context of the cluster."),
}

_URL_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^@]*@", re.IGNORECASE)


# What Ansible itself shows in place of a no_log value.
MASK = "********"


def masked_url(url):
    """A database URL fit for ids, reports and messages: any password it holds replaced by the mask.

    Works on URLs that do not parse (a message about a malformed URL must not echo its password either).
    """
    if not isinstance(url, str):
        return repr(url)
    return _URL_PASSWORD.sub(r"\1:%s@" % MASK, url)


def _file_id(c):
    return "file:%s:%s%s" % (c["host"], c["path"], "[%s]" % c["field"] if c.get("field") else "")


def _k10_id(c):
    return "k10_passkey:%s:%s" % (c.get("context") or "default", c["passkey_prefix"])


def _secret_id(c):
    return "k8s_secret:%s:%s/%s" % (c.get("context") or "default", c.get("secret_namespace") or "default",
                                    c["secret"])


def _database_id(c):
    return "database:%s/%s.%s" % (masked_url(c["url"]), c["table"], c["column"])


CONSUMER_TYPES = dict((row.name, row) for row in (
    ConsumerType(
        "file", "Ciphertexts in files on hosts: one per line, or JSON lines with O(field).",
        module="keyops.lifecycle.vault_transit_rewrap", module_utils="_rewrap.py", records="per_host",
        identity=_file_id,
        options={
            "path": option("File of ciphertexts.", required=True),
            "field": option("JSON lines field holding the ciphertext."),
            "context_field": option("JSON lines field holding the key derivation context (derived keys)."),
            "context_encoding": option("How the context is stored: V(base64) as Vault takes it, or V(text).",
                                       choices=["base64", "text"]),
            "host": option("Inventory host holding the file (default the host running the role)."),
        }),
    ConsumerType(
        "k10_passkey", "Kasten K10, whose primary key is encrypted by a Vault transit passkey.",
        module="keyops.lifecycle.k10_passkey_rotate", module_utils="_k10.py", identity=_k10_id,
        options=dict({"passkey_prefix": option("K10 passkeys of this key are named <passkey_prefix>-v<version>.",
                                               required=True)}, **KUBE_OPTIONS)),
    ConsumerType(
        "k8s_secret", "Transit ciphertexts kept in the data keys of a Kubernetes Secret.",
        module="keyops.lifecycle.k8s_secret_rewrap", module_utils="_secret_rewrap.py", identity=_secret_id,
        options=dict({
            "secret": option("Secret whose data keys hold ciphertexts.", required=True),
            "secret_namespace": option("Namespace of the Secret (default V(default))."),
            "data_keys": option("Data keys holding ciphertexts; default every ciphertext-valued key.",
                                type="list", elements="str"),
        }, **KUBE_OPTIONS)),
    ConsumerType(
        "database", "A column of transit ciphertexts in a PostgreSQL or MySQL/MariaDB table.",
        module="keyops.lifecycle.database_rewrap", module_utils="_database.py", identity=_database_id,
        records="shared",
        options={
            "url": option("Database URL, for example V(postgresql://app@db1/payments); the scheme picks the engine. "
                          "A password in it is never shown (ids and reports mask it).", required=True),
            "password": option("Database password (else the URL's, or the engine's usual environment variables).",
                               no_log=True),
            "table": option("Table (or V(schema.table)) holding the ciphertexts.", required=True),
            "column": option("Column holding the ciphertexts.", required=True),
            "primary_key": option("Primary key column (single column), used for keyset pagination.", required=True),
            "context_column": option("Column holding the key derivation context (derived keys)."),
            "context_encoding": option("How the context is stored: V(base64) as Vault takes it, or V(text).",
                                       choices=["base64", "text"]),
            "where": option("SQL condition selecting the rows to handle, for example V(deleted_at IS NULL)."),
            "host": option("Inventory host that connects to the database (default the host running the role)."),
            "hosts": option("Inventory hosts that share the table by primary key ranges (instead of one C(host)).",
                            type="list", elements="str"),
        }),
))


class ConsumerInputError(ValueError):
    pass


def consumer_type(name):
    if name not in CONSUMER_TYPES:
        raise ConsumerInputError("unknown type %r (known: %s)" % (name, ", ".join(sorted(CONSUMER_TYPES))))
    return CONSUMER_TYPES[name]


def check_consumer(consumer):
    """The consumer's type row after checking its keys: required ones given, none of another type."""
    if not isinstance(consumer, dict):
        raise ConsumerInputError("must be a dictionary with a type")
    row = consumer_type(consumer.get("type"))
    missing = [name for name in row.required if consumer.get(name) in (None, "", [])]
    if missing:
        raise ConsumerInputError("(%s) needs %s" % (row.name, ", ".join(missing)))
    unknown = sorted(set(consumer) - set(row.options) - set(COMMON_OPTIONS))
    if unknown:
        raise ConsumerInputError("(%s) does not take %s (it takes %s)"
                                 % (row.name, ", ".join(unknown), ", ".join(sorted(row.options))))
    return row


# Options that say where the module runs, not what it does: never passed to the module.
ROUTING_OPTIONS = ("host", "hosts")


def public_args(row, consumer):
    """The module arguments of a consumer that may travel in facts: secrets left out, a URL's password masked."""
    args = {}
    for name in row.options:
        if name in row.secret_options or name in ROUTING_OPTIONS:
            continue
        value = consumer.get(name)
        if value is not None:
            args[name] = masked_url(value) if name == "url" else value
    return args


def role_option_specs():
    """The ``consumers`` sub-options of the role's argument spec: the union of every type's options."""
    merged = dict((name, dict(spec, choices=sorted(CONSUMER_TYPES))) for name, spec in COMMON_OPTIONS.items())
    used_by = {}
    for row in CONSUMER_TYPES.values():
        for name, spec in row.options.items():
            used_by.setdefault(name, []).append(row.name)
            shape = dict((k, v) for k, v in spec.items() if k not in ("required", "description"))
            if name in merged and dict((k, v) for k, v in merged[name].items() if k != "description") != shape:
                raise ConsumerInputError("option %s is declared differently by two consumer types" % name)
            merged.setdefault(name, dict(shape, description=spec["description"]))
    for name, types in used_by.items():
        merged[name]["description"] = [merged[name]["description"],
                                       "Consumer type%s %s." % ("s" if len(types) > 1 else "", ", ".join(types))]
    return dict((name, dict([("description", spec.pop("description"))] + sorted(spec.items())))
                for name, spec in merged.items())


def role_required_if():
    return [["type", row.name, list(row.required)] for row in CONSUMER_TYPES.values() if row.required]


# The census every consumer module returns; the RETURN blocks of those modules are generated from it.
CENSUS_RETURN = """\
census_before:
  description: Ciphertexts per key version before the run (version as a string -> count).
  returned: success
  type: dict
  sample: {"1": 700, "2": 300}
census_after:
  description:
    - Ciphertexts per key version after the run (the same as RV(census_before) in check mode).
    - This is what decides how far min_decryption_version may be raised.
  returned: success
  type: dict
  sample: {"3": 1000}
rewrapped:
  description: Ciphertexts rewrapped (in check mode, that would be rewrapped).
  returned: success
  type: int
  sample: 1000
oldest_version_in_use:
  description: The oldest key version the consumer still holds (null when it holds none).
  returned: success
  type: int
  sample: 3
"""
