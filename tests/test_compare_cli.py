"""`archbench compare` and `archbench baseline`: exit codes, outputs, named baselines."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from gate_helpers import ENV, lognormal, record, write_run

from bench.cli import main


@pytest.fixture
def runs(tmp_path):
    """base; same (noise only); slower (one case 20% slower, one unchanged); other machine."""
    def case_pair(seed, factor=1.0):
        return [record("mlp-a", lognormal(10 * factor, 60, seed=seed),
                       metrics={"params_total": 1000, "peak_rss_bytes": 1e8}),
                record("cnn-b", lognormal(3, 60, seed=seed + 1), metrics={"params_total": 50})]

    return {
        "base": write_run(tmp_path / "base", case_pair(1)),
        "same": write_run(tmp_path / "same", case_pair(10)),
        "slower": write_run(tmp_path / "slower", [case_pair(20, 1.2)[0], case_pair(21)[1]]),
        "elsewhere": write_run(tmp_path / "elsewhere", case_pair(30),
                               env={**ENV, "torch_version": "2.12.0+cpu"}),
        "unrelated": write_run(tmp_path / "unrelated", [record("x", lognormal(1, 20))]),
    }


def test_exit_0_without_regression_and_1_with_one(runs, capsys):
    assert main(["compare", str(runs["base"]), str(runs["same"])]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out and "mlp-a" in out and "cnn-b" in out
    assert main(["compare", str(runs["base"]), str(runs["slower"])]) == 1
    out = capsys.readouterr().out
    assert "1 regression" in out and "+20" in out


@pytest.mark.parametrize("argv", [
    ["compare", "{base}", "{elsewhere}"],                   # environments differ
    ["compare", "{base}", "{unrelated}"],                   # no case in common
    ["compare", "{base}", "no-such-baseline"],              # neither a folder nor a name
    ["compare", "{base}", "{same}", "--threshold", "5"],    # a threshold without its unit
    ["compare", "{base}", "{same}", "--alpha", "2"],
    ["compare", "{base}"],                                  # argparse usage error
    ["baseline", "save", "{base}", "--name", "../escape"],
    ["baseline", "save", "{tmp}/not-a-run", "--name", "x"],
])
def test_exit_2_on_usage_or_input_errors(runs, tmp_path, capsys, argv):
    args = [a.format(tmp=tmp_path, **{k: str(v) for k, v in runs.items()}) for a in argv]
    with_usage_exit = argv == ["compare", "{base}"]
    if with_usage_exit:
        with pytest.raises(SystemExit) as caught:
            main(args)
        assert caught.value.code == 2
        return
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_env_mismatch_refused_with_reason_then_allowed_and_said(runs, capsys):
    assert main(["compare", str(runs["base"]), str(runs["elsewhere"])]) == 2
    err = capsys.readouterr().err
    assert "torch_version" in err and "2.13.0+cpu" in err and "--allow-env-mismatch" in err
    assert main(["compare", str(runs["base"]), str(runs["elsewhere"]),
                 "--allow-env-mismatch"]) == 0
    out = capsys.readouterr().out
    assert "Environments differ" in out and "compared anyway" in out
    assert main(["compare", str(runs["base"]), str(runs["elsewhere"]), "--allow-env-mismatch",
                 "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["env_mismatch"] == {"torch_version": {"baseline": "2.13.0+cpu",
                                                      "candidate": "2.12.0+cpu"}}


def test_json_output(runs, capsys):
    assert main(["compare", str(runs["base"]), str(runs["slower"]), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["regression"] is True and data["correction"] == "holm"
    timing = {v["name"]: v for v in data["verdicts"] if v["metric"] == "median_ms"}
    assert timing["mlp-a"]["verdict"] == "regression"
    assert timing["cnn-b"]["verdict"] == "same"
    assert timing["mlp-a"]["n_baseline"] == 60 and timing["mlp-a"]["p_adjusted"] < 1e-6


def test_markdown_printed_and_appended_to_the_step_summary(runs, tmp_path, capsys,
                                                           monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert main(["compare", str(runs["base"]), str(runs["slower"]), "--markdown"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("### archbench compare: 1 regression")
    assert "| verdict | case | metric | baseline | candidate | change | 95% CI |" in out
    assert "| **regression** | mlp-a | median_ms |" in out
    # The unchanged timing case is listed; unchanged scalar metrics are summarised.
    assert "| same | cnn-b | median_ms |" in out and "other metric(s) unchanged" in out
    text = summary.read_text()
    assert text.startswith("earlier step\n") and out in text
    # A refusal reaches the summary too, so the pull request says why the gate stopped.
    assert main(["compare", str(runs["base"]), str(runs["elsewhere"]), "--markdown"]) == 2
    assert "### archbench compare: refused" in summary.read_text()


def test_markdown_without_summary_file(runs, capsys, monkeypatch):
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    assert main(["compare", str(runs["base"]), str(runs["same"]), "--markdown", "--all"]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out and "| same | mlp-a | params_total |" in out


def test_baseline_save_list_and_compare_by_name(runs, tmp_path, capsys, monkeypatch):
    store = tmp_path / "baselines"
    monkeypatch.setenv("ARCHBENCH_BASELINES", str(store))
    assert main(["baseline", "list"]) == 0
    assert "no baselines" in capsys.readouterr().out
    assert main(["baseline", "save", str(runs["base"]), "--name", "main"]) == 0
    assert "saved baseline main: run base, 2 case(s)" in capsys.readouterr().out
    assert (store / "main" / "results.jsonl").is_file()
    assert json.loads((store / "main" / "baseline.json").read_text())["run_id"] == "base"
    assert main(["compare", "main", str(runs["slower"])]) == 1
    assert "baseline main (baseline)" in capsys.readouterr().out
    # Saving again replaces the baseline in one step.
    assert main(["baseline", "save", str(runs["slower"]), "--name", "main"]) == 0
    assert "replaced run base" in capsys.readouterr().out
    assert main(["compare", "main", str(runs["slower"])]) == 0
    capsys.readouterr()
    # An explicit folder wins over the environment variable.
    other = tmp_path / "other"
    assert main(["baseline", "save", str(runs["same"]), "--name", "pr-1",
                 "--baselines-dir", str(other)]) == 0
    assert main(["baseline", "list", "--json", "--baselines-dir", str(other)]) == 0
    listed = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert [(b["name"], b["run_id"], b["cases"]) for b in listed] == [("pr-1", "same", 2)]
    assert main(["baseline", "list"]) == 0
    assert "main" in capsys.readouterr().out


def test_compare_help_names_exit_codes():
    done = subprocess.run([sys.executable, "-m", "bench", "compare", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0
    assert "Exit codes: 0 no regression; 1 a regression; 2 bad usage" in " ".join(
        done.stdout.split())
