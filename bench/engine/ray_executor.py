"""Run a sweep on a Ray cluster: every case repeat is a Ray task on some node.

The task runs archbench's own node-local engine there (a forkserver worker per case, the case
timeout, crash and OOM isolation, the parent-side samplers) and returns the record; the driver
stores records as they arrive. Ray's worker processes are never the measured process: they
play the part the `archbench run` process plays on one machine.

Noisy neighbours are kept apart with Ray resources, which Ray enforces:

- a GPU case asks for one whole GPU (`num_gpus=1`), so no two timed cases share a device;
  Ray sets `CUDA_VISIBLE_DEVICES` for the task and the case's worker is handed the same value;
- a CPU case asks for a node's `archbench_cpu_slot` resource (1 per node), so by default one
  timed CPU case runs per node; `cpu_slots=N` asks for 1/N of it (N at once, with a warning in
  each record).

The driver sends no more tasks than the cluster has slots, each to a node with a free slot,
preferring for a repeat a node of the same hardware that has not run that case yet (a soft
node affinity: Ray still enforces the resources, assigns the GPU, and moves the task if the
node dies). A node lost mid-case makes Ray run the task again elsewhere, up to `max_retries`
times; after that the repeat is recorded `crashed` with a reason that says so.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import env
from bench.collectors import peaks_cache
from bench.engine.case import probe_torch, run_case
from bench.engine.executor import OnFinished, OnStarted, RunContext
from bench.engine.outcome import Outcome
from bench.engine.process import ProcessBackend
from bench.engine.record import make_record
from bench.errors import BenchError
from bench.results.record import Record
from bench.suite.spec import Case

#: The per-node resource a timed CPU case holds; declare it on every node that runs CPU
#: cases: `ray start ... --resources='{"archbench_cpu_slot": 1}'`.
SLOT_RESOURCE = "archbench_cpu_slot"
INSTALL_HINT = "pip install 'archbench[ray]'"
#: Logs and traces a node sends back with a record, at most (bigger files are left there).
MAX_FILES_BYTES = 32 * 2**20
#: How long node probing and cancellation may take before the driver gives up on a node.
PROBE_TIMEOUT_S = 300.0
CANCEL_GRACE_S = 10.0
#: How far down the plan the driver looks for a repeat that a free node has not run yet.
LOOKAHEAD = 8


def import_ray() -> Any:
    """The `ray` module, or a BenchError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise BenchError(f"--executor ray needs Ray, which is not installed here: "
                         f"{INSTALL_HINT}") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    #: None: start a Ray instance on this machine for the run (RAY_ADDRESS, when set, wins);
    #: "auto": the cluster this machine belongs to; "HOST:PORT": that cluster's head node.
    address: str | None = None
    cpu_slots: int = 1
    #: Times Ray runs a repeat again when its node (or Ray worker) dies under it.
    max_retries: int = 2
    connect_timeout_s: float = 10.0
    #: What a task runs on its node: `(case, repeat, context) -> reply dict`. Module-level,
    #: so Ray ships it by reference; tests and the scaling benchmark pass instant fakes.
    case_runner: Callable[..., dict[str, Any]] | None = None
    #: Resources of the Ray instance started for a run without an address.
    local_num_cpus: int | None = None
    local_num_gpus: int | None = None

    def __post_init__(self) -> None:
        if self.cpu_slots < 1:
            raise BenchError(f"--cpu-slots {self.cpu_slots}: use 1 (the default: one timed CPU "
                             "case per node) or more")
        if self.max_retries < 0:
            raise BenchError(f"max_retries {self.max_retries}: use 0 or more")


@dataclass(frozen=True)
class TaskContext:
    """What every repeat of a run shares, shipped with each task."""

    run_id: str
    search_path: tuple[str, ...] = ()
    #: The record's `device` is a GPU one and the cluster has GPUs: this task holds one.
    gpu: bool = False


# ---- connecting -----------------------------------------------------------------------------
def parse_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BenchError(f"--ray-address {address!r}: use auto, or HOST:PORT of the cluster's "
                         "head node (printed by `ray start --head`, port 6379 by default)")
    return host, int(port)


def check_reachable(address: str, timeout_s: float) -> None:
    """Fail fast and clearly when nothing listens at HOST:PORT (Ray itself would retry for
    a long time before giving up)."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as exc:
        raise BenchError(f"cannot reach the Ray cluster at {address} ({exc}); start it with "
                         f"`ray start --head --port={port}` on {host}, or check --ray-address "
                         "(the head node prints its address)") from None


def connect(options: RayOptions) -> bool:
    """Connect this process to Ray; True when it started (and so must stop) the instance."""
    ray = import_ray()
    address = options.address
    if address not in (None, "local", "auto") and not address.startswith("ray://"):
        check_reachable(address, options.connect_timeout_s)
    if ray.is_initialized():  # a caller (a test, a notebook) connected already: use that
        return False
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": "WARNING"}
    if address in (None, "local") and not os.environ.get("RAY_ADDRESS"):
        kwargs.update(address="local", num_cpus=options.local_num_cpus or os.cpu_count() or 1,
                      resources={SLOT_RESOURCE: 1})
        if options.local_num_gpus is not None:
            kwargs["num_gpus"] = options.local_num_gpus
    else:
        kwargs["address"] = address
    try:
        ray.init(**kwargs)
    except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all mean "no cluster"
        where = address or os.environ.get("RAY_ADDRESS") or "this machine"
        raise BenchError(f"cannot connect to Ray at {where}: {exc}. Start a cluster with "
                         "`ray start --head`, then pass --ray-address auto (on a node of it) or "
                         "--ray-address HOST:PORT") from None
    return True


# ---- nodes ----------------------------------------------------------------------------------
@dataclass
class Node:
    node_id: str
    hostname: str
    address: str
    resources: dict[str, float]
    #: Host and torch environment, read on the node (None until probed or a record arrives).
    env: dict[str, Any] | None = None

    @property
    def cpu_capacity(self) -> float:
        return float(self.resources.get(SLOT_RESOURCE, 0.0))

    @property
    def gpus(self) -> int:
        return int(self.resources.get("GPU", 0))

    @property
    def hardware(self) -> str:
        """Nodes with equal values here are the same hardware (repeats may move between them)."""
        return env.hardware_hash(self.env) if self.env else f"unknown:{self.node_id}"

    def to_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "hostname": self.hostname, "address": self.address,
                "resources": self.resources, "hardware": self.hardware, "env": self.env}


def alive_nodes(ray: Any) -> dict[str, Node]:
    return {n["NodeID"]: Node(node_id=n["NodeID"], hostname=n.get("NodeManagerHostname", ""),
                              address=n.get("NodeManagerAddress", ""),
                              resources=dict(n.get("Resources") or {}))
            for n in ray.nodes() if n.get("Alive")}


# ---- the node side --------------------------------------------------------------------------
class NodeSide:
    """What a Ray worker process keeps between the cases it runs: a forkserver backend whose
    workers measure the cases, and this node's environment (read once)."""

    def __init__(self) -> None:
        # multiprocessing re-runs the parent's main script in every child it starts; here
        # that is Ray's worker script, whose imports cost each case's worker about a second
        # and give it nothing. Without a file to re-run, children start as on one machine.
        sys.modules["__main__"].__dict__.pop("__file__", None)
        self.backend = ProcessBackend("forkserver")
        host = env.host_info()
        host.pop("cuda_visible_devices", None)  # per task, not per node: kept in each record
        self.env: dict[str, Any] = {**host, **probe_torch(self.backend)}
        self.calibrations = peaks_cache.Index(self.env)


_node_side: NodeSide | None = None


def node_side() -> NodeSide:
    global _node_side
    if _node_side is None:
        _node_side = NodeSide()
    return _node_side


def probe_node() -> dict[str, Any]:
    """Task: this node's environment (starts its forkserver, so the first case is quick)."""
    return {"node_id": _ray_node_id(), "env": node_side().env}


def run_repeat(case: Case, repeat: int, context: TaskContext) -> dict[str, Any]:
    """Task: measure one repeat of a case with the node-local engine; the record as a dict,
    with the files the case wrote (log, profiler trace) to store in the driver's run folder."""
    side = node_side()
    node_id = _ray_node_id()
    gpu_ids = _gpu_ids() if context.gpu else []
    environ = {"CUDA_VISIBLE_DEVICES": ",".join(gpu_ids)} if context.gpu else {}
    with tempfile.TemporaryDirectory(prefix="archbench-ray-") as scratch:
        folder = Path(scratch)
        (folder / "logs").mkdir()
        record = run_case(case, side.backend, context.run_id, search_path=context.search_path,
                          log_dir=folder / "logs", run_dir=folder,
                          calibrations=side.calibrations, repeat=repeat, environ=environ)
        files, dropped = _collect_files(folder)
    info = {**record.info, "node": node_summary(node_id, side.env, gpu_ids)}
    host = side.env.get("hostname")
    warnings = [*record.warnings, *(f"{name} ({size} bytes) stayed on node {host}: over the "
                                    f"{MAX_FILES_BYTES} bytes a record may bring back"
                                    for name, size in dropped)]
    record = replace(record, info=info, warnings=tuple(warnings))
    return {"record": record.to_dict(), "files": files, "node_id": node_id, "env": side.env}


def slots_warning(cpu_slots: int) -> str:
    return (f"--cpu-slots {cpu_slots}: up to {cpu_slots} timed CPU cases shared this node and "
            "may have slowed each other down")


def node_summary(node_id: str, node_env: Mapping[str, Any], gpu_ids: Sequence[str]
                 ) -> dict[str, Any]:
    """The part of a node's environment each record carries: where it ran, on what."""
    gpus = list(node_env.get("gpus") or [])
    chosen = [g for g in gpus if str(g.get("index")) in gpu_ids or g.get("uuid") in gpu_ids]
    return {"node_id": node_id, "hostname": node_env.get("hostname"),
            "cpu_model": node_env.get("cpu_model"),
            "gpus": [{k: g.get(k) for k in ("name", "uuid", "driver")} for g in chosen],
            "cuda_visible_devices": ",".join(gpu_ids) if gpu_ids else None,
            "torch_version": node_env.get("torch_version"),
            "cuda_version": node_env.get("cuda_version"),
            "fingerprint": env.fingerprint(node_env),
            "hardware": env.hardware_hash(node_env)}


def _ray_node_id() -> str:
    import ray

    return str(ray.get_runtime_context().get_node_id())


def _gpu_ids() -> list[str]:
    import ray

    return [str(i) for i in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]


def _collect_files(folder: Path) -> tuple[dict[str, bytes], list[tuple[str, int]]]:
    files: dict[str, bytes] = {}
    dropped: list[tuple[str, int]] = []
    budget = MAX_FILES_BYTES
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        size = path.stat().st_size
        name = path.relative_to(folder).as_posix()
        if size == 0:
            continue
        if size > budget:
            dropped.append((name, size))
            continue
        files[name] = path.read_bytes()
        budget -= size
    return files, dropped


# ---- the driver -----------------------------------------------------------------------------
@dataclass
class _InFlight:
    case: Case
    repeat: int
    kind: str
    preferred: str | None
    submitted: float = field(default_factory=time.monotonic)


class RayExecutor:
    """Runs a plan of (case, repeat) on a Ray cluster; see the module docstring."""

    name = "ray"
    isolation = "forkserver"

    def __init__(self, options: RayOptions) -> None:
        self.options = options
        self.ray = import_ray()
        self._owns_instance = connect(options)
        self.nodes: dict[str, Node] = {}
        #: case_id -> node ids its repeats ran (or were sent) on.
        self._case_nodes: dict[str, list[str]] = {}
        #: (node id, kind) -> tasks sent there and not back yet, by our count.
        self._busy: Counter[tuple[str | None, str]] = Counter()
        #: Every node that took part, by id (a lost node stays listed).
        self._seen: dict[str, dict[str, Any]] = {}
        self._refresh_nodes()
        self._has_gpus = any(n.gpus for n in self.nodes.values())

    # -- environment ------------------------------------------------------------------------
    def probe(self) -> dict[str, dict[str, Any]]:
        """Every alive node's environment, read on the node, by node id."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        remote = self.ray.remote(probe_node)
        refs = {node_id: remote.options(num_cpus=0, max_retries=0, scheduling_strategy=
                                        NodeAffinitySchedulingStrategy(node_id, soft=False)
                                        ).remote()
                for node_id in self.nodes}
        ready, _ = self.ray.wait(list(refs.values()), num_returns=len(refs),
                                 timeout=PROBE_TIMEOUT_S)
        for node_id, ref in refs.items():
            if ref in ready:
                # A node that died while probed is left out: its cases go elsewhere.
                with contextlib.suppress(self.ray.exceptions.RayError):
                    self.nodes[node_id].env = self.ray.get(ref)["env"]
        return {node_id: node.to_dict() for node_id, node in self.nodes.items()}

    def environment(self) -> dict[str, Any]:
        """run.json's `env`: the nodes' environment when they all match, else the first
        node's with `mixed_hardware` listing each fingerprint (compare and report say so)."""
        if not any(n.env for n in self.nodes.values()):
            self.probe()
        probed = [n for n in self.nodes.values() if n.env]
        if not probed:
            raise BenchError("no node of the Ray cluster answered the environment probe within "
                             f"{PROBE_TIMEOUT_S:g} s; check `ray status`")
        first = dict(probed[0].env or {})
        kinds = sorted({n.hardware for n in probed})
        if len(kinds) > 1:
            first["mixed_hardware"] = {n.node_id: env.fingerprint(n.env or {}) for n in probed}
        first["hostname"] = ",".join(sorted({str(n.hostname) for n in probed}))
        return first

    def describe(self) -> dict[str, Any]:
        """run.json's `executor` and `nodes` (every node seen: probed, or by its records)."""
        self._seen.update({n.node_id: n.to_dict() for n in self.nodes.values() if n.env})
        return {"executor": {"name": self.name, "address": self.options.address,
                             "cpu_slots": self.options.cpu_slots,
                             "max_retries": self.options.max_retries,
                             "slot_resource": SLOT_RESOURCE},
                "nodes": dict(self._seen)}

    def check(self, cases: Sequence[Case]) -> None:
        """Before a run folder is made: refuse a run some case of which no node can take."""
        self.check_feasible(cases)

    def check_feasible(self, cases: Sequence[Case]) -> None:
        """Refuse, before anything runs, a plan some case of which no node could ever take."""
        counted = [c.name for c in cases if c.settings.counted]
        if counted:
            raise BenchError(f"{counted[0]} counts instructions (measure = \"instructions\"), "
                             "which runs on this machine's counting worker, not on Ray: run "
                             "counted cases without --executor ray")
        kinds = {self._kind(c) for c in cases}
        if "cpu" in kinds and not any(n.cpu_capacity for n in self.nodes.values()):
            raise BenchError(
                f"no node of the Ray cluster has the {SLOT_RESOURCE} resource that keeps timed "
                "CPU cases one per node; start each node with `ray start ... --resources="
                f"'{{\"{SLOT_RESOURCE}\": 1}}'` (GPU cases need no slot)")

    # -- running ----------------------------------------------------------------------------
    def execute(self, plan: Sequence[tuple[Case, int]], run: RunContext,
                started: OnStarted, finished: OnFinished) -> None:
        """Submit the plan (never more at once than the cluster can run, so the preference
        for an unused node is decided when a slot frees) and hand each record to `finished`
        as it arrives. Ctrl-C cancels what is in flight; whatever finished is handed over."""
        self.check_feasible([c for c, _ in plan])
        self._case_nodes.clear()
        context = TaskContext(run_id=run.run_id, search_path=run.search_path)
        remote = self.ray.remote(self.options.case_runner or run_repeat)
        pending = {"cpu": [(i, c, r) for i, (c, r) in enumerate(plan) if self._kind(c) == "cpu"],
                   "gpu": [(i, c, r) for i, (c, r) in enumerate(plan) if self._kind(c) == "gpu"]}
        for queue in pending.values():
            queue.reverse()  # pop() from the end takes them in plan order
        in_flight: dict[Any, _InFlight] = {}
        try:
            while in_flight or any(pending.values()):
                self._maybe_refresh()
                for kind in self._submittable(pending, in_flight):
                    case, repeat, node = self._take(pending[kind], kind)
                    ref, item = self._submit(remote, case, repeat, kind, node, context)
                    in_flight[ref] = item
                    started(case, repeat)
                if not in_flight:
                    self._wait_for_capacity(pending)
                    continue
                ready, _ = self.ray.wait(list(in_flight), num_returns=1, timeout=0.5)
                for ref in ready:
                    finished(*self._record(ref, in_flight.pop(ref), context))
        except BaseException:
            self._cancel(in_flight, context, finished)
            raise

    def close(self) -> None:
        if self._owns_instance:
            self.ray.shutdown()

    # -- internals --------------------------------------------------------------------------
    def _kind(self, case: Case) -> str:
        return "gpu" if case.device_kind == "cuda" and self._has_gpus else "cpu"

    def _capacity(self, kind: str) -> int:
        if kind == "gpu":
            return sum(n.gpus for n in self.nodes.values())
        return sum(int(n.cpu_capacity * self.options.cpu_slots + 1e-9)
                   for n in self.nodes.values())

    def _submittable(self, pending: dict[str, list[tuple[int, Case, int]]],
                     in_flight: dict[Any, _InFlight]) -> list[str]:
        """Kinds to submit one more of, earliest plan position first, until each kind's
        capacity is in flight."""
        out: list[str] = []
        counts = Counter(item.kind for item in in_flight.values())
        heads = {k: list(q) for k, q in pending.items()}
        while True:
            ready = [k for k, q in heads.items() if q and counts[k] < self._capacity(k)]
            if not ready:
                return out
            kind = min(ready, key=lambda k: heads[k][-1][0])
            heads[kind].pop()
            counts[kind] += 1
            out.append(kind)

    def _wait_for_capacity(self, pending: dict[str, list[tuple[int, Case, int]]]) -> None:
        """Nothing can run: every node that could take the remaining cases is gone. Wait for
        one to join (Ctrl-C stops the run; finished records are saved)."""
        kinds = [k for k, q in pending.items() if q]
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while time.monotonic() < deadline:
            time.sleep(1.0)
            self._refresh_nodes()
            if any(self._capacity(k) for k in kinds):
                return
        raise BenchError(f"no node of the Ray cluster can take the remaining {kinds} cases "
                         f"(waited {PROBE_TIMEOUT_S:g} s for one to join); finished cases are "
                         "saved, continue with --resume")

    def _take(self, queue: list[tuple[int, Case, int]], kind: str
              ) -> tuple[Case, int, str | None]:
        """The next repeat to send and its node: of the next few in plan order, the first
        that a free node has not run yet (so repeats spread over nodes); else the next one."""
        for back in range(1, min(len(queue), LOOKAHEAD) + 1):
            _, case, repeat = queue[-back]
            node, unused = self._prefer(case, kind)
            if unused:
                del queue[-back]
                return case, repeat, node
        _, case, repeat = queue.pop()
        return case, repeat, self._prefer(case, kind)[0]

    def _submit(self, remote: Any, case: Case, repeat: int, kind: str, preferred: str | None,
                context: TaskContext) -> tuple[Any, _InFlight]:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options: dict[str, Any] = {"max_retries": self.options.max_retries,
                                   "retry_exceptions": False}
        if kind == "gpu":
            options.update(num_gpus=1, num_cpus=1)
        else:
            options.update(num_cpus=0, resources={SLOT_RESOURCE: 1.0 / self.options.cpu_slots})
        if preferred is not None:
            # Soft: if the node dies, Ray runs (and retries) the task elsewhere. It is free by
            # our count, since no more tasks are out than the cluster has slots.
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(preferred, soft=True)
        task_context = replace(context, gpu=kind == "gpu")
        ref = remote.options(**options).remote(case, repeat, task_context)
        self._busy[(preferred, kind)] += 1
        self._case_nodes.setdefault(case.case_id, []).append(preferred or "")
        return ref, _InFlight(case, repeat, kind, preferred)

    def _prefer(self, case: Case, kind: str) -> tuple[str | None, bool]:
        """A node of the hardware the case's first repeat used, with a free slot by our count,
        that has not run the case (then True) or has run it least."""
        def slots(node: Node) -> float:
            return node.gpus if kind == "gpu" else node.cpu_capacity * self.options.cpu_slots

        nodes = [n for n in self.nodes.values() if slots(n) > 0]
        if not nodes:
            return None, False
        used = self._case_nodes.get(case.case_id, [])
        first = self.nodes.get(used[0]) if used else None
        if first is not None:
            nodes = [n for n in nodes if n.hardware == first.hardware] or nodes
        best = min(nodes, key=lambda n: (self._busy[(n.node_id, kind)] >= slots(n),
                                         used.count(n.node_id),
                                         self._busy[(n.node_id, kind)] / slots(n)))
        free = self._busy[(best.node_id, kind)] < slots(best)
        return best.node_id, free and best.node_id not in used

    def _record(self, ref: Any, item: _InFlight, context: TaskContext
                ) -> tuple[Record, Mapping[str, bytes]]:
        self._busy[(item.preferred, item.kind)] -= 1
        try:
            reply = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            return self._lost(item, context, f"archbench's task failed on its node "
                              f"({type(exc.cause).__name__}: {exc.cause})", str(exc)), {}
        except self.ray.exceptions.RayError as exc:
            retries = self.options.max_retries
            again = (f"so did the {retries} retr{'y' if retries == 1 else 'ies'} Ray ran "
                     "elsewhere" if retries else "retries were off")
            return self._lost(item, context,
                              f"lost: the node or Ray worker running this repeat died "
                              f"({type(exc).__name__}), and {again}; run again with --resume",
                              str(exc)), {}
        record = self._mark(Record.from_dict(reply["record"]), item)
        node_id = str(reply.get("node_id"))
        used = self._case_nodes.setdefault(item.case.case_id, [])
        if item.preferred in used:
            used[used.index(item.preferred)] = node_id  # where it really ran
        if node_id in self.nodes and self.nodes[node_id].env is None:
            self.nodes[node_id].env = reply.get("env")
        if node_id in self.nodes and node_id not in self._seen:
            self._seen[node_id] = self.nodes[node_id].to_dict()
        return record, reply.get("files") or {}

    def _mark(self, record: Record, item: _InFlight) -> Record:
        """How the executor ran the repeat, and the warning --cpu-slots owes each record."""
        warnings = record.warnings
        if item.kind == "cpu" and self.options.cpu_slots > 1:
            warnings = (*warnings, slots_warning(self.options.cpu_slots))
        executor = {"name": "ray", "kind": item.kind, "cpu_slots": self.options.cpu_slots,
                    "preferred_node": item.preferred}
        return replace(record, warnings=warnings, info={**record.info, "executor": executor})

    def _lost(self, item: _InFlight, context: TaskContext, reason: str, detail: str) -> Record:
        used = self._case_nodes.get(item.case.case_id, [])
        if item.preferred in used:
            used.remove(item.preferred)
        now = datetime.now(UTC).isoformat()
        record = make_record(item.case, Outcome(status="crashed", message=reason,
                                                traceback=detail[-4000:]),
                             context.run_id, started_at=now,
                             duration_s=time.monotonic() - item.submitted, repeat=item.repeat)
        return replace(record, info={**record.info, "node": None,
                                     "executor": {"name": "ray", "lost": True,
                                                  "max_retries": self.options.max_retries}})

    def _maybe_refresh(self) -> None:
        if time.monotonic() - self._last_refresh > 2.0:
            self._refresh_nodes()

    def _refresh_nodes(self) -> None:
        fresh = alive_nodes(self.ray)
        for node_id, node in fresh.items():
            if node_id in self.nodes:
                node.env = self.nodes[node_id].env
        for key in [k for k in self._busy if k[0] is not None and k[0] not in fresh]:
            del self._busy[key]  # a dead node's tasks are Ray's to retry elsewhere
        self.nodes = fresh
        self._last_refresh = time.monotonic()

    def _cancel(self, in_flight: dict[Any, _InFlight], context: TaskContext,
                finished: OnFinished) -> None:
        """Ctrl-C: ask every task to stop (its engine stops the case's worker), keep what
        finished meanwhile, then force what is left."""
        if not in_flight:
            return
        refs = list(in_flight)
        for ref in refs:
            self.ray.cancel(ref)
        ready, rest = self.ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)
        for ref in ready:
            try:
                reply = self.ray.get(ref)
            except self.ray.exceptions.RayError:
                continue  # cancelled: this repeat runs again on --resume
            item = in_flight[ref]
            self._busy[(item.preferred, item.kind)] -= 1
            finished(self._mark(Record.from_dict(reply["record"]), item),
                     reply.get("files") or {})
        for ref in rest:
            self.ray.cancel(ref, force=True)
