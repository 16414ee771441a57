"""The command line: exit codes, error text without tracebacks, list and filters."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench.cli import main


def test_list_prints_expanded_cases(write_suite, capsys):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8, 16]\n')
    assert main(["list", str(path)]) == 0
    out = capsys.readouterr().out
    assert "mlp-d2-w8-relu-b1-fp32-cpu" in out and "mlp-d2-w16-relu-b1-fp32-cpu" in out
    assert "2 case(s)" in out


def test_list_json_filter_and_device_override(write_suite, capsys):
    path = write_suite('[[sweep]]\nmodel = ["mlp", "cnn"]\nwidth = [8, 16]\n')
    assert main(["list", str(path), "--json", "-k", "w16", "--device", "cuda"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["mlp-d2-w16-relu-b1-fp32-cuda",
                                         "cnn-d4-w16-relu-b1-fp32-cuda"]
    assert main(["list", str(path), "--json", "-k", "model=cnn", "-k", "mlp*w8*"]) == 0
    names = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
    assert names == ["mlp-d2-w8-relu-b1-fp32-cpu", "cnn-d4-w8-relu-b1-fp32-cpu",
                     "cnn-d4-w16-relu-b1-fp32-cpu"]


def test_bad_suite_exits_2_with_the_message_and_no_traceback(write_suite):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidht = [8]\n')
    done = subprocess.run([sys.executable, "-m", "bench", "run", str(path)], capture_output=True,
                          text=True)
    assert done.returncode == 2
    assert 'sweep[0].widht: unknown key "widht" (did you mean "width"?)' in done.stderr
    assert str(path) in done.stderr and "Traceback" not in done.stderr + done.stdout


@pytest.mark.parametrize("argv", [
    ["list", "nowhere.toml"],
    ["list", "{suite}", "--filter", "nothing-matches-this"],
    ["list", "{suite}", "--set", "nokey"],
    ["list", "{suite}", "--set", "max_time_s=fast"],
    ["run", "{suite}", "--resume"],
])
def test_usage_errors_exit_2(write_suite, capsys, argv):
    path = write_suite('[[sweep]]\nmodel = "mlp"\n')
    assert main([a.format(suite=path) for a in argv]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.slow
def test_run_exit_code_is_1_when_a_case_fails(write_suite, tmp_path, fixtures_dir, capsys):
    path = write_suite(f'[[sweep]]\nmodel = "mlp"\nwidth = [8]\n'
                       f'[[sweep]]\nmodel = "{fixtures_dir}/factories.py:raises"\n')
    assert main(["run", str(path), "--out", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out
    assert "ok mlp-d2-w8-relu-b1-fp32-cpu  median" in out
    assert "one worker: variation between runs not measured" in out
    assert "FAIL raises-b1-fp32-cpu  failed: ValueError: width must be even" in out
    assert "1 ok, 1 failed" in out and str(tmp_path / "run") in out


@pytest.mark.slow
def test_run_exit_code_is_0_with_unsupported_cases(write_suite, tmp_path, capsys):
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8]\ndevice = ["cpu", "cuda"]\n')
    assert main(["run", str(path), "--out", str(tmp_path / "run"), "--max-time", "0.05"]) == 0
    assert "1 ok, 1 unsupported" in capsys.readouterr().out


def test_help_everywhere():
    for argv in (["--help"], ["run", "--help"], ["list", "--help"]):
        done = subprocess.run([sys.executable, "-m", "bench", *argv], capture_output=True,
                              text=True)
        assert done.returncode == 0 and "usage: archbench" in done.stdout
    assert "Exit codes" in subprocess.run([sys.executable, "-m", "bench", "run", "--help"],
                                          capture_output=True, text=True).stdout


@pytest.mark.slow
def test_the_parent_of_a_run_never_imports_torch(write_suite, tmp_path):
    """Workers import torch; the parent must not (seconds per command, and a parent that
    touched CUDA could not fork workers safely)."""
    path = write_suite('[[sweep]]\nmodel = "mlp"\nwidth = [8]\n')
    code = ("import sys\nfrom bench.cli import main\n"
            "rc = main(['run', sys.argv[1], '--out', sys.argv[2]])\n"
            "assert 'torch' not in sys.modules, 'the parent imported torch'\n"
            "sys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 ok" in done.stdout


def test_help_is_fast_because_it_imports_no_numerics():
    code = ("import sys\nfrom bench.cli import build_parser\nbuild_parser()\n"
            "heavy = [m for m in ('torch', 'scipy', 'pandas', 'plotly') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
