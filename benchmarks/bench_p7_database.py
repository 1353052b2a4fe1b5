"""P7: database_rewrap on 1,000,000 PostgreSQL rows vs a plain psycopg + hvac script doing the same work.

Target: the module reaches >= 0.8x the script's throughput, with a module peak RSS under 150 MB.  Both rewrap
the whole table (1M rows) to the newest version on the same OpenBao and the same PostgreSQL (lab servers):
the key is rotated before every run, so each run finds every row one version behind.  The script reads
keyset-paginated batches of 400 (``id > last AND secret NOT LIKE 'vault:vN:%' ORDER BY id LIMIT 400``),
rewraps each through hvac's batch rewrap and writes it back with the same compare-and-swap UPDATE
(``executemany`` in one transaction per batch), with psycopg 3 - the module's driver.  The module's time is the
task's duration as Ansible runs it (its two census scans included); the whole ``ansible-playbook`` process time
is reported too.  Rounds alternate script / module; the ratio is the median of three pairs.  Peak RSS of the
module process is its kernel high-water mark (VmHWM in /proc), sampled while it runs.

The rows are generated in SQL from 1,000 real ciphertexts (distinct plaintexts), reused round-robin.
"""

import os
import statistics
import threading
import time

import hvac
import psycopg
import pytest
import yaml

from lab import transit_data
from lab.database import PostgresDatabase

from _ansible import ansible_playbook, play
from conftest import record, timed

ROWS = int(os.environ.get("KEYOPS_P7_ROWS", "1000000"))
MOUNT = "bench-p7"
BATCH = 400


@pytest.fixture(scope="module")
def database(vault):
    client = transit_data.client(vault.address, vault.token)
    client.sys.enable_secrets_engine("transit", path=MOUNT)
    client.adapter.request("POST", "/v1/%s/keys/k" % MOUNT, json={})
    seeds = transit_data.encrypt_many(client, MOUNT, "k", transit_data.plaintexts(1000, "p7"))
    with PostgresDatabase() as server:
        with psycopg.connect(conninfo(server)) as connection:
            connection.execute("CREATE TABLE seed (n INTEGER PRIMARY KEY, c TEXT NOT NULL)")
            with connection.cursor() as cursor:
                cursor.executemany("INSERT INTO seed VALUES (%s, %s)", list(enumerate(seeds)))
            connection.execute("CREATE TABLE cards (id BIGINT PRIMARY KEY, secret TEXT)")
            connection.execute("INSERT INTO cards SELECT g, s.c FROM generate_series(1, %d) g "
                               "JOIN seed s ON s.n = g %% 1000" % ROWS)
            connection.execute("DROP TABLE seed")
            connection.commit()
            connection.autocommit = True
            connection.execute("VACUUM ANALYZE cards")
        yield server


def conninfo(server):
    return "host=127.0.0.1 port=%d dbname=%s user=%s password=%s" % (server.port, server.database, server.user,
                                                                     server.password)


def rotate(vault):
    client = transit_data.client(vault.address, vault.token)
    client.adapter.request("POST", "/v1/%s/keys/k/rotate" % MOUNT, json={})
    return client.adapter.request("GET", "/v1/%s/keys/k" % MOUNT).json()["data"]["latest_version"]


def plain_script(vault, server, target):
    """What a careful operator script does: keyset batches, hvac batch rewrap, CAS UPDATE per batch."""
    client = hvac.Client(url=vault.address, token=vault.token)
    done, last = 0, 0
    with psycopg.connect(conninfo(server)) as connection:
        while True:
            rows = connection.execute("SELECT id, secret FROM cards WHERE id > %s AND secret NOT LIKE %s "
                                      "ORDER BY id LIMIT %s", (last, "vault:v%d:%%" % target, BATCH)).fetchall()
            connection.commit()
            if not rows:
                return done
            last = rows[-1][0]
            results = client.secrets.transit.rewrap_data(name="k", ciphertext=None, mount_point=MOUNT,
                                                         batch_input=[{"ciphertext": r[1]} for r in rows]
                                                         )["data"]["batch_results"]
            with connection.transaction(), connection.cursor() as cursor:
                cursor.executemany("UPDATE cards SET secret = %s WHERE id = %s AND secret = %s",
                                   [(item["ciphertext"], row[0], row[1]) for row, item in zip(rows, results)])
            done += len(rows)


class PeakRSS(threading.Thread):
    """Highest VmHWM of any database_rewrap module process while it runs (kB)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_kb, self.stop = 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % entry, "rb") as handle:
                        if b"AnsiballZ_database_rewrap" not in handle.read():
                            continue
                    with open("/proc/%s/status" % entry) as handle:
                        for line in handle:
                            if line.startswith("VmHWM:"):
                                self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                except OSError:
                    pass
            time.sleep(0.2)


def module_run(vault, server, tmp_path):
    args = dict(name="k", mount=MOUNT, database_url=server.url, database_password=server.password, table="cards", column="secret",
                primary_key="id", batch_size=BATCH)
    playbook = tmp_path / "p7.yml"
    fd = os.open(str(playbook), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(yaml.safe_dump(play([{"name": "rewrap", "keyops.lifecycle.database_rewrap": args}])))
    sampler = PeakRSS()
    sampler.start()
    try:
        run = ansible_playbook(playbook, tmp_path / "p7.jsonl", env=vault.env, expect_rc=0, timeout=3600)
    finally:
        sampler.stop.set()
        sampler.join()
    result = run.task("rewrap")
    assert result["rewrapped"] == ROWS and result["conflicts"] == 0, result
    return run.seconds("rewrap"), sampler.peak_kb, result


@pytest.mark.bench
def test_p7_database_rewrap_throughput(vault, database, tmp_path):
    script, ours, process, peaks = [], [], [], []
    for _round in range(3):
        target = rotate(vault)
        seconds, done = timed(plain_script, vault, database, target)
        assert done == ROWS
        script.append(seconds)
        rotate(vault)
        process_seconds, (task_seconds, peak_kb, result) = timed(module_run, vault, database, tmp_path)
        assert result["census_after"] == {str(target + 1): ROWS}
        ours.append(task_seconds)
        process.append(process_seconds)
        peaks.append(peak_kb)
    ratios = [s / o for s, o in zip(script, ours)]
    ratio = statistics.median(ratios)
    peak_mb = max(peaks) / 1024.0
    record("P7", rows=ROWS, script_seconds=[round(s, 2) for s in script], module_task_seconds=[round(s, 2) for s in ours],
           ansible_playbook_process_seconds=[round(s, 2) for s in process], throughput_ratio=round(ratio, 2),
           throughput_ratio_whole_process=round(statistics.median(s / p for s, p in zip(script, process)), 2),
           rows_per_second_module=round(ROWS / statistics.median(ours)),
           rows_per_second_script=round(ROWS / statistics.median(script)),
           module_peak_rss_mb=round(peak_mb, 1), target="ratio >= 0.8, RSS < 150 MB")
    assert ratio >= 0.8, "database_rewrap reached %.2fx the plain script's throughput (target 0.8x)" % ratio
    assert peak_mb < 150, "database_rewrap peaked at %.1f MB RSS (target < 150 MB)" % peak_mb
