"""``edgevae.export``: contract names and shapes, dynamic and fixed batch, parity over every
mask-pattern class, determinism, manifests, and failures that write nothing.

One tiny run is trained and exported once per module (seconds); each test reads that export or
makes a small one (a single graph) of its own.
"""

import json
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgevae.errors import ExportError, ParityError
from edgevae.export import ExportConfig, export
from edgevae.export import onnx as export_onnx
from edgevae.export.tolerances import TABLE
from edgevae.export.validate import graph_io, mask_patterns, random_inputs
from edgevae.parity import Tolerance, compare
from edgevae.runtime.ort_runner import OrtRunner
from edgevae.runtime.torch_runner import TorchRunner
from edgevae.train import train
from edgevae.train.checkpoint import load_checkpoint
from tests.train_util import make_tiny_dataset, tiny_model_config, tiny_train_config

NAMES = ["cam0", "cam1", "audio", "motion"]
SHAPES = {"cam0": [2, 8, 8], "cam1": [2, 8, 8], "audio": [1, 8, 8], "motion": [4, 3]}
D = 4  # tiny_model_config latent_dim
MASK_CLASSES = {
    "all_present",
    *(f"missing_{n}" for n in NAMES),
    *(f"only_{n}" for n in NAMES),
}
CONTRACT = {
    "analyze": (
        [*NAMES, "mask"],
        ["z_mu", "z_logvar", *(f"recon_{n}" for n in NAMES), "score", "score_parts"],
    ),
    "encode": ([*NAMES, "mask"], ["z_mu", "z_logvar", "expert_mu", "expert_logvar"]),
    "decode": (["z"], [f"recon_{n}" for n in NAMES]),
}
# DESIGN §6 shapes with the batch axis first; score_parts: one per modality + KL + cross-modal.
SHAPE = {
    **{n: ["batch", *SHAPES[n]] for n in NAMES},
    **{f"recon_{n}": ["batch", *SHAPES[n]] for n in NAMES},
    "mask": ["batch", 4],
    "z": ["batch", D],
    "z_mu": ["batch", D],
    "z_logvar": ["batch", D],
    "expert_mu": ["batch", 4, D],
    "expert_logvar": ["batch", 4, D],
    "score": ["batch"],
    "score_parts": ["batch", 6],
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export-run")
    return train(
        make_tiny_dataset(root / "ds"), root / "run", tiny_model_config(), tiny_train_config()
    )


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    """All three graphs, dynamic batch, default opset."""
    out = tmp_path_factory.mktemp("export") / "onnx"
    lines: list[str] = []
    paths = export(run, out, progress=lines.append)
    return out, paths, lines


def _dims(value) -> list:
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def _manifest(path) -> dict:
    return json.loads(path.with_name(path.name + ".manifest.json").read_text())


def test_writes_three_graphs_with_contract_tensor_names(exported):
    out, paths, lines = exported
    assert [p.name for p in paths] == ["analyze.onnx", "encode.onnx", "decode.onnx"]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [*(p.name for p in paths), *(p.name + ".manifest.json" for p in paths), "score_stats.json"]
    )
    for path in paths:
        model = onnx.load(str(path))
        ins, outs = CONTRACT[path.stem]
        assert [i.name for i in model.graph.input] == ins
        assert [o.name for o in model.graph.output] == outs
        assert model.opset_import[0].version == 17
    assert lines[0].startswith("load: ") and lines[-1].startswith("write: 3 graph(s)")
    for graph in CONTRACT:
        assert f"{graph}: parity vs PyTorch through onnxruntime" in "\n".join(lines)


def test_declared_shapes_are_the_contract_with_a_symbolic_batch_axis(exported):
    # The TorchScript exporter declared e.g. recon_motion as [batch, batch, 3]; export fixes it.
    for path in exported[1]:
        model = onnx.load(str(path))
        for value in [*model.graph.input, *model.graph.output]:
            assert _dims(value) == SHAPE[value.name], (path.name, value.name)


def test_graphs_hold_no_random_ops_and_record_edgevae_as_producer(exported):
    for path in exported[1]:
        model = onnx.load(str(path))
        ops = {n.op_type for n in model.graph.node}
        assert not {o for o in ops if o.startswith("Random")}, ops
        assert not ops & {"Multinomial", "Bernoulli", "Dropout"}, ops
        assert model.producer_name == "edgevae" and model.doc_string == ""
        meta = {p.key: p.value for p in model.metadata_props}
        assert meta["edgevae_graph"] == path.stem and meta["latent_dim"] == str(D)
        assert [m["name"] for m in json.loads(meta["modalities"])] == NAMES


@pytest.mark.parametrize("graph", ["analyze", "encode", "decode"])
def test_dynamic_batch_runs_at_1_and_5_and_matches_pytorch(run, exported, graph):
    ckpt = load_checkpoint(run)
    ins, outs = graph_io(graph, ckpt.modalities, D)
    torch_runner = TorchRunner(export_onnx.wrapper(graph, ckpt), ins, outs)
    ort_runner = OrtRunner(exported[0] / f"{graph}.onnx", threads=1)
    rng = np.random.default_rng(7)
    patterns = [v for _, v in mask_patterns(NAMES)]
    for batch in (1, 5):
        if graph == "decode":
            feed = {"z": rng.standard_normal((batch, D)).astype(np.float32)}
        else:  # a different mask pattern per row: mixed batches run too
            mask = np.stack([patterns[i % len(patterns)] for i in range(batch)])
            feed = random_inputs(ckpt.modalities, mask, rng)
        got = ort_runner.run(feed)
        for o in outs:
            assert list(got[o.name].shape) == [batch, *SHAPE[o.name][1:]]
        report = compare(
            torch_runner.run(feed), got, lambda n: TABLE[("torch", "ort", "fp32", "*")]
        )
        assert report.passed, report.first_failure()


def test_parity_report_covers_every_mask_class_within_the_fp32_row(exported):
    for path in exported[1]:
        parity = _manifest(path)["checks"]["parity"]
        assert parity["passed"] and parity["failures"] == []
        assert parity["label"] == f"{path.stem}: torch -> ort fp32"
        if path.stem == "decode":
            assert parity["cases"] == ["z_random", "z_random_batch1", "z_zero_prior_mean"]
        else:
            assert set(parity["cases"]) == MASK_CLASSES | {"all_present_batch1"}
        assert set(parity["worst"]) == set(CONTRACT[path.stem][1])
        for name, worst in parity["worst"].items():
            atol = 1e-4 if name == "z_mu" else 3e-4  # tolerances.py: PyTorch fp32 -> ORT fp32
            assert worst["tolerance"] == {
                "atol": atol, "rtol": 1e-3, "min_cosine": None, "min_sqnr_db": None,
            }  # fmt: skip
            assert worst["passed"] and worst["required_atol"] <= atol
        summary = parity["summary"]
        assert summary["comparisons"] == len(parity["cases"]) * len(CONTRACT[path.stem][1])
        assert 0.0 <= summary["tolerance_used"] <= 1.0
        # worst[] holds each output's lowest-SQNR case; the summary is the max over all cases
        assert summary["max_abs"]["value"] >= max(w["max_abs"] for w in parity["worst"].values())
        assert summary["max_abs"]["case"] in parity["cases"]
        assert summary["min_cosine"]["value"] > 0.999


def test_manifest_records_inputs_io_tools_and_model_facts(run, exported):
    from edgevae._util.artifacts import sha256_file

    out, paths, _ = exported
    model_json = json.loads((run / "model.json").read_text())
    for path in paths:
        m = _manifest(path)
        assert m["artifact"] == path.name and m["kind"] == "onnx"
        assert m["sha256"] == sha256_file(path) and m["bytes"] == path.stat().st_size
        assert m["inputs"] == {
            "model.safetensors": sha256_file(run / "model.safetensors"),
            "model.json": sha256_file(run / "model.json"),
        }
        assert {"edgevae", "torch", "onnx", "onnxruntime"} <= set(m["created_by"]["tool_versions"])
        assert m["config"] == {
            "graphs": ["analyze", "encode", "decode"], "opset": 17, "batch": "dynamic",
            "parity_seed": 0, "parity_rows": 2,
        }  # fmt: skip
        d = m["details"]
        assert d["graph"] == path.stem and d["precision"] == "fp32" and d["opset"] == 17
        assert [i["name"] for i in d["inputs"]] == CONTRACT[path.stem][0]
        assert [o["name"] for o in d["outputs"]] == CONTRACT[path.stem][1]
        assert all(io["shape"] == SHAPE[io["name"]] for io in d["inputs"] + d["outputs"])
        assert all(io["dtype"] == "float32" for io in d["inputs"] + d["outputs"])
        assert [s["name"] for s in d["modalities"]] == NAMES and d["latent_dim"] == D
        assert d["normalization"] == model_json["normalization"]
        assert d["score_stats"] == model_json["score_stats"]
        assert d["part_names"] == [*(f"recon_{n}" for n in NAMES), "kl_prior", "cross_modal"]
        assert set(d["timings_s"]) == {"torch_export", "onnx_checker", "parity"}
        assert d["export_seconds"] >= sum(d["timings_s"].values()) - 0.01
    assert json.loads((out / "score_stats.json").read_text()) == model_json["score_stats"]


def test_export_is_deterministic(run, exported, tmp_path):
    again = export(run, tmp_path / "again")
    for first, second in zip(exported[1], again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name
    assert (exported[0] / "score_stats.json").read_bytes() == (
        tmp_path / "again" / "score_stats.json"
    ).read_bytes()


def test_fixed_batch_declares_that_batch_and_refuses_others(run, tmp_path):
    from edgevae.errors import ShapeError

    (path,) = export(run, tmp_path / "b3", ExportConfig(graphs="encode", batch=3))
    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        assert _dims(value) == [3, *SHAPE[value.name][1:]]
    details = _manifest(path)["details"]
    assert details["batch"] == 3 and details["inputs"][0]["shape"] == [3, 2, 8, 8]
    assert "all_present_batch1" not in _manifest(path)["checks"]["parity"]["cases"]
    ckpt = load_checkpoint(run)
    runner = OrtRunner(path, threads=1)
    rng = np.random.default_rng(0)
    assert runner.run(random_inputs(ckpt.modalities, np.ones((3, 4), np.float32), rng))[
        "expert_mu"
    ].shape == (3, 4, D)
    with pytest.raises(ShapeError, match=r"input 'cam0' has shape \(5, 2, 8, 8\)"):
        runner.run(random_inputs(ckpt.modalities, np.ones((5, 4), np.float32), rng))


def _perturbed(original):
    """to_onnx_bytes, then +0.5 on the first weight tensor: ORT now computes something else."""

    def wrapped(*args, **kwargs):
        model = onnx.load_from_string(original(*args, **kwargs))
        init = next(i for i in model.graph.initializer if len(i.dims) > 1)
        init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) + 0.5, init.name))
        return model.SerializeToString()

    return wrapped


def test_broken_onnx_fails_parity_and_writes_nothing(run, tmp_path, monkeypatch):
    monkeypatch.setattr(export_onnx, "to_onnx_bytes", _perturbed(export_onnx.to_onnx_bytes))
    out = tmp_path / "broken"
    with pytest.raises(ParityError) as info:
        export(run, out, ExportConfig(graphs="decode"))
    msg = str(info.value)
    assert msg.startswith("parity check failed for decode.onnx (decode: torch -> ort fp32): FAILED")
    assert "allclose failed" in msg and "nothing was written" in msg and "\n" not in msg
    assert not out.exists()


def test_tightened_tolerance_fails_and_leaves_an_existing_export_as_it_was(
    run, exported, tmp_path, monkeypatch
):
    out = tmp_path / "copy"
    shutil.copytree(exported[0], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for key in [k for k in TABLE if k[:3] == ("torch", "ort", "fp32")]:
        monkeypatch.setitem(TABLE, key, Tolerance(atol=0.0, rtol=0.0))  # bit-exact or fail
    with pytest.raises(ParityError, match=r"parity check failed for analyze\.onnx.*needs atol"):
        export(run, out, ExportConfig(graphs="analyze"), overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_overwrite_with_changed_graph_removes_stale_derived_artifacts(run, exported, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(exported[0], out)
    old_sha = _manifest(out / "decode.onnx")["sha256"]
    stale = out / "decode.fp16.onnx"
    stale.write_bytes(b"derived from the old decode.onnx")
    stale.with_name(stale.name + ".manifest.json").write_text(
        json.dumps({"inputs": {"decode.onnx": old_sha}})
    )
    (out / "notes.txt").write_text("mine")
    (out / "decode.mine.onnx").write_text("no manifest: not an edgevae artifact")
    export(run, out, ExportConfig(graphs="decode", opset=18), overwrite=True)
    assert not stale.exists() and not stale.with_name(stale.name + ".manifest.json").exists()
    assert (out / "notes.txt").read_text() == "mine" and (out / "decode.mine.onnx").exists()
    assert _manifest(out / "decode.onnx")["details"]["opset"] == 18
    assert onnx.load(str(out / "decode.onnx")).opset_import[0].version == 18
    assert (out / "analyze.onnx").read_bytes() == (exported[0] / "analyze.onnx").read_bytes()


def test_contract_mismatch_in_the_exported_graph_is_an_export_error(run):
    ckpt = load_checkpoint(run)
    ins, outs = graph_io("decode", ckpt.modalities, D)
    module = export_onnx.wrapper("decode", ckpt)
    with pytest.raises(ExportError, match=r"outputs \[.*\] differ from the contract"):
        export_onnx.to_onnx_bytes(
            module, ExportConfig(graphs="decode"), metadata={}, contract=(ins, outs[::-1])
        )
