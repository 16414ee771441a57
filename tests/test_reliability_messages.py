"""What a user reads when something goes wrong: literal, unwrapped, naming path and fix."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

# pytester's in-process runs drop every module a run imported; torch._dynamo's op library
# cannot be imported twice (see test_pytest_plugin).
import torch._dynamo  # noqa: F401

from bench.cli import main
from bench.cli.console import console, error_console, say
from bench.engine.process import crash_excerpt
from bench.engine.runner import resume_command
from bench.errors import FileProblem
from bench.files import problem, read_text

pytest_plugins = ["pytester"]


@pytest.fixture
def narrow_terminal(monkeypatch):
    """A 40-column terminal, with consoles made for it (and dropped after: they are cached)."""
    monkeypatch.setenv("COLUMNS", "40")
    console.cache_clear()
    error_console.cache_clear()
    yield
    console.cache_clear()
    error_console.cache_clear()


def test_messages_reach_the_terminal_literally_and_unwrapped(capsys, narrow_terminal):
    assert console().width == 40
    text = ("Set `repeats = 5` in the suite's [settings] for a gate :warning: [bold]x[/] "
            "archbench run 'my suites/a.toml' --resume --out reports/runs/20261130-a-long-name")
    say(("warning:", "yellow"), " ", text)
    say(text, err=True)
    out, err = capsys.readouterr()
    assert out == f"warning: {text}\n"
    assert err == f"{text}\n"


def test_the_drift_warning_names_settings(tmp_path, capsys):
    """The compare warning that rich markup used to cut to "in the suite's  for a gate"."""
    run = tmp_path / "run"
    run.mkdir()
    record = {"run_id": "r", "case_id": "c1", "name": "mlp", "suite": "s", "status": "ok",
              "params": {"model": "mlp", "batch_size": 1}, "settings": {},
              "timing": {"samples_ns": [1000.0 + i for i in range(20)]}}
    (run / "results.jsonl").write_text(json.dumps(record) + "\n")
    (run / "run.json").write_text(json.dumps({"run_id": "r", "env": {"hostname": "h"}}))
    main(["compare", str(run), str(run)])
    assert "in the suite's [settings] for a gate" in capsys.readouterr().out


def test_the_resume_command_is_the_original_one_quoted_for_pasting():
    command = ["archbench", "run", "my suites/a.toml", "b.toml", "--set", "threads=2",
               "--out", "old", "-k", "mlp*", "--resume"]
    text = resume_command([], command, Path("reports/runs/x y"))
    assert shlex.split(text) == ["archbench", "run", "my suites/a.toml", "b.toml", "--set",
                                 "threads=2", "-k", "mlp*", "--resume", "--out",
                                 "reports/runs/x y"]


@pytest.mark.parametrize(("fault", "expected"), [
    (PermissionError(13, "Permission denied", "/ro/run"),
     "/ro/run: Permission denied; check the permissions"),
    (OSError(28, "No space left on device", "/full/results.jsonl"),
     "/full/results.jsonl: No space left on device; the disk is full"),
    (OSError(30, "Read-only file system", "/mnt/run"), "/mnt/run: Read-only file system;"),
    (NotADirectoryError(20, "Not a directory", "f/x"), "f/x: Not a directory; a part of"),
    (OSError(27, "File too large", "r/results.jsonl"), "r/results.jsonl: File too large; "),
])
def test_file_system_errors_are_worded_in_one_place(fault, expected):
    assert str(problem(fault)).startswith(expected)


def test_undecodable_bytes_name_the_file_and_the_byte(tmp_path):
    path = tmp_path / "run.json"
    path.write_bytes(b'{"a": "\xff"}')
    with pytest.raises(FileProblem, match=r"run\.json: not UTF-8 text \(byte 7"):
        read_text(path)


@pytest.mark.parametrize("command", ["report", "compare"])
def test_commands_on_damaged_bytes_exit_2_with_the_path(tmp_path, capsys, command):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_bytes(b"\xff\xfe\n")
    (run / "run.json").write_text(json.dumps({"run_id": "r", "env": {"hostname": "h"}}))
    args = [command, str(run)] + ([str(run)] if command == "compare" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{run / 'results.jsonl'}: not UTF-8 text" in err


FATAL = """before the crash
Fatal Python error: Segmentation fault

Thread 0x00007f0000000001 (most recent call first):
  File "/usr/lib/python3.11/threading.py", line 320 in wait

Current thread 0x00007f0000000002 (most recent call first):
  File "/home/me/nets.py", line 12 in forward
  File "/home/me/nets.py", line 30 in make

Extension modules: """ + ", ".join(f"torch._C._mod{i}" for i in range(400)) + " (total: 400)\n"


def test_a_crash_record_keeps_the_crashing_frames_first():
    excerpt = crash_excerpt(FATAL, limit=400)
    assert "Extension modules" not in excerpt
    assert excerpt.index("Current thread") < excerpt.index("Thread 0x00007f0000000001")
    assert 'nets.py", line 12 in forward' in excerpt and len(excerpt) <= 400


def test_a_watchdog_dump_is_kept_like_a_crash():
    log = ("Timeout (0:05:05)!\nCurrent thread 0x00007f0000000002 (most recent call first):\n"
           '  File "/home/me/nets.py", line 7 in make\n')
    assert 'nets.py", line 7 in make' in crash_excerpt(log)


FIXTURE_ERRORS = """
import torch

def test_window(archbench):
    archbench(torch.nn.Linear(4, 2), torch.randn(2, 4), max_time_s=0.05)

def test_device(archbench):
    archbench(torch.nn.Linear(4, 2), torch.randn(2, 4), device="cuda:\\u0663")
"""


def test_fixture_setting_errors_fail_the_test_without_a_traceback(pytester):
    pytester.makepyfile(test_bad=FIXTURE_ERRORS)
    result = pytester.runpytest("--archbench-out", str(pytester.path / "run"))
    result.assert_outcomes(failed=2)
    text = result.stdout.str()
    assert "max_time_s = 0.05 (settings) is below min_time_s = 0.1 (default)" in text
    assert 'unknown device "cuda:٣"' in text
    assert "bench/" not in text and "Traceback" not in text
