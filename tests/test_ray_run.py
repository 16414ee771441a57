"""`archbench run --executor ray`: errors before anything runs, and a real sweep through Ray
(a Ray instance on this machine, the node-local engine measuring every case) that records the
same cases and statuses as the local engine and resumes like it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.results.store import read_records, read_run


def test_without_ray_the_option_says_how_to_get_it(write_suite, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    path = write_suite('[[sweep]]\nmodel = "mlp"\n')
    assert main(["run", str(path), "--executor", "ray", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'archbench[ray]'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists(), "no run folder for a run that cannot start"


def test_unreachable_cluster_exits_2_at_once(write_suite, tmp_path, capsys):
    pytest.importorskip("ray")
    path = write_suite('[[sweep]]\nmodel = "mlp"\n')
    argv = ["run", str(path), "--executor", "ray", "--ray-address", "127.0.0.1:9",
            "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Ray cluster at 127.0.0.1:9" in err and "ray start --head" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("argv", [["--cpu-slots", "2"], ["--ray-address", "auto"],
                                  ["--executor", "ray", "--cpu-slots", "0"],
                                  ["--executor", "ray", "--isolation", "inline"]])
def test_ray_options_are_checked(write_suite, tmp_path, capsys, argv):
    path = write_suite('[[sweep]]\nmodel = "mlp"\n')
    assert main(["run", str(path), "--out", str(tmp_path / "run"), *argv]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


SUITE = """
[[sweep]]
model = "mlp"
depth = 1
width = [8, 16]
device = ["cpu", "cuda"]
settings = {{ repeats = 2 }}

[[sweep]]
model = "{factories}:raises"
"""


def archbench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", "run", *argv, "--no-report"],
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_a_sweep_through_ray_matches_the_local_engine_and_resumes(write_suite, tmp_path,
                                                                   fixtures_dir):
    pytest.importorskip("ray")
    path = write_suite(SUITE.format(factories=f"{fixtures_dir}/factories.py"))
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert archbench(str(path), "--out", str(local)).returncode == 1  # `raises` fails
    done = archbench(str(path), "--out", str(remote), "--executor", "ray")
    assert done.returncode == 1, done.stderr[-3000:]

    def outcome(run: Path) -> list[tuple[str, int, str, str]]:
        return sorted((r.case_id, r.repeat, r.status, json.dumps(r.params, sort_keys=True))
                      for r in read_records(run / "results.jsonl"))

    assert outcome(remote) == outcome(local)
    assert {s for _, _, s, _ in outcome(remote)} == {"ok", "unsupported", "failed"}
    meta = read_run(remote)
    assert meta["executor"]["name"] == "ray" and meta["status"] == "complete"
    (node_id, node), = meta["nodes"].items()
    assert node["env"]["torch_version"] and node["env"]["cpu_model"]
    for record in read_records(remote / "results.jsonl"):
        assert record.info["node"]["node_id"] == node_id
        assert record.info["node"]["hardware"] == node["hardware"]
        if record.status == "ok":
            assert record.samples_ns and record.info["worker_pid"]

    # A run cut short: drop the last record; --resume measures just that repeat again.
    lines = (remote / "results.jsonl").read_text().splitlines(keepends=True)
    (remote / "results.jsonl").write_text("".join(lines[:-1]))
    dropped = json.loads(lines[-1])
    done = archbench(str(path), "--out", str(remote), "--executor", "ray", "--resume")
    assert done.returncode == (1 if dropped["status"] == "failed" else 0), done.stderr[-3000:]
    assert "resuming: 8 of 9 case(s) already recorded" in done.stdout
    assert outcome(remote) == outcome(local), "every repeat exactly once after the resume"
    last = json.loads((remote / "results.jsonl").read_text().splitlines()[-1])
    assert (last["case_id"], last["repeat"]) == (dropped["case_id"], dropped["repeat"])


def test_pytest_ray_options_are_checked(write_suite, tmp_path):
    path = write_suite('[[sweep]]\nmodel = "mlp"\n')
    done = subprocess.run([sys.executable, "-m", "pytest", str(path), "-p", "no:cacheprovider",
                           "--archbench-cpu-slots", "2"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 4  # pytest's usage error
    assert "--cpu-slots apply to --executor ray only" in done.stderr


@pytest.mark.slow
def test_pytest_measures_suite_cases_on_ray(write_suite, tmp_path):
    pytest.importorskip("ray")
    path = write_suite('[[sweep]]\nmodel = "mlp"\ndepth = 1\nwidth = [8, 16]\n'
                       'device = ["cpu", "cuda"]\n')
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "pytest", str(path), "-p", "no:cacheprovider",
                           "--archbench-executor", "ray", "--archbench-out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "2 passed, 2 skipped" in done.stdout
    assert "archbench: measuring [4/4]" in done.stdout
    assert read_run(out)["executor"]["name"] == "ray"
    assert all(r.info["node"]["node_id"] for r in read_records(out / "results.jsonl"))
