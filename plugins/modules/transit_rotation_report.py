#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: transit_rotation_report
short_description: Write the transit rotation report (JSON and Markdown) in one step
version_added: 0.1.0
description:
  - Writes C(<name>.json) and C(<name>.md) from the C(transit_rotation_results) of the
    keyops.lifecycle.transit_rotation role. Each file is written to a temporary file, fsynced and renamed,
    so a reader never sees half a report.
  - The report holds key names, versions, censuses and errors - never key material or ciphertext.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
extends_documentation_fragment:
  - keyops.lifecycle.attributes
options:
  path:
    description: Directory for the report (created with mode 0750 when missing).
    type: path
    required: true
  results:
    description: The role's C(transit_rotation_results).
    type: list
    elements: dict
    required: true
  name:
    description: File name without extension.
    type: str
    default: rotation-report
  mode:
    description:
      - Mode of the report files - an octal string like V('0640'), or an integer mode as
        C(ansible.builtin.file) takes it (YAML reads an unquoted C(0640) as that integer).
    type: raw
    default: "0640"
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: Write the report next to the playbook run
  keyops.lifecycle.transit_rotation_report:
    path: ./rotation-reports
    results: "{{ transit_rotation_results }}"
"""

RETURN = r"""
files:
  description: The files written (or that would be).
  returned: always
  type: list
  elements: str
  sample: [./rotation-reports/rotation-report.json, ./rotation-reports/rotation-report.md]
markdown:
  description: The Markdown report.
  returned: always
  type: str
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes

from ansible_collections.keyops.lifecycle.plugins.module_utils import _atomic
from ansible_collections.keyops.lifecycle.plugins.module_utils._rotation import report_markdown


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            results=dict(type="list", elements="dict", required=True),
            name=dict(type="str", default="rotation-report"),
            mode=dict(type="raw", default="0640"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    # As ansible.builtin.file: an integer is the mode itself (YAML reads 0640 as 416), a string is octal digits.
    mode = params["mode"] if isinstance(params["mode"], int) and not isinstance(params["mode"], bool) else None
    if mode is None:
        try:
            mode = int(str(params["mode"]), 8)
        except ValueError:
            module.fail_json(msg="mode must be an octal string like '0640' (got %r)" % params["mode"])
    if not 0 <= mode <= 0o7777:
        module.fail_json(msg="mode must be between 0000 and 7777 octal (got %r)" % params["mode"])
    try:
        markdown = report_markdown(params["results"])
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        problem = "missing %s" % exc if isinstance(exc, KeyError) else "%s: %s" % (type(exc).__name__, exc)
        module.fail_json(msg="results are not transit_rotation_results (%s); pass the transit_rotation role's "
                             "records" % problem)
    contents = {
        os.path.join(params["path"], params["name"] + ".json"): to_bytes(json.dumps(params["results"], indent=2) + "\n"),
        os.path.join(params["path"], params["name"] + ".md"): to_bytes(markdown),
    }
    changed = False
    for path, content in contents.items():
        try:
            with open(path, "rb") as handle:
                same = handle.read() == content and (os.stat(path).st_mode & 0o7777) == mode
        except (IOError, OSError):
            same = False
        changed = changed or not same
        if same or module.check_mode:
            continue
        try:
            if not os.path.isdir(params["path"]):
                os.makedirs(params["path"], 0o750)
            _atomic.write_file(path, content, mode=mode)
        except (IOError, OSError) as exc:
            module.fail_json(msg="cannot write the report %s: %s" % (path, exc))
    module.exit_json(changed=changed, files=sorted(contents), markdown=markdown)


if __name__ == "__main__":
    main()
