"""P3: the rewrap as users write it today vs vault_transit_rewrap.

* a playbook looping `community.hashi_vault.vault_write` over `transit/rewrap/<key>` one ciphertext
  per iteration (community.hashi_vault from the `ansible` package, in build/bench-venv), then
  writing the file back with `copy`;
* a shell loop calling the `bao` CLI once per ciphertext.

All three rewrap the same N ciphertexts (a fresh copy each) and are timed as whole commands.
Target: ours >= 10x faster than the community.hashi_vault loop.
"""

import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from lab import transit_data
from lab.openbao import bao_binary

from _ansible import ROOT, ansible_playbook, play
from conftest import record

COUNT = 300  # the loops take ~0.3 s (Ansible) and ~30 ms (CLI) per item; enough for a stable rate
MOUNT = "bench-p3"
BENCH_VENV = os.path.join(ROOT, "build", "bench-venv")


def timed_run(argv, env, **kwargs):
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, **kwargs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return time.perf_counter() - start


@pytest.mark.bench
def test_p3_against_user_loops(vault, tmp_path):
    ansible_playbook_bin = os.path.join(BENCH_VENV, "bin", "ansible-playbook")
    if not os.path.exists(ansible_playbook_bin):
        pytest.fail("build/bench-venv is missing: run `make bench` (it installs requirements/bench.txt)")
    client = transit_data.client(vault.address, vault.token)
    client.sys.enable_secrets_engine("transit", path=MOUNT)
    client.adapter.request("POST", "/v1/%s/keys/k" % MOUNT, json={})
    source = tmp_path / "source.txt"
    transit_data.write_lines(source, transit_data.encrypt_many(client, MOUNT, "k", transit_data.plaintexts(COUNT)))
    client.adapter.request("POST", "/v1/%s/keys/k/rotate" % MOUNT, json={})
    target = tmp_path / "work.txt"
    env = dict(os.environ, VAULT_ADDR=vault.address, VAULT_TOKEN=vault.token, ANSIBLE_NOCOLOR="1",
               ANSIBLE_PYTHON_INTERPRETER=os.path.join(BENCH_VENV, "bin", "python"))

    # 1. community.hashi_vault, one vault_write per ciphertext.
    shutil.copyfile(source, target)
    community = tmp_path / "community.yml"
    community.write_text(yaml.safe_dump(play([
        {"name": "rewrap one by one", "community.hashi_vault.vault_write": {
            "url": vault.address, "token": vault.token, "path": "%s/rewrap/k" % MOUNT,
            "data": {"ciphertext": "{{ item }}"}},
         "loop": "{{ lookup('ansible.builtin.file', '%s').splitlines() }}" % target,
         "register": "rewrapped", "no_log": True},
        {"name": "write back", "ansible.builtin.copy": {
            "dest": str(target), "mode": "0600",
            "content": "{{ rewrapped.results | map(attribute='data.data.ciphertext') | join('\\n') }}\n"}},
    ])))
    community_env = dict(env, ANSIBLE_COLLECTIONS_PATH="/nonexistent")  # the bench venv's own collections
    community_seconds = timed_run([ansible_playbook_bin, "-i", "localhost,", str(community)], community_env)
    assert transit_data.versions_in(target) == [2]

    # 2. shell loop over the bao CLI.
    shutil.copyfile(source, target)
    script = 'while read -r ct; do "$BAO" write -field=ciphertext %s/rewrap/k ciphertext="$ct"; echo; done < "$1" > "$1.new" && mv "$1.new" "$1"' % MOUNT
    cli_seconds = timed_run(["bash", "-c", script, "loop", str(target)], dict(env, BAO=bao_binary()))
    assert transit_data.versions_in(target) == [2]

    # 3. ours.
    shutil.copyfile(source, target)
    ours = tmp_path / "ours.yml"
    ours.write_text(yaml.safe_dump(play([{"name": "rewrap", "keyops.lifecycle.vault_transit_rewrap": {
        "name": "k", "mount": MOUNT, "path": str(target)}}])))
    start = time.perf_counter()
    ansible_playbook(ours, tmp_path / "ours.jsonl", env={"VAULT_ADDR": vault.address, "VAULT_TOKEN": vault.token},
                     expect_rc=0)
    ours_seconds = time.perf_counter() - start
    assert transit_data.versions_in(target) == [2]

    speedup = community_seconds / ours_seconds
    record("P3", count=COUNT, community_hashi_vault_loop_seconds=round(community_seconds, 2),
           bao_cli_loop_seconds=round(cli_seconds, 2), vault_transit_rewrap_seconds=round(ours_seconds, 2),
           speedup_vs_community_loop=round(speedup, 1), speedup_vs_cli_loop=round(cli_seconds / ours_seconds, 1),
           target=">= 10x vs community loop", python=sys.version.split()[0])
    assert speedup >= 10, "only %.1fx faster than the community.hashi_vault loop (target 10x)" % speedup
