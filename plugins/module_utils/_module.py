# -*- coding: utf-8 -*-
# Copyright (c) keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Creating an AnsibleModule whose options have sub-options, with a clear error for a malformed value.

ansible-core walks sub-options (to collect no_log values and apply defaults) before it checks their type,
so ``source: 5`` or ``keys: [5]`` ends in ``Module failed: argument of type 'int' is not iterable`` (and
a traceback with -vvv) instead of a message that names the option.  ``checked_suboptions`` checks the shape of
such values first and fails the way any module fails, with the option named and its values masked.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils import basic
from ansible.module_utils.common.validation import check_type_dict


def _given(params, name, spec):
    for key in [name] + list(spec.get("aliases") or []):
        if key in params:
            return key, params[key]
    return None, None


def _expected(spec):
    return "a dictionary with the options %s" % ", ".join(sorted(spec["options"]))


def _unparsable(value):
    """True when ansible-core could not read the string as a dictionary (JSON or key=value)."""
    try:
        check_type_dict(value)
    except (TypeError, ValueError):
        return True
    return False


def shape_problems(argument_spec, params, prefix=""):
    """What is wrong with the shape of values given to options with sub-options (pure; never quotes a value)."""
    problems = []
    if not isinstance(params, dict):
        return problems
    for name, spec in argument_spec.items():
        key, value = _given(params, name, spec)
        if not spec.get("options") or value is None:
            continue
        where = prefix + key
        if spec.get("type", "str") == "list":
            if not isinstance(value, list):
                continue  # ansible-core's own check names the option and the type clearly
            for index, element in enumerate(value):
                label = "%s[%d]" % (where, index)
                if isinstance(element, dict):
                    problems.extend(shape_problems(spec["options"], element, label + "."))
                elif not isinstance(element, str):  # a string is parsed as JSON or key=value by ansible-core
                    problems.append("%s must be %s, not %s" % (label, _expected(spec), type(element).__name__))
                elif _unparsable(element):
                    problems.append("%s must be %s, not a string that is neither JSON nor key=value"
                                    % (label, _expected(spec)))
        elif isinstance(value, dict):
            problems.extend(shape_problems(spec["options"], value, where + "."))
        elif not isinstance(value, str):
            problems.append("%s must be %s, not %s" % (where, _expected(spec), type(value).__name__))
        elif _unparsable(value):  # ansible-core's own message would not name the option
            problems.append("%s must be %s, not a string that is neither JSON nor key=value" % (where, _expected(spec)))
    return problems


def _any_no_log(spec):
    return bool(spec.get("no_log")) or any(_any_no_log(sub) for sub in (spec.get("options") or {}).values())


def _unchecked_spec(argument_spec):
    """The same option names, every value accepted as given; an option hiding a secret anywhere stays no_log."""
    return dict((name, dict(type="raw", aliases=list(spec.get("aliases") or []), no_log=_any_no_log(spec)))
                for name, spec in argument_spec.items())


def checked_suboptions(module_kwargs):
    """``AnsibleModule(**checked_suboptions(kwargs))``: fails cleanly first when a sub-option value has the wrong
    shape, otherwise hands the keyword arguments on unchanged."""
    problems = shape_problems(module_kwargs["argument_spec"], basic._load_params())  # pylint: disable=protected-access
    if problems:
        module = basic.AnsibleModule(argument_spec=_unchecked_spec(module_kwargs["argument_spec"]),
                                     supports_check_mode=True)
        module.fail_json(msg="Invalid module arguments: %s." % "; ".join(problems))
    return module_kwargs
