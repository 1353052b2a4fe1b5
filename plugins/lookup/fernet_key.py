# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: fernet_key
short_description: A new Fernet key, made on the controller
version_added: 0.3.0
description:
  - Returns one new Fernet key (32 random bytes from the OS, URL-safe base64) per term, or one without terms - the
    format of keystone's fernet, receipt and credential keys. Mark tasks using it C(no_log).
options:
  _terms:
    description: Ignored; one key is returned per term.
    required: false
author:
  - keyops developers (@keyops)
"""

EXAMPLES = r"""
- name: The next staged key, made once for all nodes
  ansible.builtin.set_fact:
    keyrepo_new_staged: "{{ lookup('keyops.lifecycle.fernet_key') }}"
  no_log: true
  run_once: true
"""

RETURN = r"""
_raw:
  description: The keys.
  type: list
  elements: str
"""

from ansible.plugins.lookup import LookupBase

from ansible_collections.keyops.lifecycle.plugins.module_utils._keyrepo import new_key


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [new_key().decode() for _term in (terms or [None])]
