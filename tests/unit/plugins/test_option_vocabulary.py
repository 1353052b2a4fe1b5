"""One option vocabulary across the modules (release 1.0.0 freezes the option names).

Every module's argument spec is captured from its own ``AnsibleModule(...)`` call and its DOCUMENTATION is read
with the doc fragments it extends, and then:

* the same thing has the same name in every module that takes it (VOCABULARY: concept -> name -> modules), the
  names of kubernetes.core and community.hashi_vault where those collections have one; a name means one kind of
  value everywhere; no option has a second, permanent name;
* each old name of a renamed option is still accepted, as a deprecated alias (RENAMES): the value arrives under
  the new name and the result carries the deprecation;
* DOCUMENTATION and the argument spec list the same options with the same aliases and types, and every
  deprecated alias is documented as such.

The Vault and the Kubernetes connection both have a CA bundle and a certificate check, and some modules talk to
both. The scheme: the plain name (``ca_cert``, ``validate_certs``) belongs to the connection of the module's doc
fragment (Vault for the ``keyops.lifecycle.vault`` group, Kubernetes for the ``keyops.lifecycle.k10`` group); a
Vault-group module that also talks to Kubernetes takes that connection's clashing options with the ``kube_``
prefix (``kube_ca_cert``, ``kube_validate_certs``) and its other options (``kubeconfig``, ``context``, ``host``,
``api_key``) under kubernetes.core's names.
"""

import contextlib
import importlib
import io
import json
import os

import pytest
import yaml
from ansible.module_utils import _internal as module_internal
from ansible.module_utils import basic
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.keyops.lifecycle.plugins.module_utils import _consumers
from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import (
    K8S_CONNECTION_ARGSPEC, KUBE_OPTIONS_FOR_VAULT_MODULES)
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import VAULT_CONNECTION_ARGSPEC

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
PACKAGE = "ansible_collections.keyops.lifecycle.plugins"
COLLECTION = "keyops.lifecycle"
REMOVAL = "2.0.0"
MODULES = sorted(name[:-3] for name in os.listdir(os.path.join(ROOT, "plugins", "modules"))
                 if name.endswith(".py") and not name.startswith("_"))

with open(os.path.join(ROOT, "meta", "runtime.yml")) as _handle:
    _GROUPS = yaml.safe_load(_handle)["action_groups"]
VAULT_GROUP = sorted(_GROUPS["vault"])  # the Vault connection (doc fragment vault_connection)
K10_GROUP = sorted(_GROUPS["k10"])  # the Kubernetes connection (doc fragment k8s_connection)
# Vault-group modules that also talk to a Kubernetes API server.
VAULT_AND_KUBE = ["k8s_secret_rewrap", "vault_k8s_auth_probe"]
# The consumer modules of the rotation (step 2): the module of each row of the consumer contract.
CONSUMER_MODULES = sorted(row.module.rsplit(".", 1)[1] for row in _consumers.CONSUMER_TYPES.values())
# Modules whose subject is ciphertext of one transit key, or the key itself.
TRANSIT_KEY_MODULES = sorted(set(CONSUMER_MODULES) | {"vault_transit_key", "vault_transit_key_info"})
K10_WAITS = ["k10_import_policy", "k10_passkey", "k10_passkey_rotate"]
KUBE_AUTH_MOUNT_MODULES = ["vault_k8s_auth", "vault_k8s_auth_probe", "vault_k8s_auth_role"]

# concept -> canonical name -> where (a module, or "module:option" for the sub-options of a list or dict option),
# the type, and names that other collections or earlier releases used for it: in these modules such a name may
# only be a deprecated alias of the canonical one (a connection option of the module's doc fragment aside,
# which has its own row: ``timeout`` of a Vault module is the Vault request timeout).
VOCABULARY = [
    # community.hashi_vault's connection names, in every module of the Vault group.
    ("address of the Vault server", "url", "str", VAULT_GROUP, ["vault_url", "vault_addr", "address"]),
    ("Vault token", "token", "str", VAULT_GROUP, ["vault_token"]),
    ("how to log in to Vault", "auth_method", "str", VAULT_GROUP, []),
    ("where the auth method the module logs in with is mounted", "auth_mount_point", "str", VAULT_GROUP, []),
    ("AppRole role ID", "role_id", "str", VAULT_GROUP, []),
    ("AppRole secret ID", "secret_id", "str", VAULT_GROUP, []),
    ("Vault Enterprise / OpenBao namespace", "namespace", "str", VAULT_GROUP, ["vault_namespace"]),
    ("CA bundle of the Vault server", "ca_cert", "path", VAULT_GROUP, ["cacert", "vault_ca_cert"]),
    ("whether to verify the Vault server's certificate", "validate_certs", "bool", VAULT_GROUP, ["verify"]),
    ("seconds to wait for one Vault answer", "timeout", "int", VAULT_GROUP, []),
    ("retries of a request that failed for a transient reason", "retries", "int", VAULT_GROUP + K10_GROUP, []),
    # kubernetes.core's connection names; the Kubernetes connection of a Vault-group module takes the clashing
    # ones with the kube_ prefix.
    ("kubeconfig of the cluster", "kubeconfig", "raw", K10_GROUP + VAULT_AND_KUBE, ["kube_config"]),
    ("kubeconfig context", "context", "str", K10_GROUP + VAULT_AND_KUBE, ["kube_context"]),
    ("URL of the Kubernetes API server", "host", "str", K10_GROUP + VAULT_AND_KUBE, ["kube_host"]),
    ("bearer token for the Kubernetes API server", "api_key", "str", K10_GROUP + VAULT_AND_KUBE, ["kube_api_key"]),
    ("CA bundle of the Kubernetes API server (a Kubernetes module)", "ca_cert", "path", K10_GROUP,
     ["kube_ca_cert"]),
    ("CA bundle of the Kubernetes API server (a Vault module)", "kube_ca_cert", "path", VAULT_AND_KUBE,
     ["k8s_ca_cert"]),
    ("whether to verify the API server's certificate (a Kubernetes module)", "validate_certs", "bool", K10_GROUP,
     ["kube_validate_certs"]),
    ("whether to verify the API server's certificate (a Vault module)", "kube_validate_certs", "bool",
     VAULT_AND_KUBE, ["k8s_validate_certs", "kube_verify_ssl"]),
    ("seconds to wait for one Kubernetes API answer", "request_timeout", "int", K10_GROUP, []),
    # What the modules work on.
    ("name of the transit key", "name", "str",
     TRANSIT_KEY_MODULES + ["vault_transit_keys:keys", "vault_transit_rewrap:consumers"],
     ["vault_transit_key_name", "key_name", "transit_key", "key"]),
    ("where the transit secrets engine is mounted", "mount", "str",
     TRANSIT_KEY_MODULES + ["vault_transit_keys", "vault_transit_keys:keys", "vault_transit_rewrap:consumers"],
     ["vault_transit_path", "transit_path", "mount_point", "engine_mount_point", "transit_mount"]),
    ("key version the ciphertexts are brought to", "key_version", "int",
     ["database_rewrap", "k10_passkey_rotate", "vault_transit_rewrap", "vault_transit_rewrap:consumers"],
     ["transit_key_version", "version"]),
    ("oldest key version a consumer still holds", "oldest_version_in_use", "int",
     ["vault_transit_key", "vault_transit_keys:keys"], ["in_use_min_version", "min_version_in_use"]),
    ("acknowledgement that the task destroys data for good", "allow_data_loss", "bool",
     ["vault_mount", "vault_transit_key", "vault_transit_keys:keys"], ["irreversible_ok"]),
    ("whether to wait for the outcome", "wait", "bool", ["k10_import_policy", "k10_passkey"], []),
    ("seconds to wait for the outcome (kubernetes.core's wait_timeout)", "wait_timeout", "int",
     K10_WAITS + ["vault_raft_snapshot"], ["timeout", "passkey_timeout"]),
    ("where the kubernetes auth method is mounted", "mount", "str", KUBE_AUTH_MOUNT_MODULES,
     ["mount_point", "auth_mount", "path"]),
    ("token Vault reviews service-account tokens with", "token_reviewer_jwt", "str", ["vault_k8s_auth"],
     ["reviewer_jwt"]),
    ("token reviewer JWT of each mount", "token_reviewer_jwts", "dict", ["vault_k8s_auth_info"],
     ["reviewer_jwts"]),
    ("where the backup taken before a trim or delete goes", "backup_path", "path",
     ["vault_transit_key", "vault_transit_keys"], ["backup_dir", "backup_to"]),
    ("GPG key the backups are encrypted to", "backup_gpg_recipient", "str",
     ["vault_transit_key", "vault_transit_keys"], []),
    ("GPG public key file the backups are encrypted to", "backup_gpg_key_file", "path",
     ["vault_transit_key", "vault_transit_keys"], []),
    ("requests in flight at once", "workers", "int", ["vault_transit_keys", "vault_transit_rewrap"],
     ["concurrency", "threads"]),
    ("ciphertexts per rewrap request", "batch_size", "int", ["database_rewrap", "vault_transit_rewrap"], []),
    ("how a key derivation context is stored", "context_encoding", "str",
     ["database_rewrap", "vault_transit_rewrap"], []),
    ("file of the unseal keys and the root token", "keys_file", "path", ["vault_init", "vault_unseal"], []),
    ("a Kubernetes object's namespace (a Kubernetes module)", "namespace", "str",
     ["k10_import_policy", "k8s_secret", "k10_passkey:passphrase_secret", "k10_import_policy:source"], []),
]

# (module, option path - "option" or "list_option[].option", old name): renamed options, the old name kept as a
# deprecated alias until 2.0.0.
RENAMES = [
    ("k10_passkey_rotate", "name", "vault_transit_key_name"),  # the consumer modules' name of the transit key
    ("k10_passkey_rotate", "mount", "vault_transit_path"),  # ... and of its mount
    ("k10_passkey_rotate", "wait_timeout", "timeout"),  # kubernetes.core's; timeout is Vault's request timeout
    ("k10_passkey", "wait_timeout", "timeout"),
    ("k10_import_policy", "wait_timeout", "timeout"),
    ("vault_k8s_auth_info", "token_reviewer_jwts", "reviewer_jwts"),  # vault_k8s_auth's token_reviewer_jwt
    ("vault_transit_key", "allow_data_loss", "irreversible_ok"),  # vault_mount's allow_data_loss
    ("vault_transit_keys", "keys[].allow_data_loss", "irreversible_ok"),
    ("vault_transit_key", "oldest_version_in_use", "in_use_min_version"),  # renamed in 0.5.0
    ("vault_transit_keys", "keys[].oldest_version_in_use", "in_use_min_version"),
]

# Arguments that make a module's other constraints hold (mutually exclusive or one-of options).
BASE_ARGS = {"k10_import_policy": {"receive_string": "migration-string"}}

# Aliases that are not deprecated: kubernetes.core's own aliases of its connection options.
PERMANENT_ALIASES = {("ca_cert", "ssl_ca_cert"), ("validate_certs", "verify_ssl")}

# One name, one kind of value - except these, each the name of the thing in its own domain.
KIND_EXCEPTIONS = {
    "path": {"vault_mount"},  # the mount's path in Vault (``vault secrets enable -path``), not a local file
    "keys": {"vault_unseal"},  # the unseal key shares (``keys`` of the init answer), not transit key settings
}


class _Captured(Exception):
    def __init__(self, kwargs):
        super().__init__("AnsibleModule keyword arguments captured")
        self.kwargs = kwargs


def _set_module_args(args):
    params = dict(args, _ansible_check_mode=True, _ansible_diff=False, _ansible_remote_tmp="/tmp",
                  _ansible_keep_remote_files=False)
    basic._ANSIBLE_PROFILE = "legacy"  # pylint: disable=protected-access
    basic._ANSIBLE_ARGS = json.dumps({"ANSIBLE_MODULE_ARGS": params}).encode()  # pylint: disable=protected-access


def _module(name):
    return importlib.import_module("%s.modules.%s" % (PACKAGE, name))


_KWARGS = {}


def module_kwargs(name):
    """The keyword arguments the module creates its AnsibleModule with, captured before any validation."""
    if name not in _KWARGS:
        original = basic.AnsibleModule.__init__

        def capture(self, **kwargs):
            raise _Captured(kwargs)

        saved = (basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE)  # pylint: disable=protected-access
        _set_module_args({})
        basic.AnsibleModule.__init__ = capture
        try:
            _module(name).main()
        except _Captured as captured:
            _KWARGS[name] = captured.kwargs
        finally:
            basic.AnsibleModule.__init__ = original
            basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE = saved  # pylint: disable=protected-access
        assert name in _KWARGS, "%s did not create an AnsibleModule" % name
    return _KWARGS[name]


def argument_spec(name):
    return module_kwargs(name)["argument_spec"]


def documentation(name):
    """The module's DOCUMENTATION with the options of the doc fragments it extends (the module's own win)."""
    doc = yaml.safe_load(_module(name).DOCUMENTATION)
    options = {}
    for fragment in doc.get("extends_documentation_fragment") or []:
        namespace, collection, fragment_name = fragment.split(".")
        assert "%s.%s" % (namespace, collection) == COLLECTION, fragment
        fragment_doc = yaml.safe_load(importlib.import_module(
            "%s.doc_fragments.%s" % (PACKAGE, fragment_name)).ModuleDocFragment.DOCUMENTATION)
        options.update(fragment_doc.get("options") or {})
    options.update(doc.get("options") or {})
    return dict(doc, options=options)


def options_at(spec, where):
    """The options of a module ("module") or the sub-options of one of its options ("module:option")."""
    if ":" not in where:
        return spec
    return spec[where.split(":", 1)[1]]["options"]


def walk(spec, prefix=""):
    """(documented path, name, option spec) of every option and sub-option, sub-options as ``keys[].name``."""
    for name, option in spec.items():
        yield prefix + name, name, option
        if option.get("options"):
            shape = "[]." if option.get("type") == "list" else "."
            yield from walk(option["options"], prefix + name + shape)


def _sample(option, name):
    kind = option.get("type", "str")
    if option.get("choices"):
        return option["choices"][0]
    if kind == "dict" and option.get("options"):
        return _required_args(option["options"])
    if kind == "list" and option.get("options"):
        return [_required_args(option["options"])]
    return {"str": "sample-" + name, "path": "/nonexistent/" + name, "raw": "sample", "int": 7, "float": 0.5,
            "bool": True, "dict": {"kubernetes": "sample"}, "list": ["sample"]}[kind]


def _required_args(spec):
    return dict((name, _sample(option, name)) for name, option in spec.items() if option.get("required"))


def _deprecations():
    return list(ansible_warnings.get_deprecation_messages())


@contextlib.contextmanager
def _clean_module_state(monkeypatch):
    for variable in list(os.environ):
        if variable.startswith(("VAULT_", "K8S_AUTH_")):
            monkeypatch.delenv(variable)
    # Module-side recording of deprecations (into the result), also after other tests loaded controller code.
    monkeypatch.setattr(module_internal, "is_controller", False)
    saved = (basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE)  # pylint: disable=protected-access
    ansible_warnings._global_deprecations.clear()  # pylint: disable=protected-access
    ansible_warnings._global_warnings.clear()  # pylint: disable=protected-access
    try:
        yield
    finally:
        ansible_warnings._global_deprecations.clear()  # pylint: disable=protected-access
        ansible_warnings._global_warnings.clear()  # pylint: disable=protected-access
        basic._ANSIBLE_ARGS, basic._ANSIBLE_PROFILE = saved  # pylint: disable=protected-access


def validated(name, args):
    """The module's parameters after ansible-core has checked ``args``, and the deprecations it recorded."""
    _set_module_args(args)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            module = basic.AnsibleModule(**module_kwargs(name))
        except SystemExit:
            raise AssertionError("%s refused %r: %s" % (name, args, out.getvalue()))
    return module.params, _deprecations()


# (a) the same thing has the same name everywhere

@pytest.mark.parametrize("concept, canonical, kind, where, other_names", VOCABULARY,
                         ids=["%s=%s" % (row[1], row[0]) for row in VOCABULARY])
def test_one_concept_one_name(concept, canonical, kind, where, other_names):
    for place in where:
        module = place.split(":", 1)[0]
        assert module in MODULES, "%s: no module %s" % (concept, module)
        spec = argument_spec(module)
        options = options_at(spec, place)
        assert canonical in options, "%s: %s has no option %s" % (concept, place, canonical)
        assert options[canonical].get("type", "str") == kind, "%s: %s.%s is not a %s" % (
            concept, place, canonical, kind)
        connection = set(VAULT_CONNECTION_ARGSPEC if module in VAULT_GROUP else
                         K8S_CONNECTION_ARGSPEC if module in K10_GROUP else ())
        for other in other_names:
            if other == canonical:
                continue
            if other in options and not (":" not in place and other in connection):
                pytest.fail("%s: %s has an option %s; the name is %s" % (concept, place, other, canonical))
            aliases = options[canonical].get("aliases") or []
            deprecated = [entry["name"] for entry in options[canonical].get("deprecated_aliases") or []]
            if other in aliases:
                assert other in deprecated, "%s: %s accepts %s for %s without deprecating it" % (
                    concept, place, other, canonical)


def test_the_vocabulary_names_every_module_of_the_groups():
    named = set(place.split(":", 1)[0] for _concept, _name, _kind, where, _other in VOCABULARY for place in where)
    assert set(VAULT_GROUP) | set(K10_GROUP) <= named


@pytest.mark.parametrize("module", VAULT_GROUP)
def test_a_vault_group_module_takes_the_vault_connection(module):
    spec = argument_spec(module)
    assert "keyops.lifecycle.vault_connection" in documentation(module)["extends_documentation_fragment"]
    for name, option in VAULT_CONNECTION_ARGSPEC.items():
        assert spec.get(name) == option, "%s: connection option %s differs from _vault's" % (module, name)


@pytest.mark.parametrize("module", K10_GROUP)
def test_a_k10_group_module_takes_kubernetes_core_connection_options(module):
    spec = argument_spec(module)
    assert "keyops.lifecycle.k8s_connection" in documentation(module)["extends_documentation_fragment"]
    for name, option in K8S_CONNECTION_ARGSPEC.items():
        assert spec.get(name) == option, "%s: connection option %s differs from _k8s's" % (module, name)


def test_the_kube_prefix_is_exactly_for_kubernetes_names_a_vault_module_already_uses():
    for name, option in KUBE_OPTIONS_FOR_VAULT_MODULES.items():
        plain = name[len("kube_"):] if name.startswith("kube_") else name
        assert plain in K8S_CONNECTION_ARGSPEC, "%s is no kubernetes.core connection option" % name
        assert name.startswith("kube_") == (plain in VAULT_CONNECTION_ARGSPEC), name
        # the same environment fallback as the kubernetes.core option it stands for
        assert option.get("fallback") == K8S_CONNECTION_ARGSPEC[plain].get("fallback"), name
        assert option.get("type") == K8S_CONNECTION_ARGSPEC[plain].get("type"), name


@pytest.mark.parametrize("module", VAULT_GROUP)
def test_a_vault_module_talks_to_kubernetes_with_the_kube_options_only(module):
    spec = argument_spec(module)
    kube = [name for name in KUBE_OPTIONS_FOR_VAULT_MODULES if name in spec]
    assert kube in ([], list(KUBE_OPTIONS_FOR_VAULT_MODULES)), "%s takes only some of %s" % (module, kube)
    assert bool(kube) == (module in VAULT_AND_KUBE)
    for name in kube:
        assert spec[name] == KUBE_OPTIONS_FOR_VAULT_MODULES[name], (module, name)
    for name in ("ssl_ca_cert", "verify_ssl", "request_timeout"):
        assert all(name not in (option.get("aliases") or []) and path != name
                   for path, _name, option in walk(spec)), "%s: %s would be ambiguous here" % (module, name)


@pytest.mark.parametrize("module", MODULES)
def test_no_option_has_a_second_permanent_name(module):
    for path, name, option in walk(argument_spec(module)):
        deprecated = set(entry["name"] for entry in option.get("deprecated_aliases") or [])
        for alias in option.get("aliases") or []:
            assert alias in deprecated or (name, alias) in PERMANENT_ALIASES, (
                "%s: %s is also called %s; one thing has one name (deprecate the alias)" % (module, path, alias))


def test_one_name_one_kind_of_value():
    kinds = {}
    for module in MODULES:
        for path, name, option in walk(argument_spec(module)):
            if module in KIND_EXCEPTIONS.get(name, ()):
                continue
            kind = (option.get("type", "str"), option.get("elements"))
            kinds.setdefault(name, {}).setdefault(kind, []).append("%s:%s" % (module, path))
    mixed = dict((name, found) for name, found in kinds.items() if len(found) > 1)
    assert not mixed, "options of one name with different kinds of value: %s" % mixed


# (b) every old name still works, deprecated

@pytest.mark.parametrize("module, path, old", RENAMES, ids=["%s:%s" % (row[0], row[2]) for row in RENAMES])
def test_an_old_name_is_a_deprecated_alias(module, path, old):
    spec = argument_spec(module)
    parent, _dot, new = path.rpartition("[].")
    option = spec[parent]["options"][new] if parent else spec[new]
    assert old in option.get("aliases", []), "%s: %s is not an alias of %s" % (module, old, path)
    assert {"name": old, "version": REMOVAL, "collection_name": COLLECTION} in option.get("deprecated_aliases", [])
    assert old not in (spec[parent]["options"] if parent else spec), "%s: %s is still an option" % (module, old)


@pytest.mark.parametrize("module, path, old", RENAMES, ids=["%s:%s" % (row[0], row[2]) for row in RENAMES])
def test_an_old_name_still_sets_the_option_and_warns(module, path, old, monkeypatch):
    spec = argument_spec(module)
    parent, _dot, new = path.rpartition("[].")
    value = _sample(spec[parent]["options"][new] if parent else spec[new], new)
    args = dict(_required_args(spec), **BASE_ARGS.get(module, {}))
    with _clean_module_state(monkeypatch):
        if parent:
            entry = dict(args[parent][0])
            entry.pop(new, None)
            entry[old] = value
            args[parent] = [entry]
            params, deprecations = validated(module, args)
            assert params[parent][0][new] == value
            where = "%s[0].%s" % (parent, old)
        else:
            args.pop(new, None)
            args[old] = value
            params, deprecations = validated(module, args)
            assert params[new] == value
            where = old
        assert [d for d in deprecations if "Alias '%s' is deprecated" % where in d["msg"]
                and d.get("version") == REMOVAL and d.get("collection_name") == COLLECTION], deprecations

        # The new name: no deprecation.
        ansible_warnings._global_deprecations.clear()  # pylint: disable=protected-access
        args = dict(_required_args(spec), **BASE_ARGS.get(module, {}))
        if parent:
            args[parent] = [dict(args[parent][0], **{new: value})]
        else:
            args[new] = value
        params, deprecations = validated(module, args)
        assert (params[parent][0][new] if parent else params[new]) == value
        assert deprecations == []


def test_the_renames_are_in_the_changelog():
    # released in 1.0.0 (before the release, the same lines were the fragment option-vocabulary.yml)
    with open(os.path.join(ROOT, "changelogs", "changelog.yaml")) as handle:
        fragment = yaml.safe_load(handle)["releases"]["1.0.0"]["changes"]
    deprecated = " ".join(fragment["deprecated_features"])
    added = " ".join(fragment["minor_changes"])
    for module, path, old in RENAMES:
        if old == "in_use_min_version":
            continue  # deprecated by an earlier release (consumer-contract.yml)
        new = path.rpartition("[].")[2]
        assert module in deprecated and "``%s``" % old in deprecated, (module, old)
        assert module in added and "``%s``" % new in added, (module, new)


# (c) DOCUMENTATION and argument spec agree

def _documented(options, prefix=""):
    for name, option in (options or {}).items():
        yield prefix + name, option
        if option.get("suboptions"):
            shape = "[]." if option.get("type") == "list" else "."
            yield from _documented(option["suboptions"], prefix + name + shape)


@pytest.mark.parametrize("module", MODULES)
def test_documentation_and_argument_spec_list_the_same_options(module):
    documented = dict(_documented(documentation(module)["options"]))
    specified = dict((path, option) for path, _name, option in walk(argument_spec(module)))
    assert sorted(documented) == sorted(specified), "%s: documented but not in the spec: %s; in the spec only: %s" % (
        module, sorted(set(documented) - set(specified)), sorted(set(specified) - set(documented)))
    for path, option in specified.items():
        doc = documented[path]
        assert sorted(doc.get("aliases") or []) == sorted(option.get("aliases") or []), "%s: aliases of %s" % (
            module, path)
        assert doc.get("type", "str") == option.get("type", "str"), "%s: type of %s" % (module, path)
        assert bool(doc.get("required")) == bool(option.get("required")), "%s: required of %s" % (module, path)


@pytest.mark.parametrize("module", MODULES)
def test_every_deprecated_alias_is_documented_as_such(module):
    documented = dict(_documented(documentation(module)["options"]))
    for path, _name, option in walk(argument_spec(module)):
        description = documented[path].get("description")
        text = " ".join(description) if isinstance(description, list) else description
        parent = path.rpartition(".")[0]
        for entry in option.get("deprecated_aliases") or []:
            assert entry.get("version") == REMOVAL and entry.get("collection_name") == COLLECTION, (module, entry)
            alias = (parent + "." if parent else "") + entry["name"]
            sentence = "The alias O(%s) is deprecated and will be removed in %s." % (alias, REMOVAL)
            assert sentence in text, "%s: %s does not say %r" % (module, path, sentence)
