# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection and authentication options shared by every vault_* module, and what every one of them
    # has in common: full check mode and membership of the keyops.lifecycle.vault action group (set the
    # connection once with module_defaults). Modules state their diff_mode support themselves.
    DOCUMENTATION = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
  action_group:
    description: Use C(group/keyops.lifecycle.vault) in C(module_defaults) to set connection options once.
    support: full
    membership:
      - keyops.lifecycle.vault
options:
  url:
    description:
      - Address of the Vault or OpenBao server, for example C(https://vault.example.com:8200).
      - Defaults to the E(VAULT_ADDR) environment variable.
    type: str
  token:
    description:
      - Token used when O(auth_method=token).
      - Defaults to the E(VAULT_TOKEN) environment variable. Never logged.
    type: str
  auth_method:
    description:
      - How to authenticate.
      - V(token) uses O(token); V(approle) logs in with O(role_id) and O(secret_id);
        V(kubernetes) logs in with the pod's service account token from O(kubernetes_jwt_file) as O(kubernetes_role).
      - Defaults to the E(VAULT_AUTH_METHOD) environment variable, then V(token).
    type: str
    choices: [token, approle, kubernetes]
    default: token
  auth_mount_point:
    description:
      - Where the auth method is mounted. Defaults to E(VAULT_AUTH_MOUNT_POINT), then V(approle) or V(kubernetes).
    type: str
  role_id:
    description:
      - AppRole role ID. Defaults to E(VAULT_ROLE_ID).
    type: str
  secret_id:
    description:
      - AppRole secret ID. Defaults to E(VAULT_SECRET_ID). Never logged.
    type: str
  kubernetes_role:
    description:
      - Vault role for O(auth_method=kubernetes). Defaults to E(VAULT_KUBERNETES_ROLE).
    type: str
  kubernetes_jwt_file:
    description:
      - File holding the service account JWT for O(auth_method=kubernetes).
      - Defaults to E(VAULT_KUBERNETES_JWT_FILE), then the pod's service account token.
    type: path
    default: /var/run/secrets/kubernetes.io/serviceaccount/token
  namespace:
    description:
      - Vault Enterprise / OpenBao namespace. Defaults to E(VAULT_NAMESPACE).
    type: str
  ca_cert:
    description:
      - CA bundle used to verify the server certificate. Defaults to E(VAULT_CACERT).
    type: path
  validate_certs:
    description:
      - Verify the server's TLS certificate.
      - When unset, certificates are verified unless E(VAULT_SKIP_VERIFY) is true.
    type: bool
  timeout:
    description:
      - Seconds to wait for each HTTP answer.
    type: int
    default: 30
  retries:
    description:
      - How often to retry a request that failed for a transient reason (HTTP 412, 429, 500, 502, 503 from
        an unsealed server, 504, connection errors), with exponential backoff.
      - Requests that are not safe to repeat (rotation) are retried only when they cannot have reached
        the server; their outcome is otherwise checked by reading the state back.
    type: int
    default: 3
  election_timeout:
    description:
      - Seconds to keep retrying while a raft cluster elects a new leader, against O(url) again each time.
        A standby whose leader died redirects every write (and every request it would forward) to the dead
        leader for the whole election, and says it knows of no active node once it notices; both are retried
        this long, polling every second, whatever O(retries) says. Elections took 6 to 12 seconds on
        3-node OpenBao 2.7 clusters.
      - Requests that are not safe to repeat (rotation) are retried only when the redirect target refused
        the connection (the standby that redirected did not act on them and nobody else received them).
      - V(0) turns the wait off (the ordinary O(retries) apply). Past the window the task fails naming the
        node that redirected and the node it redirected to.
      - Defaults to the E(VAULT_ELECTION_TIMEOUT) environment variable, then V(30).
    type: int
    default: 30
requirements:
  - hvac >= 2.0 (Python library on the host that runs the module)
notes:
  - A sealed server, a permission problem (naming the path and the capability needed), a missing mount and
    an unreachable address each fail with an explanation instead of a traceback.
"""
