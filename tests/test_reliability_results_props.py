"""Property tests of the results reader: damaged record files and run.json.

Whatever the bytes, reading a run folder (`bench.load`, `read_run`, `load_run`) returns data
or raises a `BenchError` naming the file; never another exception. A torn last line (a run
killed mid-write) costs that line only: every finished record is still read.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.errors import BenchError, BenchWarning, FileProblem, ResultsError
from bench.results import load
from bench.results.record import Record
from bench.results.store import RESULTS_FILE, RUN_FILE, load_run, read_records, read_run

PROPS = settings(max_examples=150, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


def record(case: str, status: str = "ok", samples: int = 12) -> dict[str, Any]:
    return Record(
        run_id="r", case_id=case, name=f"mlp-{case}", suite="s", status=status,
        params={"model": "mlp", "depth": 2, "width": 8, "batch_size": 4,
                "prune": {"method": "none"}, "model_args": {}},
        settings={"confidence": 0.95, "target_ci": 0.01, "repeats": 1},
        timing={"samples_ns": [1000.0 + i for i in range(samples)], "block_size": 1,
                "warmup_iters": 2, "measure_ns": 5e6, "target_met": True}
        if status == "ok" else None,
        metrics={"params_total": 100, "peak_rss_bytes": 10**6},
        reason=None if status == "ok" else "boom",
    ).to_dict()


RUN_META = {"schema_version": 1, "run_id": "r", "status": "complete",
            "env": {"hostname": "h", "cpu_model": "c", "torch_version": "2.13.0"}}

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-2**70, max_value=2**70),
              st.floats(allow_nan=False), st.text(max_size=6)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                               max_size=3),
    max_leaves=6)
FIELDS = ["run_id", "case_id", "name", "suite", "status", "params", "settings", "timing",
          "metrics", "info", "warnings", "repeat", "duration_s", "schema_version",
          "params.batch_size", "params.depth", "params.prune", "params.prune.ratio",
          "settings.confidence", "timing.samples_ns", "timing.samples_ns.0",
          "timing.block_size", "timing.measure_ns", "metrics.params_total",
          "metrics.peak_rss_bytes", "info.telemetry"]
RAW_NUMBERS = ["1e400", "-1e400", "1" * 5000, "NaN", "Infinity", "[" * 50_000, '"\\ud800"']


def write_run(folder: Path, lines: list[bytes], meta: bytes | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RESULTS_FILE).write_bytes(b"".join(lines))
    (folder / RUN_FILE).write_bytes(meta if meta is not None else json.dumps(RUN_META).encode())
    return folder


def line(data: Any) -> bytes:
    return json.dumps(data).encode() + b"\n"


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = data
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if not isinstance(target, (dict, list)):
            return
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


def read_everything(folder: Path) -> None:
    """Everything a user does with a run folder's files; only BenchError may escape."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BenchWarning)
        for read in (lambda: load(folder), lambda: read_run(folder), lambda: load_run(folder),
                     lambda: list(read_records(folder / RESULTS_FILE))):
            try:
                read()
            except BenchError as exc:
                assert str(exc)


@PROPS
@given(path=st.sampled_from(FIELDS), value=json_values)
def test_a_field_of_the_wrong_type_is_an_error_naming_the_line(tmp_path: Path, path: str,
                                                                value: Any) -> None:
    damaged = record("b")
    set_path(damaged, path, value)
    folder = write_run(tmp_path / "run", [line(record("a")), line(damaged), line(record("c"))])
    read_everything(folder)


@PROPS
@given(path=st.sampled_from(FIELDS), raw=st.sampled_from(RAW_NUMBERS))
def test_raw_json_damage_is_an_error(tmp_path: Path, path: str, raw: str) -> None:
    damaged = record("b")
    set_path(damaged, path, "__X__")
    text = json.dumps(damaged).replace('"__X__"', raw)
    folder = write_run(tmp_path / "run", [line(record("a")), text.encode() + b"\n"])
    read_everything(folder)


@PROPS
@given(edits=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255),
                                st.integers(0, 2)), min_size=1, max_size=4),
       target=st.sampled_from([RESULTS_FILE, RUN_FILE]))
def test_byte_damage_anywhere_is_an_error(tmp_path: Path, edits: list[tuple[int, int, int]],
                                          target: str) -> None:
    files = {RESULTS_FILE: bytearray(b"".join(line(record(c)) for c in "abc")),
             RUN_FILE: bytearray(json.dumps(RUN_META).encode())}
    data = files[target]
    for position, byte, kind in edits:
        at = position % (len(data) + 1)
        if kind == 0:
            data.insert(at, byte)
        elif at < len(data):
            data[at] = byte
        if kind == 2:
            del data[at:]
    folder = write_run(tmp_path / "run", [bytes(files[RESULTS_FILE])], bytes(files[RUN_FILE]))
    read_everything(folder)


@PROPS
@given(meta=json_values)
def test_any_run_json_value_is_read_or_refused(tmp_path: Path, meta: Any) -> None:
    folder = write_run(tmp_path / "run", [line(record("a"))], json.dumps(meta).encode())
    read_everything(folder)


@PROPS
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_a_torn_last_line_keeps_every_finished_record(tmp_path: Path, cut: int) -> None:
    finished = [line(record(c)) for c in "abcd"]
    torn = line(record("e"))
    folder = write_run(tmp_path / "run", [*finished, torn[: cut % (len(torn) - 1)]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BenchWarning)
        frame = load(folder)
    assert list(frame["case_id"]) == list("abcd")


@pytest.mark.parametrize(("content", "needle"), [
    (b"null", "a JSON null, not an object"),
    (b"[1, 2]", "a JSON array, not an object"),
    (b'"text"', "a JSON string, not an object"),
    (b'{"env": 3}', "`env` is not an object"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{" * 100_000, "damaged run file"),
])
def test_damaged_run_json_names_the_file(tmp_path: Path, content: bytes, needle: str) -> None:
    folder = write_run(tmp_path / "run", [line(record("a"))], content)
    with pytest.raises(BenchError) as info:
        read_run(folder)
    assert needle in str(info.value) and str(folder / RUN_FILE) in str(info.value)


def test_non_utf8_results_name_the_file(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", [line(record("a")), b"\xff\xfe\n", line(record("b"))])
    with pytest.raises(FileProblem, match=r"results\.jsonl: not UTF-8 text \(byte \d+"):
        load(folder)


def test_a_run_json_without_env_is_not_compared_silently(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", [line(record("a"))], b'{"run_id": "r"}')
    with pytest.raises(ResultsError, match="no `env`"):
        load_run(folder)
