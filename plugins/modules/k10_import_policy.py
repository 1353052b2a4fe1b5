#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: k10_import_policy
short_description: Give a K10 import policy the source's current migration string, run it and check the result
version_added: 0.2.0
description:
  - "Fixes imports failing with C(chacha20poly1305: message authentication failed) because the destination's
    import policy holds a stale migration string (for example after K10 was upgraded on the source)."
  - Reads C(exportParameters.receiveString) of the source cluster's export policy (or takes O(receive_string)),
    sets the destination import policy's C(importParameters.receiveString) with a JSON patch that only applies
    if nobody changed the policy meanwhile, and with O(run=true) starts the import (a C(RunAction)) and with
    O(wait=true) waits for its final state.
  - When the import still cannot open a collection although it used the source's current string, K10 on the
    source was reinstalled without its disaster-recovery restore; the module says so instead of dumping the raw
    error, because only K10 DR (or deleting those collections) can fix that.
  - The migration string is never logged or shown; the diff only says whether it changed.
extends_documentation_fragment:
  - keyops.lifecycle.k8s_connection
attributes:
  diff_mode:
    support: full
    details: The diff says whether the receive string changed, never its value.
options:
  name:
    description: Name of the import policy on the destination cluster.
    type: str
    required: true
  namespace:
    description: Namespace of the import policy.
    type: str
    default: kasten-io
  receive_string:
    description: The migration string itself. Never logged. Use O(source) to read it from the export policy.
    type: str
  source:
    description: Where the source cluster's export policy is.
    type: dict
    suboptions:
      kubeconfig:
        description: Kubeconfig of the source cluster (path or dictionary); defaults to the destination's.
        type: raw
      context:
        description: Context of the source cluster.
        type: str
      host:
        description: API server URL of the source cluster (with O(source.api_key)).
        type: str
      api_key:
        description: Bearer token for the source cluster.
        type: str
      ca_cert:
        description: CA bundle for the source cluster.
        type: path
      validate_certs:
        description: Verify the source API server's certificate.
        type: bool
      policy:
        description: Name of the export policy.
        type: str
        required: true
      namespace:
        description: Namespace of the export policy.
        type: str
        default: kasten-io
  run:
    description: Start the import after updating the policy (always counts as a change).
    type: bool
    default: false
  wait:
    description: Wait for the import's final state and fail, with the diagnosis, unless it completed.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait for the import (with O(wait=true)).
      - The alias O(timeout) is deprecated and will be removed in 2.0.0.
    type: int
    default: 600
    aliases: [timeout]
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Propagate the migration string from the source and re-run the import
  keyops.lifecycle.k10_import_policy:
    context: destination
    name: import-from-prod
    source:
      context: prod
      policy: export-to-dr
    run: true
"""

RETURN = r"""
receive_string_changed:
  description: Whether the import policy's receiveString was (or in check mode would be) replaced.
  returned: always
  type: bool
action:
  description: The import run (name, state, error as one line); null without O(run).
  returned: always
  type: dict
diagnosis:
  description: What was wrong, when the string was stale.
  returned: when the string was updated from the source
  type: str
case:
  description: On a failed import, V(stale_string), V(source_reinstalled), V(authentication_failed) or V(other).
  returned: on failure
  type: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.keyops.lifecycle.plugins.module_utils._module import checked_suboptions
from ansible_collections.keyops.lifecycle.plugins.module_utils._k8s import (
    K8S_CONNECTION_ARGSPEC, K8sClient, run_k8s_module, wait_for)
from ansible_collections.keyops.lifecycle.plugins.module_utils._k10 import K10, MigrationRunner

SOURCE_CONNECTION = ("kubeconfig", "context", "host", "api_key", "ca_cert", "validate_certs")


def main():
    argument_spec = dict(
        K8S_CONNECTION_ARGSPEC,
        name=dict(type="str", required=True),
        namespace=dict(type="str", default="kasten-io"),
        receive_string=dict(type="str", no_log=True),
        source=dict(type="dict", options=dict(
            kubeconfig=dict(type="raw"), context=dict(type="str"), host=dict(type="str"),
            api_key=dict(type="str", no_log=True), ca_cert=dict(type="path"), validate_certs=dict(type="bool"),
            policy=dict(type="str", required=True), namespace=dict(type="str", default="kasten-io"))),
        run=dict(type="bool", default=False),
        wait=dict(type="bool", default=True),
        wait_timeout=dict(type="int", default=600, aliases=["timeout"], deprecated_aliases=[
            dict(name="timeout", version="2.0.0", collection_name="keyops.lifecycle")]),
    )
    module = AnsibleModule(**checked_suboptions(dict(
        argument_spec=argument_spec, supports_check_mode=True,
        mutually_exclusive=[("receive_string", "source")],
        required_one_of=[("receive_string", "source")])))

    def work(client):
        source = None
        if module.params["source"]:
            # The source cluster: its own settings where given, the destination's otherwise.
            params = dict(module.params)
            given = dict((k, v) for k, v in module.params["source"].items() if k in SOURCE_CONNECTION and v is not None)
            if given.get("host") and "kubeconfig" not in given:
                params["kubeconfig"] = None
            params.update(given)
            source = K10(K8sClient.from_params(params))
        return MigrationRunner(K10(client), source, module.params, module.check_mode, wait_for).run()

    run_k8s_module(module, work)


if __name__ == "__main__":
    main()
