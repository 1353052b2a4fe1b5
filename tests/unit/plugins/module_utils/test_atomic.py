"""The one atomic writer, on a real file system."""

import os
import stat

import pytest

from ansible_collections.keyops.lifecycle.plugins.module_utils import _atomic


def test_write_file_is_private_and_complete(tmp_path):
    target = tmp_path / "sub" / "keys.json"
    _atomic.write_file(str(target), "secret\n", make_dirs=True)
    assert target.read_text() == "secret\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(target.parent).st_mode) == 0o700
    assert _atomic.stale_twins(str(target)) == []


def test_a_failure_leaves_the_old_content_and_no_twin(tmp_path):
    target = tmp_path / "data"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with _atomic.AtomicFile(str(target)) as handle:
            handle.write("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old" and _atomic.stale_twins(str(target)) == []


def test_like_keeps_mode_of_the_file_it_replaces(tmp_path):
    target = tmp_path / "data"
    target.write_text("old")
    os.chmod(target, 0o640)
    writer = _atomic.AtomicFile(str(target), like=str(target))
    writer.open().write("new")
    assert stat.S_IMODE(os.stat(writer.temp).st_mode) == 0o600  # private while being written
    writer.commit()
    assert target.read_text() == "new" and stat.S_IMODE(os.stat(target).st_mode) == 0o640
