"""Stand-in case runners for Ray executor tests and the scaling benchmark.

A task that sleeps for the case's `sleep_s` model argument and returns a well-formed record,
noting when and where it ran and which GPUs Ray gave it: scheduling is checked without
measuring anything. Shipped to Ray workers by value (they cannot import the tests folder).
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

from bench.suite.spec import Case

#: The environment every fake node reports (one kind of hardware unless a test says so).
FAKE_ENV = {"hostname": "fake-node", "cpu_model": "Fake CPU", "gpus": [],
            "torch_version": "0.0-fake", "cuda_version": None}


def sleep_case(case: Case, repeat: int, context: Any) -> dict[str, Any]:
    import ray

    from bench.engine.outcome import Outcome
    from bench.engine.record import make_record
    from bench.measure.protocol import Done, Findings

    args = dict(case.model_args)
    started = time.time()
    time.sleep(float(args.get("sleep_s", 0.0)))
    ended = time.time()
    runtime = ray.get_runtime_context()
    node_id = str(runtime.get_node_id())
    gpus = [str(g) for g in runtime.get_accelerator_ids().get("GPU", [])]
    node_env = dict(FAKE_ENV)
    if args.get("env_per_node"):
        node_env["cpu_model"] = f"Fake CPU {node_id[:8]}"
    samples = [1e6 * (1 + 0.01 * i) for i in range(5)]
    record = make_record(case, Outcome(status="ok", done=Done({"samples_ns": samples}, Findings())),
                         context.run_id, started_at=datetime.now(UTC).isoformat(),
                         duration_s=ended - started, repeat=repeat)
    from dataclasses import replace

    info = {**record.info, "node": {"node_id": node_id},
            "fake": {"start": started, "end": ended, "gpus": gpus, "pid": os.getpid(),
                     "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}}
    return {"record": replace(record, info=info).to_dict(), "files": {}, "node_id": node_id,
            "env": node_env}


def fake_case(name: str, sleep_s: float = 0.0, *, device: str = "cpu", repeats: int = 1,
              **args: Any) -> Case:
    from bench.suite.spec import Settings

    return Case(model="mlp", batch_size=1, device=device, depth=1, width=8,
                model_args=tuple(sorted({"name": name, "sleep_s": sleep_s, **args}.items())),
                settings=Settings(repeats=repeats), suite="fake")
