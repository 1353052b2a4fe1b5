"""P2: rotate_keys.yml for 100 keys with 100k ciphertexts in total vs a single-process hvac script.

The script makes the same API calls in the same order for each key (read, rotate, batch rewrap of
its file, write the file back, raise min_decryption_version).  Target: the playbook's wall time
(ansible-playbook start-up, report and all) <= 1.5x the script's.  Both start from identical seeds
in two mounts of the same OpenBao.
"""

import hvac
import pytest

from lab import transit_data

from conftest import STRATEGIES, alternated_pairs, record, strategy_env, timed
from rotation_helpers import Rotation

KEYS = dict(("k%03d" % index, ([1000], None)) for index in range(100))


def hvac_script(vault, mount, rotation_vars):
    client = hvac.Client(url=vault.address, token=vault.token)
    transit = client.secrets.transit
    for key in rotation_vars["transit_rotation_keys"]:
        name = key["name"]
        transit.read_key(name=name, mount_point=mount)
        transit.rotate_key(name=name, mount_point=mount)
        for consumer in key["consumers"]:
            with open(consumer["path"]) as handle:
                ciphertexts = [line.strip() for line in handle if line.strip()]
            out = []
            for start in range(0, len(ciphertexts), 400):
                batch = [{"ciphertext": c} for c in ciphertexts[start:start + 400]]
                results = transit.rewrap_data(name=name, ciphertext=None, batch_input=batch,
                                              mount_point=mount)["data"]["batch_results"]
                out.extend(item["ciphertext"] for item in results)
            with open(consumer["path"], "w") as handle:
                handle.write("\n".join(out) + "\n")
        latest = transit.read_key(name=name, mount_point=mount)["data"]["latest_version"]
        transit.update_key_configuration(name=name, min_decryption_version=latest, mount_point=mount)


@pytest.mark.bench
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_p2_rotate_keys_100_keys(vault, tmp_path, strategy):
    client = transit_data.client(vault.address, vault.token)
    rounds = {"n": 0}

    def fresh(side):
        mount = "bench-p2-%s-%s-%d" % (strategy.replace("_", "-"), side, rounds["n"])
        client.sys.enable_secrets_engine("transit", path=mount)
        return Rotation(vault, mount, tmp_path / mount, KEYS)

    def script():
        side = fresh("script")
        seconds = timed(hvac_script, vault, side.mount, side.rotation_vars)[0]
        assert all(side.key(name)["min_decryption_version"] == 2 for name in ("k000", "k099"))
        return seconds

    def playbook():
        side = fresh("playbook")
        rounds["n"] += 1
        seconds = timed(side.run, env=strategy_env(strategy), expect_rc=0)[0]
        side.check_complete()
        return seconds

    script_seconds, playbook_seconds, ratio = alternated_pairs(script, playbook)
    record("P2 (%s)" % strategy, keys=len(KEYS), ciphertexts=100 * 1000, hvac_script_seconds=script_seconds,
           rotate_keys_playbook_seconds=playbook_seconds, median_ratio=ratio, target="<= 1.5")
    assert ratio <= 1.5, "rotate_keys.yml took %.2fx the hvac script's wall time (target 1.5x)" % ratio
