"""Kernel loading and launching without a GPU: argument packing, image selection, the
cuda-python backend against a fake driver, and torch_ops' marshalling through the host harness
(tests/kernel_emulation.py)."""

from __future__ import annotations

import ctypes
import json
import sys
import types

import numpy as np
import pytest
import torch

from edgevae.errors import ConfigError, KernelError, MissingDependencyError, ShapeError
from edgevae.kernels import build as kb
from edgevae.kernels import checks, launch, torch_ops
from edgevae.kernels import reference as ref
from tests.kernel_emulation import EmulatedLauncher, install_emulation


@pytest.fixture
def emulated_kernels(monkeypatch, tmp_path_factory) -> EmulatedLauncher:
    return install_emulation(monkeypatch, tmp_path_factory)


# --------------------------------------------------------------------------- packing
def test_pointer_array_points_at_each_argument():
    args = [ctypes.c_void_p(0x1234), ctypes.c_int(-7), ctypes.c_longlong(1 << 40)]
    array, keep = launch.pack_pointer_array(args)
    assert ctypes.cast(array[0], ctypes.POINTER(ctypes.c_void_p))[0] == 0x1234
    assert ctypes.cast(array[1], ctypes.POINTER(ctypes.c_int))[0] == -7
    assert ctypes.cast(array[2], ctypes.POINTER(ctypes.c_longlong))[0] == 1 << 40
    assert keep[0] is array


def test_arg_buffer_uses_natural_alignment():
    buf = launch.pack_arg_buffer([ctypes.c_int(7), ctypes.c_void_p(0x1122), ctypes.c_int(3)])
    assert len(buf) == 24  # int, 4 pad, pointer, int, 4 pad
    assert int.from_bytes(buf[0:4], sys.byteorder) == 7
    assert int.from_bytes(buf[8:16], sys.byteorder) == 0x1122
    table = torch_ops._ScoreInputs()
    table.numel[15] = 99
    buf = launch.pack_arg_buffer([table, ctypes.c_int(5)])
    assert len(buf) == 384 + 8
    assert int.from_bytes(buf[376:384], sys.byteorder) == 99


# --------------------------------------------------------------------------- image selection
def _fake_build(tmp_path, artifacts, digest=None):
    files = []
    for arch, kind in artifacts:
        name = f"poe_fusion.{arch if kind == 'cubin' else 'compute_' + arch[3:]}.{kind}"
        (tmp_path / "poe_fusion").mkdir(exist_ok=True)
        (tmp_path / "poe_fusion" / name).write_bytes(b"image " + name.encode())
        files.append({"arch": arch, "kind": kind, "file": f"poe_fusion/{name}", "sha256": "x"})
    manifest = {
        "format": kb.MANIFEST_FORMAT,
        "kernels": {"poe_fusion": {"entry": "edgevae_poe_fusion", "artifacts": files,
                                   "source_sha256": digest or kb.source_digest("poe_fusion")}},
    }  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))


def test_select_image_prefers_exact_cubin_then_older_ptx(tmp_path):
    _fake_build(
        tmp_path, [("sm_80", "ptx"), ("sm_87", "ptx"), ("sm_87", "cubin"), ("sm_90", "ptx")]
    )
    img = launch.select_image("poe_fusion", "sm_87", tmp_path)
    assert (img.kind, img.arch) == ("cubin", "sm_87")
    img = launch.select_image("poe_fusion", "sm_89", tmp_path)
    assert (img.kind, img.arch) == ("ptx", "sm_87")  # newest PTX not newer than the device
    assert img.data().endswith(b"\0")  # cuModuleLoadData needs NUL-terminated PTX
    assert launch.select_image("poe_fusion", "sm_75", tmp_path) is None
    assert launch.select_image("preprocess", "sm_87", tmp_path) is None


def test_stale_build_is_ignored(tmp_path):
    _fake_build(tmp_path, [("sm_87", "cubin")], digest="0" * 64)
    assert launch.select_image("poe_fusion", "sm_87", tmp_path) is None


def test_nothing_built_and_no_nvcc_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(kb.shutil, "which", lambda name: None)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    with pytest.raises(KernelError, match="edgevae kernels build --arch sm_87"):
        launch.ensure_image("poe_fusion", "sm_87", tmp_path)


# --------------------------------------------------------------------------- fake cuda-python
class _Result(int):
    pass


def _fake_driver(calls: list, fail: str | None = None) -> types.SimpleNamespace:
    success, invalid = _Result(0), _Result(200)

    def ok(name, *values):
        def fn(*args):
            calls.append((name, args))
            return (invalid, None) if name == fail else (success, *values)

        return fn

    def launch_kernel(fn, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        ptrs = ctypes.cast(params, ctypes.POINTER(ctypes.c_void_p))
        values = (
            ctypes.cast(ptrs[0], ctypes.POINTER(ctypes.c_void_p))[0],
            ctypes.cast(ptrs[1], ctypes.POINTER(ctypes.c_int))[0],
        )
        calls.append(("cuLaunchKernel", (fn, (gx, gy, gz), (bx, by, bz), shared, stream, values)))
        return (invalid,) if fail == "cuLaunchKernel" else (success,)

    attrs = types.SimpleNamespace(
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR="major",
        CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR="minor",
    )
    return types.SimpleNamespace(
        CUresult=types.SimpleNamespace(CUDA_SUCCESS=success),
        CUdevice_attribute=attrs,
        CUstream=lambda handle: ("stream", handle),
        cuInit=ok("cuInit"),
        cuDeviceGet=ok("cuDeviceGet", "dev0"),
        cuDevicePrimaryCtxRetain=ok("cuDevicePrimaryCtxRetain", 77),
        cuCtxGetCurrent=ok("cuCtxGetCurrent", 0),
        cuCtxSetCurrent=ok("cuCtxSetCurrent"),
        cuDeviceGetAttribute=lambda attr, dev: (success, 8 if attr == "major" else 7),
        cuModuleLoadData=ok("cuModuleLoadData", "module"),
        cuModuleGetFunction=ok("cuModuleGetFunction", "function"),
        cuLaunchKernel=launch_kernel,
        cuGetErrorName=lambda err: (success, b"CUDA_ERROR_INVALID_IMAGE"),
    )


def test_cuda_python_launcher_loads_and_launches(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(launch, "require", lambda name: _fake_driver(calls))
    _fake_build(tmp_path, [("sm_87", "cubin")])
    launcher = launch.KernelLauncher("cuda-python", 0, build_dir=str(tmp_path))
    assert launcher.arch == "sm_87"
    args = [ctypes.c_void_p(0xABC), ctypes.c_int(42)]
    launcher.launch("poe_fusion", (3, 1, 1), (64, 1, 1), args, stream=555, shared=256)
    launcher.launch("poe_fusion", (3, 1, 1), (64, 1, 1), args, stream=555, shared=256)
    names = [c[0] for c in calls]
    assert names.count("cuModuleLoadData") == 1  # loaded once, cached
    load = next(c for c in calls if c[0] == "cuModuleLoadData")
    assert load[1][0] == b"image poe_fusion.sm_87.cubin"
    assert ("cuModuleGetFunction", ("module", b"edgevae_poe_fusion")) in calls
    assert "cuCtxSetCurrent" in names  # made the primary context current
    fn, grid, block, shared, stream, values = next(c for c in calls if c[0] == "cuLaunchKernel")[1]
    assert (fn, grid, block, shared, stream) == ("function", (3, 1, 1), (64, 1, 1), 256,
                                                 ("stream", 555))  # fmt: skip
    assert values == (0xABC, 42)


def test_driver_errors_become_kernel_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(launch, "require", lambda name: _fake_driver([], fail="cuModuleLoadData"))
    _fake_build(tmp_path, [("sm_87", "cubin")])
    launcher = launch.KernelLauncher("cuda-python", 0, build_dir=str(tmp_path))
    with pytest.raises(KernelError, match="cuModuleLoadData failed with CUDA_ERROR_INVALID_IMAGE"):
        launcher.function("poe_fusion")
    with pytest.raises(KernelError, match="empty launch grid"):
        launcher.launch("poe_fusion", (0, 1, 1), (32, 1, 1), [])


def test_missing_driver_library_is_a_dependency_error(monkeypatch):
    fake = _fake_driver([])

    def no_libcuda(flags):
        raise RuntimeError('"cuda" is an NVIDIA driver library and can only be found ...')

    fake.cuInit = no_libcuda
    monkeypatch.setattr(launch, "require", lambda name: fake)
    with pytest.raises(MissingDependencyError, match="CUDA driver could not be loaded"):
        launch.CudaPythonBackend(0)


def test_missing_cuda_python_has_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda.bindings.driver", None)
    with pytest.raises(MissingDependencyError, match="cuda-python is not installed"):
        launch.CudaPythonBackend(0)


def test_pycuda_refuses_foreign_streams_and_unknown_backends():
    backend = object.__new__(launch.PyCudaBackend)
    with pytest.raises(ConfigError, match="default CUDA stream"):
        backend.launch(None, (1, 1, 1), (32, 1, 1), 0, 1234, [])
    with pytest.raises(ConfigError, match="Valid values: cuda-python, pycuda"):
        launch.KernelLauncher("cupy")


# --------------------------------------------------------------------------- torch_ops
def test_cpu_tensors_are_refused_with_the_alternative():
    x = torch.zeros(2, 3, 4)
    with pytest.raises(ShapeError, match=r"on cpu.*poe_fusion_eager"):
        torch_ops.poe_fusion(x, x, torch.ones(2, 3))
    with pytest.raises(ShapeError, match="preprocess_eager"):
        torch_ops.preprocess(torch.zeros(1, 1, 1, 4, 4, 3, dtype=torch.uint8), (2, 2), 1)
    with pytest.raises(ShapeError, match="anomaly_score_eager"):
        torch_ops.anomaly_score([x], [x], torch.ones(2, 1), torch.zeros(2), torch.zeros(2, 1),
                                *torch.ones(3, 3))  # fmt: skip


def _t(kwargs):
    return {k: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray) else
            [torch.from_numpy(a) for a in v] if isinstance(v, list) else v
            for k, v in kwargs.items()}  # fmt: skip


@pytest.mark.parametrize(
    ("kernel", "cases", "reference"),
    [("poe_fusion", checks.poe_cases, ref.poe_fusion_ref),
     ("anomaly_score", checks.score_cases, ref.anomaly_score_ref),
     ("preprocess", checks.preprocess_cases, ref.preprocess_ref)],
)  # fmt: skip
def test_torch_ops_marshalling_matches_reference(emulated_kernels, kernel, cases, reference):
    for name, kwargs in cases(0):
        out = getattr(torch_ops, kernel)(**_t(kwargs))
        for r in checks._compare(kernel, name, tuple(out) if isinstance(out, tuple) else out,
                                 reference(**kwargs), checks.HOST_TOL):  # fmt: skip
            assert r.passed, r
    assert {k for k, *_ in emulated_kernels.launches} == {kernel}


def test_preprocess_per_camera_resolutions_into_out(emulated_kernels):
    rng = np.random.default_rng(0)
    cam_a = rng.integers(0, 256, size=(2, 3, 40, 50, 3), dtype=np.uint8)
    cam_b = rng.integers(0, 256, size=(2, 3, 21, 17, 1), dtype=np.uint8)
    out = torch.full((2, 2, 3, 16, 16), -1.0)
    got = torch_ops.preprocess([torch.from_numpy(cam_a), torch.from_numpy(cam_b)], (16, 16), 1,
                               out=out)  # fmt: skip
    assert got is out
    assert len(emulated_kernels.launches) == 2
    np.testing.assert_array_equal(
        out[:, 0].numpy(), ref.preprocess_ref(cam_a[:, None], (16, 16), 1)[:, 0]
    )
    np.testing.assert_array_equal(
        out[:, 1].numpy(), ref.preprocess_ref(cam_b[:, None], (16, 16), 1)[:, 0]
    )


def test_poe_eps_dtype_and_empty_batch(emulated_kernels):
    kwargs = dict(checks.poe_cases(0))["odd B=7 M=5 D=33"]
    t = _t(kwargs)
    out = torch_ops.poe_fusion(t["mu"].double(), t["logvar"].double(), t["mask"].bool(), t["eps"])
    want = ref.poe_fusion_ref(**kwargs)
    assert out.z.dtype == torch.float32
    assert checks.normalised_error(out.z.numpy(), want.z) < 1e-5
    no_eps = torch_ops.poe_fusion(t["mu"], t["logvar"], t["mask"])
    assert no_eps.z is no_eps.z_mu
    empty = torch_ops.poe_fusion(torch.zeros(0, 2, 4), torch.zeros(0, 2, 4), torch.zeros(0, 2))
    assert empty.z_mu.shape == (0, 4)
    n = len(emulated_kernels.launches)
    assert n == 2  # the empty batch launched nothing


def test_torch_ops_shape_errors(emulated_kernels):
    z = torch.zeros
    with pytest.raises(ShapeError, match=r"\(B, M, D\)"):
        torch_ops.poe_fusion(z(2, 3, 4), z(2, 3, 5), z(2, 3))
    with pytest.raises(ShapeError, match="D <= 6144"):
        torch_ops.poe_fusion(z(1, 1, 7000), z(1, 1, 7000), z(1, 1))
    with pytest.raises(ShapeError, match="eps"):
        torch_ops.poe_fusion(z(2, 3, 4), z(2, 3, 4), z(2, 3), z(2, 5))
    with pytest.raises(ShapeError, match="floating-point"):
        torch_ops.poe_fusion(z(2, 3, 4, dtype=torch.int32), z(2, 3, 4), z(2, 3))
    stats = [z(4), torch.ones(4), torch.ones(4)]
    with pytest.raises(ShapeError, match="1 to 16"):
        torch_ops.anomaly_score([z(1, 2)] * 17, [z(1, 2)] * 17, z(1, 17), z(1), z(1, 17), *stats)
    with pytest.raises(ShapeError, match="modality 1"):
        torch_ops.anomaly_score([z(1, 2), z(1, 3)], [z(1, 2), z(1, 4)], z(1, 2), z(1), z(1, 2),
                                *stats)  # fmt: skip
    with pytest.raises(ShapeError, match=r"mean/std/weight must be"):
        torch_ops.anomaly_score([z(1, 2)], [z(1, 2)], z(1, 1), z(1), z(1, 1), *stats)
    frames = z(1, 1, 2, 8, 8, 3, dtype=torch.uint8)
    with pytest.raises(ShapeError, match="uint8"):
        torch_ops.preprocess(frames.float(), (4, 4), 1)
    with pytest.raises(ShapeError, match="same batch size B and frames T"):
        torch_ops.preprocess([frames[:, 0], z(1, 3, 8, 8, 3, dtype=torch.uint8)], (4, 4), 1)
    with pytest.raises(ShapeError, match="out must be a contiguous float32"):
        torch_ops.preprocess(frames, (4, 4), 1, out=z(1, 1, 2, 4, 5))
    with pytest.raises(ShapeError, match="empty list"):
        torch_ops.preprocess([], (4, 4), 1)
    with pytest.raises(ShapeError, match="must be positive"):
        torch_ops.preprocess(frames, (0, 4), 1)
