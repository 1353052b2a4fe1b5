#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k8s_secret_rewrap
short_description: Rewrap Vault transit ciphertexts stored in a Kubernetes Secret
version_added: 0.2.0
description:
  - Step 2 of the three-step rotation for ciphertexts kept in Secret data keys (the C(k8s_secret) consumer type
    of the transit_rotation role) - every ciphertext below the key's latest version is rewrapped through Vault
    (the plaintext never leaves Vault) and the Secret is written back with its C(resourceVersion), so a
    concurrent change fails with a clear error instead of being overwritten.
  - Returns the census of key versions before and after, for the decision on C(min_decryption_version).
extends_documentation_fragment:
  - keyops.lifecycle.vault_connection
attributes:
  diff_mode:
    support: none
options:
  name:
    description: Transit key name.
    type: str
    required: true
  mount:
    description: Transit mount.
    type: str
    default: transit
  secret:
    description: Name of the Secret.
    type: str
    required: true
  secret_namespace:
    description: Namespace of the Secret.
    type: str
    default: default
  data_keys:
    description: Data keys holding ciphertexts; by default every data key whose value is a transit ciphertext.
    type: list
    elements: str
  kubeconfig:
    description: Kubeconfig path or dictionary. Defaults to E(K8S_AUTH_KUBECONFIG), E(KUBECONFIG), C(~/.kube/config).
    type: raw
  context:
    description: Kubeconfig context. Defaults to E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description: API server URL (with O(api_key)). Defaults to E(K8S_AUTH_HOST).
    type: str
  api_key:
    description: Bearer token for the API server. Defaults to E(K8S_AUTH_API_KEY). Never logged.
    type: str
  kube_ca_cert:
    description:
      - CA bundle for the API server. Defaults to E(K8S_AUTH_SSL_CA_CERT).
      - O(ca_cert) is the Vault server's; the Kubernetes options whose names Vault's options already take have
        the C(kube_) prefix.
    type: path
  kube_validate_certs:
    description: Verify the API server's certificate (O(validate_certs) is Vault's). Defaults to E(K8S_AUTH_VERIFY_SSL).
    type: bool
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Rewrap the app's wrapped data keys
  keyops.lifecycle.k8s_secret_rewrap:
    name: app
    secret: app-wrapped-keys
    secret_namespace: payments
"""

RETURN = r"""
# census: generated from module_utils/_consumers.py by tools/consumer_contract.py
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
# end of census
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import (
    KUBE_OPTIONS_FOR_VAULT_MODULES, client_for_vault_module)
from ansible_collections.keyops.lifecycle.plugins.module_utils._secret_rewrap import rewrap_secret
from ansible_collections.keyops.lifecycle.plugins.module_utils._vault import run_vault_module, vault_argument_spec


def main():
    module = AnsibleModule(argument_spec=vault_argument_spec(
        name=dict(type="str", required=True),
        mount=dict(type="str", default="transit"),
        secret=dict(type="str", required=True, no_log=False),
        secret_namespace=dict(type="str", default="default", no_log=False),
        data_keys=dict(type="list", elements="str", no_log=False),
        **KUBE_OPTIONS_FOR_VAULT_MODULES), supports_check_mode=True)

    # Kubernetes and Vault failures share one error base: the runner reports either the same way.
    run_vault_module(module, lambda vault: rewrap_secret(vault, client_for_vault_module(module.params),
                                                         module.params, module.check_mode))


if __name__ == "__main__":
    main()
