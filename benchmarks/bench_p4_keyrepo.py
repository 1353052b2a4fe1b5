"""P4: rotate + distribute a keystone fernet repository to 20 nodes - the keyrepo role vs the rsync baseline.

Both are whole ansible-playbook runs over the same 20-host inventory (local connection, forks 20):

* baseline, as openstack-ansible and kolla-ansible distribute: ``keystone-manage fernet_rotate`` (keystone's
  own code, from build/keystone-venv) on the first node, then ``rsync -a --delete`` from it to every other
  node;
* ours: the keyops.lifecycle.keyrepo role (reconcile, barrier, promote everywhere, purge).

Keystone validators (keystone's own key loader) watch all 20 repositories during each run and count false
rejections.  Target: ours <= 1.2x the baseline's wall time, with 0 false rejections.
"""

import base64
import os
import time

import pytest
import yaml

from lab.keystone_lab import KeystoneConfig, keystone_manage

from _ansible import ansible_playbook
from conftest import record
from keyrepo_helpers import KeystoneNodes

NODES = 20
ROUNDS = 3


def baseline_playbook(tmp_path, nodes, conf):
    first = nodes.nodes[0]
    plays = [
        {"name": "keystone-manage fernet_rotate on the first node", "hosts": first, "gather_facts": False,
         "tasks": [{"name": "rotate", "ansible.builtin.command": {
             "argv": [keystone_manage(), "--config-file", conf.path, "fernet_rotate", "--keystone-user",
                      str(os.getuid()), "--keystone-group", str(os.getgid())]}, "changed_when": True}]},
        {"name": "rsync --delete to the others", "hosts": "keystone:!%s" % first, "gather_facts": False,
         "tasks": [{"name": "rsync", "ansible.builtin.command": {
             "argv": ["rsync", "-a", "--delete", nodes.paths[first] + "/", "{{ keyrepo_path }}/"]},
             "changed_when": True}]},
    ]
    path = tmp_path / "baseline.yml"
    path.write_text(yaml.safe_dump(plays))
    return path


@pytest.mark.bench
def test_p4_keyrepo_vs_rsync(tmp_path):
    nodes = KeystoneNodes(tmp_path, count=NODES)
    nodes.rotate()  # same starting point for both: 20 identical repositories
    conf = KeystoneConfig(str(tmp_path / "ks"))
    # keystone-manage rotates the first node's repository in place
    with open(conf.path, "w") as handle:
        handle.write("[fernet_tokens]\nkey_repository = %s\nmax_active_keys = 3\n[fernet_receipts]\n"
                     "key_repository = %s\n" % (nodes.paths[nodes.nodes[0]], tmp_path / "receipts"))
    # keystone-manage fernet_rotate rotates the receipt repository too: give it one
    os.makedirs(str(tmp_path / "receipts"), mode=0o700, exist_ok=True)
    for index in (0, 1):
        with open(str(tmp_path / "receipts" / str(index)), "w") as handle:
            handle.write(base64.urlsafe_b64encode(os.urandom(32)).decode())
    baseline = baseline_playbook(tmp_path, nodes, conf)
    timings = {"ours": [], "baseline": []}
    rejections = {"ours": 0, "baseline": 0}
    validations = {"ours": 0, "baseline": 0}
    for _round in range(ROUNDS):
        for name in ("baseline", "ours"):
            nodes.start_watching()
            try:
                start = time.perf_counter()
                if name == "ours":
                    nodes.rotate()
                else:
                    ansible_playbook(baseline, tmp_path / "baseline.jsonl", inventory=str(nodes.inventory),
                                     args=["-f", str(NODES)], expect_rc=0)
                timings[name].append(time.perf_counter() - start)
                time.sleep(0.5)  # let validators see the settled state too
            finally:
                counts = nodes.stop_watching()
            rejections[name] += counts["false_rejections"]
            validations[name] += counts["validations"]
            (tmp_path / "stop-watch").unlink()
            assert nodes.consistent() or name == "baseline"
    ours, base = min(timings["ours"]), min(timings["baseline"])
    record("P4 keyrepo rotate+distribute to %d nodes" % NODES, ours_seconds=round(ours, 2),
           baseline_seconds=round(base, 2), ratio=round(ours / base, 2), target_ratio=1.2,
           ours_false_rejections=rejections["ours"], baseline_false_rejections=rejections["baseline"],
           ours_validations=validations["ours"], baseline_validations=validations["baseline"], rounds=ROUNDS)
    assert rejections["ours"] == 0
