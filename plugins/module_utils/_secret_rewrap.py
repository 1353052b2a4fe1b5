# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Transit ciphertexts kept in Kubernetes Secret data keys: census and rewrap (private).

:func:`plan` decides (pure); :func:`rewrap_secret` reads the Secret, rewraps through Vault and writes it
back with its resourceVersion, so a concurrent writer gets a 409 instead of being overwritten.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64

from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import K8sModuleError, resource_path
from ansible_collections.keyops.lifecycle.plugins.module_utils._rewrap import (
    BatchRewrapper, census_add, ciphertext_version, make_sender, min_version, sorted_census)


def decode(value):
    try:
        return base64.b64decode(value).decode("utf-8").strip()
    except (ValueError, UnicodeDecodeError):
        return None


def plan(data, data_keys, latest):
    """``(census, stale)``: versions of the chosen data keys, and ``[(key, ciphertext)]`` below ``latest``.

    Without ``data_keys`` every value that is a transit ciphertext counts; named keys must be ciphertexts.
    """
    census, stale = {}, []
    names = list(data_keys) if data_keys else sorted(data or {})
    for name in names:
        if name not in (data or {}):
            raise K8sModuleError("the Secret has no data key %r (data_keys names the keys holding ciphertext)" % name)
        value = decode(data[name])
        version = ciphertext_version(value)
        if version is None:
            if data_keys:
                raise K8sModuleError("data key %r of the Secret is not a Vault transit ciphertext "
                                     "(expected vault:v<N>:...)" % name)
            continue
        census_add(census, version)
        if version < latest:
            stale.append((name, value))
    return sorted_census(census), stale


def rewrap_secret(vault, kube, params, check_mode):
    namespace, name = params["secret_namespace"], params["secret"]
    mount, key = params["mount"].strip("/"), params["name"]
    what = "secret %s/%s" % (namespace, name)
    secret = kube.request("GET", resource_path("", "v1", "secrets", namespace, name), what=what)
    key_data = vault.read("%s/keys/%s" % (mount, key))
    if not key_data:
        raise K8sModuleError("transit key %r does not exist in mount %r" % (key, mount))
    latest = int(key_data["latest_version"])
    census_before, stale = plan(secret.get("data"), params.get("data_keys"), latest)
    result = {"changed": bool(stale), "rewrapped": len(stale), "census_before": census_before,
              "latest_version": latest}
    if stale and not check_mode:
        rewrap = BatchRewrapper(make_sender(vault, mount, key), 400)
        answers = rewrap([ciphertext for _name, ciphertext in stale])
        data = dict(secret["data"])
        for (data_key, _old), answer in zip(stale, answers):
            if answer.get("error") or not answer.get("ciphertext"):
                raise K8sModuleError("Vault could not rewrap data key %r of %s: %s"
                                     % (data_key, what, answer.get("error")))
            data[data_key] = base64.b64encode(answer["ciphertext"].encode()).decode()
        secret["data"] = data  # metadata.resourceVersion stays: a concurrent change answers 409
        kube.request("PUT", resource_path("", "v1", "secrets", namespace, name), body=secret, what=what)
    census_after = dict(census_before)
    if stale and not check_mode:  # the consumer contract: in check mode the census after is the census before
        census_after = {}
        for version, count in census_before.items():
            target = str(latest) if int(version) < latest else version
            census_after[target] = census_after.get(target, 0) + count
        census_after = sorted_census(census_after)
    result.update(census_after=census_after, oldest_version_in_use=min_version(census_after))
    return result
