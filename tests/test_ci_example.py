"""examples/ci: the workflow's gate steps, run as a runner would run them, and the tox envs."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import FAST_SETTINGS

from bench.suite import loader as suite_file

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "ci" / "archbench-gate.yml"


def load_workflow() -> dict:
    data = yaml.safe_load(WORKFLOW.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def step(workflow: dict, name: str, job: str | None = None) -> dict:
    """The step of that name: in `job`, or the only one of that name in any job."""
    jobs = [job] if job else list(workflow["jobs"])
    (found,) = [s for j in jobs for s in workflow["jobs"][j]["steps"] if s.get("name") == name]
    return found


def applies(step_: dict, event: str) -> bool:
    condition = step_.get("if")
    if condition is None:
        return True
    match = re.fullmatch(r"github\.event_name == '(\w+)'", condition)
    assert match, f"unexpected condition {condition!r}"
    return match[1] == event


def shell(workflow: dict, found: dict, workdir: Path, summary: Path,
          **env_overrides: str) -> subprocess.CompletedProcess:
    """A step's shell script with the workflow's and the step's env, as a runner runs it
    (bash -e); `${{ ... }}` expressions are given by the test as env overrides."""
    step_env = {k: v for k, v in (found.get("env") or {}).items() if "${{" not in str(v)}
    env = {**os.environ, **workflow["env"], **step_env, **env_overrides,
           "GITHUB_STEP_SUMMARY": str(summary),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-e", "-c", found["run"]], cwd=workdir, env=env,
                          capture_output=True, text=True)


def run_step(workflow: dict, name: str, event: str, workdir: Path, summary: Path) -> int:
    """The step's exit code when the runner runs it on `event`."""
    found = step(workflow, name)
    assert applies(found, event), f"{name} does not run on {event}"
    return shell(workflow, found, workdir, summary).returncode


def test_workflow_structure():
    workflow = load_workflow()
    assert workflow["on"] == {"push": {"branches": ["main"]}, "pull_request": None}
    jobs = workflow["jobs"]
    assert set(jobs) == {"ab", "bench", "counts"}
    # Pull requests are timed by `ab` alone (base and head in one job: nothing crosses
    # runners); the `bench` job keeps main's baseline and history on pushes.
    assert jobs["ab"]["if"] == "github.event_name == 'pull_request'"
    assert jobs["bench"]["if"] == "github.event_name == 'push'"
    for job in jobs.values():
        names = [s["name"] for s in job["steps"] if "name" in s]
        assert len(names) == len(set(names)), f"a step twice: {names}"
        for s in job["steps"]:
            assert "-e ." not in s.get("run", ""), "users install a release, not a checkout"
            if str(s.get("uses", "")).startswith("actions/upload-artifact"):
                assert "${{ github.run_attempt }}" in s["with"]["name"], \
                    "a fixed artifact name fails with 409 when a job is re-run"
    steps = jobs["ab"]["steps"]
    checkout = steps[0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0, "the base commit must be in the clone"
    install = step(workflow, "Install", job="ab")["run"]
    assert 'pip install "archbench==${ARCHBENCH_VERSION}"' in install
    assert "-e ." not in install, "users install a release, not archbench's own checkout"
    assert re.fullmatch(r"\d+\.\d+\.\d+", workflow["env"]["ARCHBENCH_VERSION"])
    ab = step(workflow, "Base and head side by side", job="ab")
    assert ab["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    assert 'archbench ab "$SUITE" --baseline "$BASE_SHA" --candidate .' in ab["run"]
    upload = step(workflow, "Keep the run folders", job="ab")
    assert upload["if"] == "always()"
    assert "${{ github.run_attempt }}" in upload["with"]["name"], \
        "a fixed artifact name fails with 409 when a job is re-run"
    assert not any("cache" in str(s.get("uses", "")) for s in steps)
    # The suite it runs is a valid suite.
    suite = suite_file.load(ROOT / workflow["env"]["SUITE"])
    assert suite.name == "ci" and all(c.device == "cpu" for c in suite.cases)
    assert {c.settings.threads for c in suite.cases} == {1}


MODEL = """\
import torch


def factory(case):
    return torch.nn.Linear({width}, {width}), lambda batch: torch.randn(batch, {width})
"""

SUITE = ('[suite]\nname = "scratch"\n' + FAST_SETTINGS.lstrip("\n") + "threads = 1\n"
         + '[[sweep]]\nmodel = "bench_models.py:factory"\nbatch_size = [1]\n')


@pytest.mark.slow
def test_workflow_steps_on_a_scratch_repository(tmp_path):
    """A user's repository with two commits, the second a bigger model: the workflow's
    gate step measures both in one run and fails on the (exact) parameter regression; the
    same step with the base as candidate passes. Timing is switched off so the verdict does
    not depend on this machine's load."""
    workflow = load_workflow()
    repo = tmp_path / "repo"
    (repo / "bench_suites").mkdir(parents=True)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "bench_suites" / "ci.toml").write_text(SUITE)
    shas = []
    for width in (8, 16):
        (repo / "bench_suites" / "bench_models.py").write_text(MODEL.format(width=width))
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-qm", f"width {width}"], check=True)
        shas.append(subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True,
                                   text=True, check=True).stdout.strip())
    summary = tmp_path / "summary.md"
    options = "--threshold timing=off --min-pairs 2 --max-pairs 2"
    ab = step(workflow, "Base and head side by side", job="ab")
    done = shell(workflow, ab, repo, summary, SUITE="bench_suites/ci.toml", BASE_SHA=shas[0],
                 AB_OPTIONS=options)
    assert done.returncode == 1, done.stderr
    text = summary.read_text()
    # parameters, non-zero parameters, weight bytes and FLOPs: all exact metrics
    assert text.startswith("### archbench compare: 4 regressions")
    assert "| **regression** | factory-b1-fp32-cpu | params_total |" in text
    out = repo / workflow["env"]["OUT"]
    assert (out / "baseline" / "results.jsonl").is_file()
    assert (out / "candidate" / "results.jsonl").is_file()
    assert json.loads((out / "comparison.json").read_text())["cases_compared"] == 1
    # The base against itself: nothing changed, exit 0.
    shutil.rmtree(out)
    same = shell(workflow, ab, repo, summary, SUITE="bench_suites/ci.toml", BASE_SHA=shas[1],
                 AB_OPTIONS=options)
    assert same.returncode == 0, same.stderr
    worktrees = subprocess.run([*git, "worktree", "list"], capture_output=True, text=True)
    assert len(worktrees.stdout.strip().splitlines()) == 1


def test_tox_envs_run_the_suite_and_compare():
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini")
    gate = config["testenv:gate"]["commands"].split("\n")
    save = config["testenv:gate-baseline"]["commands"].split("\n")
    assert "archbench run examples/ci/suite.toml --out {envtmpdir}/run" in gate
    assert "archbench compare {posargs:main} {envtmpdir}/run --threshold 5%" in gate
    assert "archbench baseline save {envtmpdir}/run --name main" in save


def test_counted_job_counts_base_and_head_in_one_run():
    """Counts, like timing, never cross runners: `ab --measure instructions` on pull
    requests, no cached counted baseline."""
    workflow = load_workflow()
    job = workflow["jobs"]["counts"]
    assert job["if"] == "github.event_name == 'pull_request'"
    assert job["steps"][0]["with"]["fetch-depth"] == 0
    assert "valgrind" in step(workflow, "Install", job="counts")["run"]
    counted = step(workflow, "Count base and head side by side", job="counts")
    assert counted["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    assert ('archbench ab "$SUITE" --baseline "$BASE_SHA" --candidate . --measure '
            "instructions") in counted["run"]
    assert not any("cache" in str(s.get("uses", "")) for s in job["steps"])
    # the suite the timed job runs can be counted as it is (one thread, CPU only)
    suite = suite_file.load(ROOT / workflow["env"]["SUITE"],
                            settings_overrides={"measure": "instructions"})
    assert all(c.settings.counted for c in suite.cases)
