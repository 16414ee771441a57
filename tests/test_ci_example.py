"""examples/ci: the workflow's gate steps, run as a runner would run them, and the tox envs."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gate_helpers import lognormal, record, write_run

from bench.suite import loader as suite_file

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "ci" / "archbench-gate.yml"


def load_workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def step(workflow: dict, name: str) -> dict:
    (found,) = [s for s in workflow["jobs"]["bench"]["steps"] if s.get("name") == name]
    return found


def applies(step_: dict, event: str) -> bool:
    condition = step_.get("if")
    if condition is None:
        return True
    match = re.fullmatch(r"github\.event_name == '(\w+)'", condition)
    assert match, f"unexpected condition {condition!r}"
    return match[1] == event


def run_step(workflow: dict, name: str, event: str, workdir: Path, summary: Path) -> int:
    """The step's shell script with the workflow's env, as a runner runs it (bash -e)."""
    found = step(workflow, name)
    assert applies(found, event), f"{name} does not run on {event}"
    env = {**os.environ, **workflow["env"], "GITHUB_STEP_SUMMARY": str(summary),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-e", "-c", found["run"]], cwd=workdir, env=env,
                          capture_output=True, text=True)
    return done.returncode


def test_workflow_structure():
    workflow = load_workflow()
    assert workflow["on"] == {"push": {"branches": ["main"]}, "pull_request": None}
    names = [s.get("name") for s in workflow["jobs"]["bench"]["steps"]]
    order = ["Restore the main branch's baseline", "Run the suite", "Compare with main",
             "Save the baseline", "Store the baseline in the cache"]
    assert [n for n in names if n in order] == order
    restore = step(workflow, "Restore the main branch's baseline")
    store = step(workflow, "Store the baseline in the cache")
    assert restore["uses"].startswith("actions/cache/restore@")
    assert store["uses"].startswith("actions/cache/save@")
    assert restore["with"]["path"] == store["with"]["path"] == workflow["env"][
        "ARCHBENCH_BASELINES"]
    assert store["with"]["key"].startswith(restore["with"]["restore-keys"])
    assert applies(restore, "pull_request") and not applies(restore, "push")
    assert applies(store, "push") and not applies(store, "pull_request")
    # The suite it runs is a valid suite.
    suite = suite_file.load(ROOT / workflow["env"]["SUITE"])
    assert suite.name == "ci" and all(c.device == "cpu" for c in suite.cases)
    assert {c.settings.threads for c in suite.cases} == {1}


def test_workflow_gate_steps_end_to_end(tmp_path):
    workflow = load_workflow()
    run_dir = tmp_path / workflow["env"]["RUN_DIR"]
    summary = tmp_path / "summary.md"

    def measured(factor: float, seed: int) -> None:
        shutil.rmtree(run_dir, ignore_errors=True)
        write_run(run_dir, [record("mlp-a", lognormal(10 * factor, 60, seed=seed)),
                            record("cnn-b", lognormal(4, 60, seed=seed + 1))])

    # A pull request before main ever saved a baseline: a note, not a failure.
    measured(1.0, 1)
    assert run_step(workflow, "Compare with main", "pull_request", tmp_path, summary) == 0
    assert "no baseline yet" in summary.read_text()

    # main: the run becomes the baseline (then travels through the cache).
    assert run_step(workflow, "Save the baseline", "push", tmp_path, summary) == 0
    assert (tmp_path / workflow["env"]["ARCHBENCH_BASELINES"] / "main" / "run.json").is_file()

    # A pull request with noise only passes; one with a slower case fails the job.
    measured(1.0, 10)
    assert run_step(workflow, "Compare with main", "pull_request", tmp_path, summary) == 0
    assert "### archbench compare: no regression" in summary.read_text()
    measured(1.2, 20)
    assert run_step(workflow, "Compare with main", "pull_request", tmp_path, summary) == 1
    text = summary.read_text()
    assert "### archbench compare: 1 regression" in text
    assert "| **regression** | mlp-a | median_ms |" in text


def test_tox_envs_run_the_suite_and_compare():
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini")
    gate = config["testenv:gate"]["commands"].split("\n")
    save = config["testenv:gate-baseline"]["commands"].split("\n")
    assert "archbench run examples/ci/suite.toml --out {envtmpdir}/run" in gate
    assert "archbench compare {posargs:main} {envtmpdir}/run --threshold 5%" in gate
    assert "archbench baseline save {envtmpdir}/run --name main" in save


def test_counted_job_counts_the_same_suite_into_its_own_baseline():
    workflow = load_workflow()
    job = workflow["jobs"]["counts"]
    steps = {s.get("name"): s for s in job["steps"]}
    assert "valgrind" in steps["Install"]["run"]
    assert "--measure instructions" in steps["Count the suite"]["run"]
    assert "--set repeats=1" in steps["Count the suite"]["run"]
    assert "main-counts" in steps["Compare with main"]["run"]
    assert "--name main-counts" in steps["Save the baseline"]["run"]
    restore = steps["Restore the main branch's counts"]
    store = steps["Store the baseline in the cache"]
    assert store["with"]["key"].startswith(restore["with"]["restore-keys"])
    timed = step(workflow, "Store the baseline in the cache")["with"]["key"]
    assert not timed.startswith(restore["with"]["restore-keys"])  # caches do not mix
    # the suite the timed job runs can be counted as it is (one thread, CPU only)
    suite = suite_file.load(ROOT / workflow["env"]["SUITE"],
                            settings_overrides={"measure": "instructions", "repeats": 1})
    assert all(c.settings.counted for c in suite.cases)
