"""Print the path of a CPython X.Y on this machine (make test's compatibility phase), or say what is missing.

Looked for as ``pythonX.Y`` on PATH (a pyenv shim counts only when it really runs that version), then in
pyenv's versions (newest patch release first), then in /usr/bin and /usr/local/bin.  Exit 1 when there is none.
"""

import glob
import os
import re
import subprocess
import sys

PROBE = "import sys; print('%d.%d' % sys.version_info[:2], sys.executable)"


def answers(candidate, wanted):
    """The interpreter's real executable when ``candidate`` runs Python ``wanted``, else None."""
    try:
        out = subprocess.run([candidate, "-c", PROBE], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return None
    words = out.stdout.split(None, 1)
    if out.returncode == 0 and len(words) == 2 and words[0] == wanted:
        return words[1].strip()
    return None


def candidates(wanted):
    name = "python" + wanted
    yield from (os.path.join(directory, name) for directory in os.environ.get("PATH", "").split(os.pathsep))
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")

    def patch(path):
        return [int(part) for part in re.findall(r"\d+", os.path.basename(os.path.dirname(os.path.dirname(path))))]

    yield from sorted(glob.glob(os.path.join(root, "versions", wanted + ".*", "bin", name)), key=patch, reverse=True)
    yield from (os.path.join(directory, name) for directory in ("/usr/local/bin", "/usr/bin"))


def main(wanted):
    for candidate in candidates(wanted):
        if os.access(candidate, os.X_OK):
            found = answers(candidate, wanted)
            if found:
                print(found)
                return 0
    sys.stderr.write("No Python %s on this machine (looked on PATH, in pyenv's versions and in /usr/bin). Install "
                     "CPython %s (pyenv install %s, or the distribution's python%s package) and run again.\n"
                     % (wanted, wanted, wanted, wanted))
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
