"""Bad input to `edgevae quantize`: one-line errors, exit code 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from edgevae._util.artifacts import sha256_file
from tests.cli_util import invoke
from tests.quant_util import tiny_export


@pytest.fixture
def export(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> tuple[Path, Path]:
    return tiny_export(tmp_path_factory, tmp_path / "export")


def _listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def _fails(capsys: pytest.CaptureFixture[str], exp: Path, data: Path, *args: str) -> str:
    before = _listing(exp)
    res = invoke(capsys, "quantize", exp, "--data", data, "--quiet", *args)
    assert res.code == 2, (res.out, res.err)
    lines = res.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.err
    assert "Traceback" not in res.err
    assert _listing(exp) == before  # no partial artifacts, no cache
    return lines[0]


def _manifest(exp: Path, graph: str = "analyze") -> tuple[Path, dict]:
    path = exp / f"{graph}.onnx.manifest.json"
    return path, json.loads(path.read_text())


def test_truncated_onnx(export: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    exp, data = export
    onnx_path = exp / "analyze.onnx"
    onnx_path.write_bytes(onnx_path.read_bytes()[: onnx_path.stat().st_size // 2])
    msg = _fails(capsys, exp, data, "--precision", "int8")
    assert "analyze.onnx" in msg and "truncated, corrupt or modified" in msg
    assert "edgevae export" in msg


def test_corrupt_onnx(export: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    exp, data = export
    onnx_path = exp / "encode.onnx"
    onnx_path.write_bytes(b"\x08\x07garbage" * 50)
    path, m = _manifest(exp, "encode")
    m["sha256"] = sha256_file(onnx_path)  # a consistent manifest: the bytes themselves are bad
    path.write_text(json.dumps(m))
    msg = _fails(capsys, exp, data, "--precision", "fp16")
    assert "encode.onnx" in msg and "is not a valid ONNX model" in msg


def test_incompatible_version(
    export: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    exp, data = export
    path, m = _manifest(exp)
    m["created_by"]["tool_versions"]["edgevae"] = "9.0.0"
    path.write_text(json.dumps(m))
    msg = _fails(capsys, exp, data, "--precision", "int8")
    assert "exported by edgevae 9.0.0, which is incompatible" in msg
    path.unlink()
    msg = _fails(capsys, exp, data, "--precision", "int8")
    assert "has no manifest" in msg


def test_already_quantized(export: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    exp, data = export
    # a Q/DQ pair on the first input makes it a quantized graph (its manifest kept consistent)
    model = onnx.load(str(exp / "decode.onnx"))
    first = model.graph.node[0]
    model.graph.initializer.extend(
        [onnx.numpy_helper.from_array(__import__("numpy").array(0.1, "float32"), "s"),
         onnx.numpy_helper.from_array(__import__("numpy").array(0, "int8"), "zp")]
    )  # fmt: skip
    q = onnx.helper.make_node("QuantizeLinear", ["z", "s", "zp"], ["zq"], name="q")
    dq = onnx.helper.make_node("DequantizeLinear", ["zq", "s", "zp"], ["zdq"], name="dq")
    first.input[list(first.input).index("z")] = "zdq"
    model.graph.node.insert(0, dq)
    model.graph.node.insert(0, q)
    onnx.save(model, str(exp / "decode.onnx"))
    path, m = _manifest(exp, "decode")
    m["sha256"] = sha256_file(exp / "decode.onnx")
    path.write_text(json.dumps(m))
    msg = _fails(capsys, exp, data, "--precision", "int8", "--graphs", "decode")
    assert "already holds DequantizeLinear, QuantizeLinear nodes (it is quantized)" in msg
    # a quantized artifact (with its own manifest) copied in as the FP32 graph
    m["details"]["precision"] = "int8"
    path.write_text(json.dumps(m))
    msg = _fails(capsys, exp, data, "--precision", "fp16", "--graphs", "decode")
    assert "is already quantized (int8)" in msg


def test_calibration_data_mismatch(
    export: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.train_util import make_tiny_dataset

    exp, _ = export
    other = make_tiny_dataset(tmp_path / "other")  # 8x8 cameras, 4-step motion: other shapes
    msg = _fails(capsys, exp, other, "--precision", "int8")
    assert "modalities do not match the model" in msg and "cam0" in msg


def test_too_few_samples(export: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    exp, data = export
    msg = _fails(capsys, exp, data, "--precision", "int8", "--recipe", "quick", "--samples", "5")
    assert "only 5 calibration samples, fewer than the minimum of 32" in msg and "--force" in msg


def test_unknown_method(export: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    exp, data = export
    msg = _fails(capsys, exp, data, "--precision", "int8", "--method", "entropi")
    assert "unknown calibration method 'entropi'. Did you mean 'entropy'?" in msg


def test_modelopt_missing(export: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    exp, data = export
    msg = _fails(capsys, exp, data, "--precision", "int8", "--backend", "modelopt",
                 "--target", "trt")  # fmt: skip
    assert "optional dependency 'modelopt.onnx.quantization' is missing" in msg
    assert "pip install 'edgevae[modelopt]'" in msg


def test_exclude_matching_nothing(
    export: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    exp, data = export
    msg = _fails(capsys, exp, data, "--precision", "int8", "--recipe", "quick",
                 "--exclude", "no_such_node")  # fmt: skip
    assert "--exclude 'no_such_node' matches no node" in msg
