"""``edgevae build`` and ``edgevae doctor`` through the CLI (exit codes and messages)."""

from __future__ import annotations

import importlib.machinery
import json
import sys

import pytest

from edgevae import doctor
from edgevae.trt import build as build_mod
from edgevae.trt.probe import GpuInfo
from tests.cli_util import invoke
from tests.fakes import tiny_export as tiny
from tests.fakes.fake_tensorrt import install, make_fake_tensorrt

needs_no_tensorrt = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)


@needs_no_tensorrt
def test_doctor_here_exits_1_and_says_tensorrt_is_missing(capsys):
    r = invoke(capsys, "doctor")
    assert r.code == 1
    assert "tensorrt" in r.out and "missing" in r.out
    assert "sudo apt install" in r.out and "nvidia-tensorrt" in r.out
    assert "TensorRT deployment is not possible here" in r.out
    assert "edgevae[cuda]" in r.out  # brackets in a fix are text, not rich markup


@needs_no_tensorrt
def test_doctor_json(capsys):
    r = invoke(capsys, "doctor", "--json")
    assert r.code == 1
    report = json.loads(r.out)
    assert report["deployable"] is False
    assert any(b.startswith("TensorRT is missing") for b in report["blockers"])
    names = [c["name"] for c in report["checks"]]
    for expected in ("python", "torch", "onnxruntime", "tensorrt", "cuda-python", "gpu",
                     "jetson", "nvcc", "trtexec", "kernels"):  # fmt: skip
        assert expected in names
    trt = next(c for c in report["checks"] if c["name"] == "tensorrt")
    assert trt["status"] == "missing" and "pip install" not in (trt["fix"] or "").split(";")[0]


def _fake_jetson_root(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nv_tegra_release").write_text(
        "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64\n"
    )
    (tmp_path / "proc/device-tree").mkdir(parents=True)
    (tmp_path / "proc/device-tree/model").write_text("NVIDIA Jetson AGX Orin Developer Kit\x00")
    (tmp_path / "proc/meminfo").write_text("MemTotal: 32000000 kB\nMemAvailable: 20000000 kB\n")
    return tmp_path


def test_doctor_on_a_jetson_without_tensorrt_gives_the_jetpack_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(doctor, "probe_gpu", lambda: GpuInfo(error="no driver in this test"))
    monkeypatch.setattr(doctor.importlib.util, "find_spec", lambda name: None)
    report = doctor.diagnose(root=str(_fake_jetson_root(tmp_path)))
    checks = {c.name: c for c in report.checks}
    assert checks["jetson"].detail == (
        "NVIDIA Jetson AGX Orin Developer Kit, L4T 36.4.3, JetPack 6.1/6.2"
    )
    assert checks["tensorrt"].fix.startswith("install JetPack's TensorRT: `sudo apt install")
    assert "pip" not in checks["tensorrt"].fix
    assert not report.deployable


def test_doctor_exit_0_when_deployable(monkeypatch, capsys):
    trt = make_fake_tensorrt("10.3.0.30")
    trt.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    gpu = GpuInfo("Orin", "8.7", 30000, 20000, "12.6", "12.6", "cuda-python")
    monkeypatch.setattr(doctor, "probe_gpu", lambda: gpu)
    monkeypatch.setattr(doctor, "_check_cuda_python", lambda: (doctor.Check("c", "ok", "x"), True))
    r = invoke(capsys, "doctor")
    assert r.code == 0, r.out
    assert "TensorRT deployment is possible here" in r.out
    assert "split mode works" in r.out  # 10.3: no AOT plugins


@needs_no_tensorrt
def test_build_without_tensorrt_exits_2_with_how_to_install_on_jetson(capsys, tmp_path):
    export = tiny.write_export(tmp_path / "export")
    r = invoke(capsys, "build", export, "--precision", "fp32")
    assert r.code == 2
    assert r.err.startswith("error: edgevae build needs TensorRT, which is not installed here")
    assert "sudo apt install nvidia-tensorrt" in r.err and "Traceback" not in r.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "fp8"], "unknown precision 'fp8'"),
        (["--precision", "fp16", "--mode", "plugn"], "Did you mean 'plugin'"),
        (["--precision", "fp16", "--batch", "8,1,16"], "is not ordered"),
        (["--precision", "fp16", "--batch", "1,x,4"], "not MIN,OPT,MAX integers"),
        (["--precision", "fp16", "--opt-level", "9"], "optimization level 9 is out of range"),
        (["--precision", "fp16", "--workspace", "0"], "workspace 0 MiB is out of range"),
        (["--precision", "fp16", "--plugin-lib", "x.so"], "only applies to --mode plugin"),
    ],
)
def test_build_bad_options_exit_2(capsys, tmp_path, args, message):
    r = invoke(capsys, "build", tmp_path, *args)
    assert r.code == 2
    assert message in r.err


def test_build_missing_export_dir_exits_2(capsys, tmp_path):
    r = invoke(capsys, "build", tmp_path / "nope", "--precision", "fp32")
    assert r.code == 2 and "does not exist" in r.err


def test_build_with_fake_tensorrt_prints_the_engine_and_next_step(monkeypatch, capsys, tmp_path):
    install(monkeypatch, build_mod, make_fake_tensorrt("11.4.0.106"))
    export = tiny.write_export(tmp_path / "export", ("fp32", "fp16"))
    r = invoke(capsys, "build", export, "--precision", "fp16", "--batch", "1,2,4",
               "--timing-cache", tmp_path / "tc", "--out", tmp_path / "eng")  # fmt: skip
    assert r.code == 0, r.err
    assert r.out.strip() == str(tmp_path / "eng" / "analyze.fp16.plan")
    assert "building analyze.fp16.plan (batch 1,2,4" in r.err
    assert "edgevae bench" in r.err


def test_trt_modules_import_neither_tensorrt_nor_onnx():
    import subprocess

    code = (
        "import sys\n"
        "import edgevae.trt, edgevae.trt.build, edgevae.trt.manifest, edgevae.trt.trtexec\n"
        "import edgevae.doctor, edgevae.runtime.trt_runner, edgevae.cli.build\n"
        "heavy = ('tensorrt', 'onnx', 'onnxruntime', 'torch', 'cuda')\n"
        "bad = [m for m in heavy if m in sys.modules]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
