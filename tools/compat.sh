#!/usr/bin/env bash
# make test's compatibility phase for one ansible-core line besides the pinned one (requirements/dev.txt):
#
#   tools/compat.sh LINE PYTHON_VERSION [newest]
#
# Builds build/compat-LINE, a venv of CPython PYTHON_VERSION from this machine (tools/find_python.py: PATH, pyenv,
# /usr/bin) holding requirements/compat-LINE.txt - that ansible-core and the collection's runtime requirements,
# what a user installs - then runs the tests marked `compat` with ansible-playbook and the modules from that venv
# (KEYOPS_ANSIBLE_PYTHON; the servers and fixtures stay in .venv).  The newest line also runs the in-process
# parity test and ansible-test sanity.  A missing interpreter fails the phase under CI=true; elsewhere it is
# reported as skipped, never silently.
set -euo pipefail
cd "$(dirname "$0")/.."
line=$1 version=$2 newest=${3:-}
venv=$PWD/build/compat-$line
requirements=requirements/compat-$line.txt
run=${TEST_RUN:-$PWD/build/test-run}

if ! python=$(python3 tools/find_python.py "$version"); then
    if [ -n "${CI:-}" ]; then
        echo "compat $line: FAILED: ansible-core $line needs CPython $version on this machine (see above)" >&2
        exit 1
    fi
    echo "compat $line: SKIPPED: no CPython $version on this machine (see above); CI fails here" >&2
    exit 0
fi
if [ ! -f "$venv/.stamp" ] || [ "$requirements" -nt "$venv/.stamp" ] || [ requirements.txt -nt "$venv/.stamp" ]; then
    rm -rf "$venv"
    "$python" -m venv --without-pip "$venv"
    # .venv's pip installs into it: no second pip bootstrap
    .venv/bin/python -m pip --python "$venv/bin/python" install --disable-pip-version-check -q --no-compile \
        -r "$requirements"
    touch "$venv/.stamp"
fi
echo "compat $line: ansible-core $("$venv/bin/python" -c 'import ansible.release as r; print(r.__version__)')" \
    "on $("$venv/bin/python" --version)"

# One database engine here: what differs between the lines is Ansible, not the SQL (both run under the pinned one).
tests=(tests/integration -m "compat and not in_process" -k "not mariadb")
if [ -n "$newest" ]; then
    tests=(tests/integration -m compat -k "not mariadb")
fi
read -r -a narrowed <<< "${PYTEST_ARGS:-}"  # make test's PYTEST_ARGS: words, as the Makefile passes them
status=0
KEYOPS_ANSIBLE_PYTHON=$venv/bin/python KEYOPS_SECRET_REGISTRY=$run/registry \
    .venv/bin/python -m pytest "${tests[@]}" -q -p no:xdist --basetemp="$run/tmp-compat-$line" \
    "${narrowed[@]}" || status=$?
if [ "$status" -eq 5 ] && [ -n "${PYTEST_ARGS:-}" ]; then
    status=0  # PYTEST_ARGS narrowed the run to other tests
fi
if [ -n "$newest" ]; then
    make --no-print-directory sanity SANITY_BIN="$venv/bin" SANITY_PYTHON="$version" \
        SANITY_ROOT="$PWD/build/sanity-$line" TEST_HOME="$PWD/build/home-$line" || status=1
fi
exit "$status"
