"""The gate on cluster runs: cases are matched per node hardware, and a run that mixes
hardware is said to."""

from __future__ import annotations

from dataclasses import replace

from gate_helpers import ENV, lognormal, record, write_run

from bench.env import hardware_hash
from bench.gate.compare import compare_runs, hardware_by_case
from bench.gate.render import env_lines
from bench.results.record import Record

OTHER = {**ENV, "cpu_model": "Other CPU 1"}


def on(node_env: dict, rec: Record, node_id: str = "n1") -> Record:
    return replace(rec, info={**rec.info, "node": {"node_id": node_id,
                                                   "hardware": hardware_hash(node_env)}})


def test_hardware_of_a_case_comes_from_its_nodes_or_the_run():
    local = record("a", lognormal(1.0, 20))
    cluster = on(OTHER, record("b", lognormal(1.0, 20)))
    found = hardware_by_case([local, cluster], ENV)
    assert found == {"id-a": {hardware_hash(ENV)}, "id-b": {hardware_hash(OTHER)}}
    assert hardware_hash({**ENV, "threads": 7}) == hardware_hash(ENV)


def test_cases_measured_on_other_hardware_are_not_compared(tmp_path):
    base = write_run(tmp_path / "base", [record("a", lognormal(1.0, 30)),
                                         record("b", lognormal(1.0, 30))])
    mixed_env = {**ENV, "mixed_hardware": {"n1": {"cpu_model": ENV["cpu_model"]},
                                           "n2": {"cpu_model": OTHER["cpu_model"]}}}
    cand = write_run(tmp_path / "cand",
                     [on(ENV, record("a", lognormal(2.0, 30, seed=1)), "n1"),
                      on(OTHER, record("b", lognormal(2.0, 30, seed=2)), "n2")], env=mixed_env)
    comparison = compare_runs(base, cand)
    by_case = {v.case_id: v for v in comparison.verdicts if v.metric in ("median_ms",
                                                                          "hardware")}
    assert by_case["id-a"].verdict == "regression"  # same hardware: gated as usual
    assert by_case["id-b"].metric == "hardware" and by_case["id-b"].verdict == "inconclusive"
    assert "other hardware" in by_case["id-b"].note
    assert comparison.mixed_hardware == ("cand",)
    assert any("more than one kind of node" in line for line in env_lines(comparison))
