"""Let ``ansible-test sanity --venv`` bootstrap pip without downloading get-pip.py.

ansible-test fetches a ``get-pip.py`` from the internet for each of its virtual environments and
caches it as ``~/.ansible/test/cache/get_pip_<version>.py``.  Offline that download fails, so this
places a small stand-in there that uses ``ensurepip`` and then pip itself (through the machine's
normal pip configuration, i.e. the package registry) to install what ansible-test asked for.
"""

import os
import re

import ansible_test

STAND_IN = '''"""get-pip stand-in written by keyops.lifecycle's tools/sanity_pip_bootstrap.py."""
import subprocess
import sys

subprocess.check_call([sys.executable, "-m", "ensurepip", "--default-pip"])
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
packages = [a for a in args if not a.startswith("-")]
if packages:
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q"] + args)
'''


def main():
    source = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
    with open(source, encoding="utf-8") as handle:
        version = re.search(r"pip='([0-9.]+)'", handle.read()).group(1)
    cache = os.path.expanduser("~/.ansible/test/cache")
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, "get_pip_%s.py" % version.replace(".", "_")), "w", encoding="utf-8") as handle:
        handle.write(STAND_IN)


if __name__ == "__main__":
    main()
