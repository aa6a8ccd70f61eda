import subprocess
import sys

from edgevae import __version__
from tests.cli_util import invoke


def test_version(capsys):
    r = invoke(capsys, "--version")
    assert r.code == 0
    assert r.out.strip() == f"edgevae {__version__}"


def test_help_lists_groups(capsys):
    r = invoke(capsys, "--help")
    assert r.code == 0
    assert "data" in r.out


def test_help_imports_neither_torch_nor_onnxruntime():
    code = (
        "import sys\n"
        "from edgevae.cli import run\n"
        "rc = run(['--help'])\n"
        "bad = [m for m in ('torch', 'onnxruntime', 'tensorrt', 'onnx') if m in sys.modules]\n"
        "print('LOADED', bad)\n"
        "sys.exit(1 if bad or rc else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_unknown_command_is_a_usage_error(capsys):
    r = invoke(capsys, "trian")
    assert r.code == 2
    assert "No such command" in r.err
