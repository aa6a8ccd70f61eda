from pathlib import Path

import pytest

from edgevae.pipeline.stages import Stage, run_stages


def _stages(tmp_path: Path, calls: list[str], cfg: int = 1, fail_b: bool = False):
    def make(name):
        def run():
            if fail_b and name == "b":
                raise RuntimeError("b failed")
            calls.append(name)
            out = tmp_path / f"{name}.txt"
            out.write_text(f"{name}{cfg}")
            return [out]

        return run

    return [
        Stage("a", {"cfg": cfg}, make("a")),
        Stage("b", {}, make("b"), after=("a",)),
        Stage("c", {}, make("c"), after=("b",)),
    ]


def test_second_run_skips_current_stages(tmp_path):
    calls: list[str] = []
    first = run_stages(tmp_path, _stages(tmp_path, calls))
    assert [r.status for r in first] == ["ran"] * 3
    second = run_stages(tmp_path, _stages(tmp_path, calls))
    assert [r.status for r in second] == ["skipped"] * 3
    assert calls == ["a", "b", "c"]


def test_changed_config_reruns_that_stage_and_downstream(tmp_path):
    calls: list[str] = []
    run_stages(tmp_path, _stages(tmp_path, calls))
    calls.clear()
    run_stages(tmp_path, _stages(tmp_path, calls, cfg=2))
    assert calls == ["a", "b", "c"]


def test_missing_output_reruns_the_stage(tmp_path):
    calls: list[str] = []
    run_stages(tmp_path, _stages(tmp_path, calls))
    (tmp_path / "c.txt").unlink()
    calls.clear()
    results = run_stages(tmp_path, _stages(tmp_path, calls))
    assert calls == ["c"]
    assert [r.status for r in results] == ["skipped", "skipped", "ran"]


def test_failure_keeps_finished_stages_for_resume(tmp_path):
    calls: list[str] = []
    with pytest.raises(RuntimeError, match="b failed"):
        run_stages(tmp_path, _stages(tmp_path, calls, fail_b=True))
    calls.clear()
    run_stages(tmp_path, _stages(tmp_path, calls))
    assert calls == ["b", "c"]
