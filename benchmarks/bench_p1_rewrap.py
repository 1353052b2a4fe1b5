"""P1: vault_transit_rewrap on 100k ciphertexts vs a raw hvac batch loop in one process.

Target: the module reaches >= 0.8x the raw loop's throughput.  Both rewrap the same file (a fresh
copy of 100k v1 ciphertexts) from v1 to v2 with the same batch size on the same server.  The
module's time is the task's duration as Ansible runs it (module transfer, interpreter and imports
included); the whole `ansible-playbook` process time (its own ~1 s start-up included) is reported
too.  A sweep of batch_size / workers backs the module's defaults.
"""

import shutil

import hvac
import pytest

from lab import transit_data

from _ansible import ansible_playbook, play
from conftest import record, timed

import yaml

COUNT = 100_000
MOUNT = "bench-p1"


@pytest.fixture(scope="module")
def source(vault, tmp_path_factory):
    client = transit_data.client(vault.address, vault.token)
    client.sys.enable_secrets_engine("transit", path=MOUNT)
    client.adapter.request("POST", "/v1/%s/keys/k" % MOUNT, json={})
    path = tmp_path_factory.mktemp("p1") / "source.txt"
    transit_data.write_lines(path, transit_data.encrypt_many(client, MOUNT, "k", transit_data.plaintexts(COUNT)))
    client.adapter.request("POST", "/v1/%s/keys/k/rotate" % MOUNT, json={})
    return path


def raw_hvac_loop(vault, source, target, batch_size):
    """What a careful script does: read all, batch rewrap with hvac, write the file back."""
    client = hvac.Client(url=vault.address, token=vault.token)
    with open(source) as handle:
        ciphertexts = [line.strip() for line in handle if line.strip()]
    out = []
    for start in range(0, len(ciphertexts), batch_size):
        batch = [{"ciphertext": c} for c in ciphertexts[start:start + batch_size]]
        results = client.secrets.transit.rewrap_data(name="k", ciphertext=None, batch_input=batch,
                                                     mount_point=MOUNT)["data"]["batch_results"]
        for item in results:
            if "error" in item and item["error"]:
                raise RuntimeError(item["error"])
            out.append(item["ciphertext"])
    with open(target, "w") as handle:
        handle.write("\n".join(out) + "\n")


def module_run(vault, tmp_path, target, **options):
    args = dict(name="k", mount=MOUNT, path=str(target))
    args.update(options)
    playbook = tmp_path / "p1.yml"
    playbook.write_text(yaml.safe_dump(play([{"name": "rewrap", "keyops.lifecycle.vault_transit_rewrap": args}])))
    run = ansible_playbook(playbook, tmp_path / "p1.jsonl", env=vault.env, expect_rc=0)
    assert run.task("rewrap")["rewrapped"] == COUNT
    return run.seconds("rewrap")


@pytest.mark.bench
def test_p1_rewrap_throughput(vault, source, tmp_path):
    rows = {}
    target = tmp_path / "work.txt"

    def fresh():
        shutil.copyfile(source, target)

    # Sweep (module only) to choose the defaults.
    for batch_size, workers in ((100, 1), (250, 1), (400, 1), (490, 1), (400, 2), (400, 4)):
        fresh()
        task_seconds = module_run(vault, tmp_path, target, batch_size=batch_size, workers=workers)
        rows["module batch=%d workers=%d" % (batch_size, workers)] = round(COUNT / task_seconds)
    # Head to head, three rounds each, best of three.
    raw, ours, process = [], [], []
    for _round in range(3):
        fresh()
        raw.append(timed(raw_hvac_loop, vault, target, tmp_path / "raw.txt", 400)[0])
        fresh()
        process_seconds, task_seconds = timed(module_run, vault, tmp_path, target)
        ours.append(task_seconds)
        process.append(process_seconds)
    assert transit_data.versions_in(target) == [2]
    ratio = min(raw) / min(ours)
    record("P1", count=COUNT, raw_hvac_seconds=round(min(raw), 3), module_task_seconds=round(min(ours), 3),
           ansible_playbook_process_seconds=round(min(process), 3), throughput_ratio=round(ratio, 2),
           throughput_ratio_whole_process=round(min(raw) / min(process), 2), target=">= 0.8",
           sweep_ciphertexts_per_second=rows)
    assert ratio >= 0.8, "vault_transit_rewrap reached %.2fx the raw hvac loop's throughput (target 0.8x)" % ratio
