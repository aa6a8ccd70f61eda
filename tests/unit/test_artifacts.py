import json

import pytest

from edgevae._util.artifacts import atomic_path, sha256_file, write_json_atomic, write_manifest


def test_atomic_path_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]


def test_json_is_stable_and_manifest_records_hash(tmp_path):
    p = write_json_atomic(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert p.read_text() == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}\n'
    m = json.loads(write_manifest(p, kind="test", config={"k": 1}).read_text())
    assert m["sha256"] == sha256_file(p) and m["kind"] == "test" and m["config"] == {"k": 1}
    assert m["created_by"]["tool_versions"]["edgevae"]


def test_atomic_files_follow_the_umask(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        p = write_json_atomic(tmp_path / "x.json", {})
    finally:
        os.umask(old)
    assert oct(p.stat().st_mode & 0o777) == oct(0o644)
