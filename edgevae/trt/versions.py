"""Version parsing and version gates for TensorRT, CUDA, JetPack/L4T and compute capabilities.

Pure functions over strings and numbers (no probing, no imports of TensorRT), so every gate is
unit-tested on a CPU. Facts and sources: ``reference/tensorrt.md`` §1, §3, §5, §6.

Example:
    >>> v = parse_trt_version("10.3.0.30")
    >>> supports_aot_plugins(v), trtexec_needs_explicit_inference_flags(v)
    (False, True)
    >>> ComputeCapability.parse("8.7").key
    'sm87'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering

from edgevae.errors import EngineBuildError

#: Oldest TensorRT edgevae builds with: strong typing and IPluginV3 (JetPack 6 ships 10.3).
MIN_TRT = (10, 0)
#: Ahead-of-time Quickly Deployable Plugins (``@trtp.aot_impl``) arrived in TensorRT 10.9.0.
AOT_PLUGINS_MIN_TRT = (10, 9)

_JETSON_NAMES = {
    (7, 2): "Jetson Xavier",
    (8, 7): "Jetson Orin",
    (10, 1): "Jetson Thor (CUDA <= 12.9 numbering)",
    (11, 0): "Jetson Thor",
}

# L4T major.minor -> JetPack release (reference/tensorrt.md §5.1).
_L4T_TO_JETPACK = {
    (35, 1): "5.0.2",
    (35, 2): "5.1",
    (35, 3): "5.1.1",
    (35, 4): "5.1.2",
    (35, 5): "5.1.3",
    (35, 6): "5.1.4",
    (36, 2): "6.0 DP",
    (36, 3): "6.0",
    (36, 4): "6.1/6.2",
    (38, 2): "7.0",
    (38, 4): "7.1",
}

# JetPack major.minor -> the TensorRT it ships (None: not confirmed).
_JETPACK_TRT = {
    "5.1": "8.5.2",
    "6.0": "8.6",
    "6.1": "10.3.0",
    "6.2": "10.3.0",
    "7.0": "10.13.3",
    "7.1": None,
}


@total_ordering
@dataclass(frozen=True)
class TrtVersion:
    """A TensorRT version ``major.minor.patch[.build]``; compares by its numbers."""

    major: int
    minor: int
    patch: int = 0
    build: int = 0

    def __str__(self) -> str:
        base = f"{self.major}.{self.minor}.{self.patch}"
        return f"{base}.{self.build}" if self.build else base

    def _key(self) -> tuple[int, int, int, int]:
        return (self.major, self.minor, self.patch, self.build)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, TrtVersion):
            return NotImplemented
        return self._key() < other._key()

    def at_least(self, major: int, minor: int = 0) -> bool:
        """True if this version is ``>= major.minor``."""
        return (self.major, self.minor) >= (major, minor)


def parse_trt_version(text: str) -> TrtVersion:
    """Parse ``"10.3.0.30"``, ``"11.4.0.106"``, ``"10.13"`` or ``"10.3.0.30-1+cuda12.5"``.

    Raises:
        ValueError: when ``text`` holds no ``major.minor`` version.
    """
    m = re.match(r"\s*(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
    if not m:
        raise ValueError(f"not a TensorRT version: {text!r}")
    parts = [int(p) if p else 0 for p in m.groups()]
    return TrtVersion(*parts)


def check_trt_supported(version: TrtVersion) -> None:
    """Raise EngineBuildError for TensorRT older than 10.0 (no strong typing, no IPluginV3)."""
    if not version.at_least(*MIN_TRT):
        raise EngineBuildError(
            f"TensorRT {version} is too old: edgevae needs TensorRT >= 10.0 (strongly typed "
            "networks, IPluginV3); JetPack 5 ships 8.5. Upgrade to JetPack 6 or newer."
        )


def supports_aot_plugins(version: TrtVersion) -> bool:
    """AOT Quickly Deployable Plugins need TensorRT >= 10.9 at build time (§3.1)."""
    return version.at_least(*AOT_PLUGINS_MIN_TRT)


def strongly_typed_is_default(version: TrtVersion) -> bool:
    """11.x always builds strongly typed (the flag is accepted and ignored); 10.x must opt in."""
    return version.major >= 11


def has_weak_typing_flags(version: TrtVersion) -> bool:
    """``BuilderFlag.FP16/INT8`` and calibrators exist up to 10.x and are removed in 11.0."""
    return version.major <= 10


def trtexec_needs_explicit_inference_flags(version: TrtVersion) -> bool:
    """10.x needs CUDA graphs, no data transfers and spin wait asked for; 11.x defaults them."""
    return version.major <= 10


@total_ordering
@dataclass(frozen=True)
class ComputeCapability:
    """A CUDA compute capability such as 8.7 (Orin); ``key`` is ``"sm87"``."""

    major: int
    minor: int

    @classmethod
    def parse(cls, value: str | tuple[int, int] | ComputeCapability) -> ComputeCapability:
        """Parse ``"8.7"``, ``"sm_87"``, ``"sm87"``, ``"87"`` or ``(8, 7)``.

        Raises:
            ValueError: on anything else.
        """
        if isinstance(value, ComputeCapability):
            return value
        if isinstance(value, tuple):
            return cls(int(value[0]), int(value[1]))
        text = str(value).strip().lower()
        m = re.fullmatch(r"(\d+)\.(\d+)", text)
        if m:
            return cls(int(m.group(1)), int(m.group(2)))
        m = re.fullmatch(r"(?:sm_?|compute_)?(\d+)(\d)[a-z]?", text)
        if m:
            return cls(int(m.group(1)), int(m.group(2)))
        raise ValueError(f"not a compute capability: {value!r} (expected e.g. '8.7' or 'sm_87')")

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ComputeCapability):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    @property
    def key(self) -> str:
        """``"sm87"``: the form used in file names (timing caches, PTX)."""
        return f"sm{self.major}{self.minor}"

    @property
    def arch(self) -> str:
        """``"sm_87"``: the form nvcc and NVRTC take."""
        return f"sm_{self.major}{self.minor}"

    def jetson_name(self) -> str | None:
        """The Jetson family with this compute capability, or None (desktop/datacenter GPUs)."""
        return _JETSON_NAMES.get((self.major, self.minor))


@dataclass(frozen=True)
class CudaVersion:
    """A CUDA version such as 12.6."""

    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def from_int(cls, value: int) -> CudaVersion:
        """From the runtime/driver API integer form: 12060 -> 12.6, 13000 -> 13.0."""
        return cls(value // 1000, (value % 1000) // 10)

    @classmethod
    def parse(cls, text: str) -> CudaVersion:
        """From ``"12.6"``, ``"release 12.6, V12.6.68"`` (nvcc) or ``"CUDA Version: 13.0"``.

        Raises:
            ValueError: when no version is found.
        """
        m = re.search(r"(?:release|version:?)\s*(\d+)\.(\d+)", text, re.IGNORECASE)
        m = m or re.search(r"(\d+)\.(\d+)", text)
        if not m:
            raise ValueError(f"no CUDA version in {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))


def parse_l4t_release(text: str) -> str | None:
    """L4T version from ``/etc/nv_tegra_release``.

    ``"# R36 (release), REVISION: 4.3, GCID: ..."`` -> ``"36.4.3"``; None when unrecognised.
    """
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    major, minor, patch = m.group(1), m.group(2), m.group(3) or "0"
    return f"{major}.{minor}.{patch}"


def jetpack_for_l4t(l4t: str | None) -> str | None:
    """The JetPack release for an L4T version (``"36.4.3"`` -> ``"6.1/6.2"``), or None."""
    if not l4t:
        return None
    parts = l4t.split(".")
    try:
        return _L4T_TO_JETPACK.get((int(parts[0]), int(parts[1])))
    except (ValueError, IndexError):
        return None


def parse_jetpack_package(text: str) -> str | None:
    """JetPack version from ``dpkg-query -W nvidia-jetpack`` (``"nvidia-jetpack 6.2+b77"``)."""
    m = re.search(r"nvidia-jetpack\s+(\d+\.\d+(?:\.\d+)?)", text)
    return m.group(1) if m else None


def expected_trt_for_jetpack(jetpack: str | None) -> str | None:
    """The TensorRT version a JetPack release ships (``"6.2"`` -> ``"10.3.0"``), or None."""
    if not jetpack:
        return None
    m = re.match(r"(\d+\.\d+)", jetpack)
    return _JETPACK_TRT.get(m.group(1)) if m else None


def ptx_isa_for_cuda(cuda: CudaVersion) -> str:
    """The newest PTX ISA a CUDA release (driver) can JIT: 12.6 -> 8.5, 12.9 -> 8.8, 13.0 -> 9.0.

    PTX made by a newer nvcc than the device's CUDA cannot be loaded (reference §3.1 pitfall).
    """
    table = {
        (11, 4): "7.4",
        (12, 0): "8.0",
        (12, 1): "8.1",
        (12, 2): "8.2",
        (12, 3): "8.3",
        (12, 4): "8.4",
        (12, 5): "8.5",
        (12, 6): "8.5",
        (12, 8): "8.7",
        (12, 9): "8.8",
        (13, 0): "9.0",
    }
    if (cuda.major, cuda.minor) in table:
        return table[(cuda.major, cuda.minor)]
    older = [k for k in table if k <= (cuda.major, cuda.minor)]
    return table[max(older)] if older else "7.0"


def parse_ptx_version(ptx: str) -> str | None:
    """The ``.version X.Y`` directive of a PTX text, or None."""
    m = re.search(r"^\s*\.version\s+(\d+\.\d+)", ptx, re.MULTILINE)
    return m.group(1) if m else None


def ptx_loadable(ptx_version: str, cuda: CudaVersion) -> bool:
    """True if PTX of ``ptx_version`` can be JIT-compiled by a CUDA ``cuda`` driver."""

    def as_tuple(v: str) -> tuple[int, int]:
        a, b = v.split(".")
        return int(a), int(b)

    return as_tuple(ptx_version) <= as_tuple(ptx_isa_for_cuda(cuda))
