"""The collection builds, leaves the lab/benchmarks out, installs, and its docs load from the install."""

import os
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)


def test_build_and_install(tmp_path):
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "build", "--output-path", str(tmp_path), ROOT],
                   check=True, capture_output=True, text=True)
    (tarball,) = list(tmp_path.glob("keyops-lifecycle-*.tar.gz"))
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert "plugins/modules/vault_transit_key.py" in names
    assert "meta/runtime.yml" in names and "galaxy.yml" not in names  # galaxy.yml becomes MANIFEST.json
    for excluded in ("lab/", "benchmarks/", ".venv/", "build/", ".lab/", ".git/"):
        assert not any(name.startswith(excluded) for name in names), excluded

    install = tmp_path / "installed"
    subprocess.run([os.path.join(BIN, "ansible-galaxy"), "collection", "install", str(tarball), "-p", str(install)],
                   check=True, capture_output=True, text=True)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(install))
    doc = subprocess.run([os.path.join(BIN, "ansible-doc"), "-t", "module", "keyops.lifecycle.vault_transit_key"],
                         check=True, capture_output=True, text=True, env=env)
    assert "min_decryption_version" in doc.stdout and "oldest_version_in_use" in doc.stdout
    listing = subprocess.run([os.path.join(BIN, "ansible-doc"), "-l", "keyops.lifecycle"],
                             check=True, capture_output=True, text=True, env=env).stdout
    assert "keyops.lifecycle.vault_transit_key_info" in listing
