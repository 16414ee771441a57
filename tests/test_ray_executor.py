"""The Ray executor's scheduling, failure handling and errors, with instant stand-in cases.

Clusters here are several Ray nodes on this machine (`ray.cluster_utils.Cluster`), kept small
(one or four logical CPUs, 80 MiB object stores) and shut down after each module or test.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.errors import BenchError

ray = pytest.importorskip("ray")

import ray_fakes  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from bench.engine.executor import RunContext  # noqa: E402
from bench.engine.ray_executor import (  # noqa: E402
    SLOT_RESOURCE,
    RayExecutor,
    RayOptions,
    check_reachable,
    connect,
)
from bench.results.record import Record  # noqa: E402

ray.cloudpickle.register_pickle_by_value(ray_fakes)
NODE_ARGS: dict[str, Any] = {"object_store_memory": 80 * 2**20}
RUN = RunContext(run_id="t", run_dir=Path("."))


def start_cluster(*workers: dict[str, Any]) -> tuple[Cluster, list[Any]]:
    assert not ray.is_initialized(), "connected to another cluster: this test would use it"
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {SLOT_RESOURCE: 1}, "include_dashboard": False,
        **NODE_ARGS})
    nodes = [cluster.add_node(**{**NODE_ARGS, **w}) for w in workers]
    cluster.connect()
    return cluster, nodes


def stop_cluster(cluster: Cluster) -> None:
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[Cluster]:
    """A head with one CPU slot and a node with one CPU slot and four (declared) GPUs."""
    cluster, _ = start_cluster({"num_cpus": 4, "num_gpus": 4, "resources": {SLOT_RESOURCE: 1}})
    yield cluster
    stop_cluster(cluster)


def run_plan(executor: RayExecutor, plan: list[tuple[Any, int]],
             started: Any = lambda case, repeat: None) -> list[Record]:
    records: list[Record] = []
    executor.execute(plan, RUN, started,
                     lambda record, files: records.append(record))
    return records


def overlaps(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one time."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


# ---- errors before anything runs ---------------------------------------------------------------
def test_without_ray_the_option_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(BenchError, match=r"pip install 'archbench\[ray\]'"):
        connect(RayOptions())


def test_unreachable_address_is_a_clear_error_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(BenchError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:9.*"
                                         r"ray start --head"):
        connect(RayOptions(address="127.0.0.1:9", connect_timeout_s=2))
    assert time.monotonic() - started < 5
    with pytest.raises(BenchError, match="HOST:PORT"):
        check_reachable("no-port-here", 1)


def test_bad_options_are_refused() -> None:
    with pytest.raises(BenchError, match="cpu-slots 0"):
        RayOptions(cpu_slots=0)


# ---- tests with a cluster of their own (before the module's shared one starts) ----------
@pytest.mark.slow
def test_cpu_cases_need_a_slot_somewhere() -> None:
    assert not ray.is_initialized()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1,
                                                            "include_dashboard": False,
                                                            **NODE_ARGS})
    cluster.connect()
    try:
        executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case))
        with pytest.raises(BenchError, match=SLOT_RESOURCE):
            run_plan(executor, [(ray_fakes.fake_case("a"), 0)])
    finally:
        stop_cluster(cluster)


@pytest.mark.slow
def test_a_lost_node_is_retried_elsewhere_then_recorded_once() -> None:
    cluster, (doomed,) = start_cluster({"num_cpus": 1, "resources": {SLOT_RESOURCE: 1}})
    plan = [(ray_fakes.fake_case(f"k{i}", 2.0), 0) for i in range(3)]

    def run_losing(node: Any, max_retries: int) -> list[Record]:
        """Run the plan; 1 s in (both nodes busy with a case), `node` is removed."""
        executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case,
                                          max_retries=max_retries))
        executor.probe()
        kill = threading.Timer(1.0, cluster.remove_node, args=(node,))
        records = run_plan(executor, plan, started=lambda c, r: kill.ident is None and kill.start())
        kill.join()
        assert sorted(r.case_id for r in records) == sorted(c.case_id for c, _ in plan), \
            "every repeat recorded exactly once"
        return records

    try:
        records = run_losing(doomed, max_retries=1)
        assert all(r.status == "ok" for r in records), [r.reason for r in records]
        ran_on = {r.info["node"]["node_id"] for r in records}
        assert doomed.node_id not in ran_on, "a repeat the lost node took was kept from it"
        moved = [r for r in records if r.info["executor"]["preferred_node"] == doomed.node_id]
        assert moved, "the lost node's case was retried elsewhere"

        second = cluster.add_node(num_cpus=1, resources={SLOT_RESOURCE: 1}, **NODE_ARGS)
        records = run_losing(second, max_retries=0)
        lost = [r for r in records if r.status != "ok"]
        assert len(lost) == 1, [r.reason for r in records]
        assert lost[0].status == "crashed" and (lost[0].reason or "").startswith("lost:")
        assert lost[0].info["executor"]["lost"] and lost[0].info["node"] is None
    finally:
        stop_cluster(cluster)


# ---- scheduling --------------------------------------------------------------------------------
@pytest.mark.slow
def test_one_timed_cpu_case_per_node_and_whole_gpus(two_nodes: Cluster) -> None:
    executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case))
    nodes = executor.probe()
    assert len(nodes) == 2
    cpu = [(ray_fakes.fake_case(f"c{i}", 0.3, repeats=2), r) for r in range(2) for i in range(4)]
    gpu = [(ray_fakes.fake_case(f"g{i}", 0.4, device="cuda"), 0) for i in range(8)]
    records = run_plan(executor, cpu + gpu)
    assert sorted((r.case_id, r.repeat) for r in records) == sorted(
        (c.case_id, r) for c, r in cpu + gpu)
    by_node: dict[str, list[tuple[float, float]]] = defaultdict(list)
    by_gpu: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        fake = record.info["fake"]
        span = (fake["start"], fake["end"])
        node = record.info["node"]["node_id"]
        if record.params["device"] == "cpu":
            assert fake["gpus"] == [] and record.info["executor"]["kind"] == "cpu"
            by_node[node].append(span)
        else:
            assert len(fake["gpus"]) == 1, "a GPU case holds exactly one whole GPU"
            assert fake["cuda_visible_devices"] == fake["gpus"][0]
            by_gpu[(node, fake["gpus"][0])].append(span)
    assert all(overlaps(spans) == 1 for spans in by_node.values()), "two CPU cases on a node"
    assert all(overlaps(spans) == 1 for spans in by_gpu.values()), "two cases on one GPU"
    assert len(by_gpu) > 1
    assert overlaps([s for spans in by_gpu.values() for s in spans]) > 1, "GPUs used in turn"


@pytest.mark.slow
def test_repeats_of_a_case_spread_over_nodes(two_nodes: Cluster) -> None:
    executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case))
    executor.probe()
    run_plan(executor, [(ray_fakes.fake_case(f"w{i}", 0.0), 0) for i in range(4)])  # warm
    plan = [(ray_fakes.fake_case(f"c{i}", 0.3, repeats=2), r) for r in range(2) for i in range(4)]
    nodes_of: dict[str, set[str]] = defaultdict(set)
    for record in run_plan(executor, plan):
        nodes_of[record.case_id].add(record.info["node"]["node_id"])
    assert all(len(n) == 2 for n in nodes_of.values()), nodes_of


@pytest.mark.slow
def test_cpu_slots_allow_more_per_node_and_say_so(two_nodes: Cluster) -> None:
    executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case, cpu_slots=2))
    # Long enough cases that a node's second Ray worker has started before the first is done.
    records = run_plan(executor, [(ray_fakes.fake_case(f"s{i}", 1.5), 0) for i in range(8)])
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        spans[record.info["node"]["node_id"]].append((record.info["fake"]["start"],
                                                      record.info["fake"]["end"]))
        assert any("--cpu-slots 2" in w for w in record.warnings)
    most = {node[:8]: overlaps(s) for node, s in spans.items()}
    assert max(most.values()) == 2, most


@pytest.mark.slow
def test_interrupt_cancels_what_is_in_flight(two_nodes: Cluster) -> None:
    executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case))
    plan = [(ray_fakes.fake_case(f"i{i}", 0.2 if i == 0 else 30.0), 0) for i in range(6)]
    records: list[Record] = []

    def finished(record: Record, files: Any) -> None:
        records.append(record)
        if len(records) == 1:
            raise KeyboardInterrupt

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        executor.execute(plan, RUN, lambda c, r: None, finished)
    assert time.monotonic() - started < 25, "in-flight 30 s cases were not cancelled"
    assert [r.case_id for r in records] == [plan[0][0].case_id]
    # The slots are free again: a new case starts at once.
    assert run_plan(executor, [(ray_fakes.fake_case("after", 0.0), 0)])[0].status == "ok"


@pytest.mark.slow
def test_counted_cases_stay_on_this_machine(two_nodes: Cluster) -> None:
    from dataclasses import replace

    from bench.suite.spec import Settings

    executor = RayExecutor(RayOptions(case_runner=ray_fakes.sleep_case))
    counted = replace(ray_fakes.fake_case("n"), settings=Settings(measure="instructions"))
    with pytest.raises(BenchError, match=r"counts instructions.*without --executor ray"):
        executor.check([ray_fakes.fake_case("t"), counted])
    executor.check([ray_fakes.fake_case("t")])
