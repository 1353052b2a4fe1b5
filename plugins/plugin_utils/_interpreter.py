# -*- coding: utf-8 -*-
# Copyright: keyops.lifecycle contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Is a host's Python the very Python running Ansible?  Decided by what the interpreter is, not how it is spelt.

A module may run inside Ansible's worker only when a module process would have run the same executable in the
same environment: then it imports the same libraries either way.  ``.venv/bin/python``, ``.venv/bin/python3``
and the ``python3.11`` that interpreter discovery finds on ``PATH`` of an activated venv are one Python;
``/usr/bin/python3`` next to that venv is another one (same binary, other site-packages), and so is a second
venv of the same base interpreter.

Python itself decides its environment at start-up: a ``pyvenv.cfg`` beside the executable as it was invoked
(symlinks not followed) or one directory up makes that directory its ``sys.prefix``; otherwise it is the
installation of the real executable.  A venv has exactly one interpreter, so two paths into the same venv are
the same Python even when the venv holds copies instead of links.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil

# INTERPRETER_PYTHON values that ask Ansible to discover the interpreter on the host.
DISCOVERY_MODES = ("auto", "auto_silent", "auto_legacy", "auto_legacy_silent")


class UnknownInterpreter(Exception):
    """The interpreter setting does not name one executable this code can identify."""


def venv_root(executable):
    """The virtual environment an interpreter path starts in, as Python finds it, or None."""
    here = os.path.dirname(os.path.abspath(executable))
    for candidate in (here, os.path.dirname(here)):
        if os.path.isfile(os.path.join(candidate, "pyvenv.cfg")):
            return os.path.realpath(candidate)
    return None


def environment_of(executable):
    """What decides which code an interpreter imports: ('venv', root) or ('installation', device, inode)."""
    root = venv_root(executable)
    if root is not None:
        return ("venv", root)
    try:
        stat = os.stat(os.path.realpath(executable))
    except OSError as exc:
        raise UnknownInterpreter("%s cannot be read: %s" % (executable, exc.strerror))
    return ("installation", stat.st_dev, stat.st_ino)


def resolve(interpreter, search_path):
    """The executable an interpreter setting runs, as the shell would find it: a path, a command looked up on
    ``search_path`` (also behind ``/usr/bin/env``)."""
    words = interpreter.split()
    if len(words) == 2 and os.path.basename(words[0]) == "env":
        words = words[1:]
    if len(words) != 1:
        raise UnknownInterpreter("%r is a command with arguments, not one executable" % interpreter)
    word = words[0]
    if os.sep in word:
        found = os.path.abspath(word)
        if not os.access(found, os.X_OK):
            raise UnknownInterpreter("%s is not an executable file" % found)
        return found
    found = shutil.which(word, path=search_path)
    if found is None:
        raise UnknownInterpreter("%s is not found on PATH" % word)
    return found


def controller_environment(executable, prefix, base_prefix):
    """The environment of the Python running Ansible (``sys.executable``, ``sys.prefix``, ``sys.base_prefix``).

    Refused when ``pyvenv.cfg`` does not describe it (an embedded or relocated Python): then a host's
    interpreter cannot be proven to be this one."""
    if not executable:
        raise UnknownInterpreter("the Python running Ansible does not know its own executable")
    found = environment_of(executable)
    in_venv = os.path.realpath(prefix) != os.path.realpath(base_prefix)
    if in_venv != (found[0] == "venv") or (in_venv and found[1] != os.path.realpath(prefix)):
        raise UnknownInterpreter("the Python running Ansible (%s, prefix %s) is not where its executable says"
                                 % (executable, prefix))
    return found


def same_python(interpreter, search_path, controller):
    """None when ``interpreter`` (an absolute path or a command) runs the controller's environment
    ``controller`` (from :func:`controller_environment`), else why not."""
    try:
        executable = resolve(interpreter, search_path)
        if environment_of(executable) == controller:
            return None
    except UnknownInterpreter as exc:
        return "the host's Python cannot be identified: %s" % exc
    return "the host's Python (%s) is another Python or environment than the one running Ansible" % executable
