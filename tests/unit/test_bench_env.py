from pathlib import Path

import pytest

from edgevae.bench.env import (
    capture_environment,
    cpu_info,
    jetpack_for_l4t,
    jetson_info,
    memory_mib,
    summary_line,
    thermal_zones,
)

BOARDS = Path(__file__).parents[1] / "fixtures" / "jetson"


def no_commands(cmd):
    return None


def test_orin_nano_super():
    j = jetson_info(BOARDS / "orin-nano", no_commands)
    assert j["model"] == "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super"
    assert (j["l4t"], j["jetpack"]) == ("36.4.3", "6.2")
    assert j["power_mode"] == {"id": 2, "name": "MAXN_SUPER", "source": "/var/lib/nvpmodel/status"}
    assert j["jetson_clocks"]["state"] == "on"
    assert j["jetson_clocks"]["cpus_seen"] == 6 and j["jetson_clocks"]["gpu_pinned"] is True
    temps = j["temperatures_c"]
    assert temps["cpu-thermal"] == pytest.approx(47.843)
    assert "cv0-thermal" not in temps  # -256 C = sensor off


def test_agx_orin_uses_the_configured_default_without_a_status_file():
    j = jetson_info(BOARDS / "agx-orin", no_commands)
    assert j["model"] == "NVIDIA Jetson AGX Orin Developer Kit"
    assert (j["l4t"], j["jetpack"]) == ("36.3.0", "6.0")
    assert j["power_mode"] == {"id": 2, "name": "MODE_30W", "source": "/etc/nvpmodel.conf default"}
    assert j["jetson_clocks"]["state"] == "off"


def test_xavier_nx_jetpack4():
    j = jetson_info(BOARDS / "xavier-nx", no_commands)
    assert (j["l4t"], j["jetpack"]) == ("32.7.1", "4.6.1")
    assert j["power_mode"]["name"] == "MODE_15W_6CORE"
    assert j["jetson_clocks"]["state"] == "off"
    assert j["temperatures_c"]["PMIC-Die"] == 100.0


def test_nvpmodel_command_output_wins_over_files():
    def fake(cmd):
        assert cmd == ["nvpmodel", "-q"]
        return "NVPM WARN: fan mode is not set!\nNV Power Mode: 25W\n1\n"

    j = jetson_info(BOARDS / "orin-nano", fake)
    assert j["power_mode"] == {"id": 1, "name": "25W", "source": "nvpmodel -q"}


def test_arm_cpu_info_and_memory_from_fake_proc():
    cpu = cpu_info(BOARDS / "agx-orin")
    assert cpu["logical_cpus"] == 12
    assert cpu["model"] == "ARMv8 Processor rev 1 (v8l)"
    assert cpu["governor"] == "schedutil"
    assert "asimddp" in cpu["isa"]
    assert memory_mib(BOARDS / "agx-orin") == 64336000 // 1024


def test_non_jetson_root_has_no_jetson_block(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t: 0\n"
        "flags\t\t: fpu avx2 avx512f\n\nprocessor\t: 1\nmodel name\t: Test CPU\n"
        "physical id\t: 0\ncore id\t: 0\n"
    )
    env = capture_environment(tmp_path)
    assert env["jetson"] is None
    assert env["cpu"]["model"] == "Test CPU"
    assert (env["cpu"]["logical_cpus"], env["cpu"]["physical_cores"]) == (2, 1)
    assert env["cpu"]["isa"] == ["avx2", "avx512f"]
    assert env["gpu"] is None and env["memory_mib"] is None
    assert "numpy" in env["libraries"]


def test_capture_on_a_fake_jetson_runs_no_commands():
    env = capture_environment(BOARDS / "orin-nano")
    assert env["jetson"]["power_mode"]["source"] == "/var/lib/nvpmodel/status"
    line = summary_line(env)
    assert "L4T 36.4.3 JetPack 6.2" in line and "MAXN_SUPER" in line and "jetson_clocks on" in line


def test_capture_on_this_machine():
    env = capture_environment()
    assert env["cpu"]["logical_cpus"] >= 1
    assert env["host"]["python"]


@pytest.mark.parametrize(
    ("l4t", "jetpack"),
    [("36.4.3", "6.2"), ("35.3.1", "5.1.1"), ("36.9.9", "6.x"), ("38.2.0", "7.0"), (None, None),
     ("99.1.0", None)],
)  # fmt: skip
def test_jetpack_for_l4t(l4t, jetpack):
    assert jetpack_for_l4t(l4t) == jetpack


def test_thermal_zones_skip_unreadable(tmp_path):
    z = tmp_path / "sys/devices/virtual/thermal"
    (z / "thermal_zone0").mkdir(parents=True)
    (z / "thermal_zone0/type").write_text("cpu-thermal\n")
    (z / "thermal_zone0/temp").write_text("not a number\n")
    (z / "thermal_zone1").mkdir()
    (z / "thermal_zone1/type").write_text("gpu-thermal\n")
    (z / "thermal_zone1/temp").write_text("51000\n")
    assert thermal_zones(tmp_path) == {"gpu-thermal": 51.0}
