# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Kubernetes connection options shared by the k10_* modules: kubernetes.core's names and K8S_AUTH_*
    # environment fallbacks, full check mode, and the keyops.lifecycle.k10 action group.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  action_group:
    description: Use C(group/keyops.lifecycle.k10) in C(module_defaults) to set connection options once.
    support: full
    membership:
      - keyops.lifecycle.k10
options:
  kubeconfig:
    description:
      - Path of a kubeconfig file, or the kubeconfig itself as a dictionary.
      - Defaults to E(K8S_AUTH_KUBECONFIG), then E(KUBECONFIG), then C(~/.kube/config); inside a pod with none of
        these, the pod's service account is used.
    type: raw
  context:
    description: Context of the kubeconfig to use. Defaults to E(K8S_AUTH_CONTEXT), then the current context.
    type: str
  host:
    description: URL of the API server; with O(api_key), no kubeconfig is needed. Defaults to E(K8S_AUTH_HOST).
    type: str
  api_key:
    description: Bearer token for the API server. Defaults to E(K8S_AUTH_API_KEY). Never logged.
    type: str
  ca_cert:
    description: CA bundle to verify the API server with. Defaults to E(K8S_AUTH_SSL_CA_CERT).
    type: path
    aliases: [ssl_ca_cert]
  validate_certs:
    description: Whether to verify the API server's certificate. Defaults to E(K8S_AUTH_VERIFY_SSL).
    type: bool
    aliases: [verify_ssl]
  request_timeout:
    description: Seconds to wait for one API response.
    type: int
    default: 30
  retries:
    description: Retries on 429 and 5xx answers (only requests that are safe to repeat are repeated after a 5xx).
    type: int
    default: 3
requirements:
  - kubernetes >= 28
"""
