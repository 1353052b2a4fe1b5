# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared by the collection's filter plugins (private): input errors of the pure decisions become filter errors."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import functools

from ansible.errors import AnsibleFilterError


def reporting(error_class):
    """Decorator: ``error_class`` raised by the decision becomes AnsibleFilterError with the same message."""
    def wrap(function):
        @functools.wraps(function)
        def filter_function(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except error_class as exc:
                raise AnsibleFilterError(str(exc))
        return filter_function
    return wrap
