"""Property tests of the suite loader: generated TOML documents, valid-looking and hostile.

Whatever the document, `load()` either returns a suite every case of which the worker can
use, or raises `SpecError`; nothing else (no RecursionError, TypeError, OverflowError...).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tomli_w
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter

from bench.errors import SpecError
from bench.suite import footprint
from bench.suite.loader import load
from bench.suite.models import AXIS_MAX, get
from bench.suite.spec import SETTINGS_KEYS, Case, Settings

PROPS = settings(max_examples=120, deadline=None, derandomize=True,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])

MODELS = ["mlp", "cnn", "transformer", "seed-cnn", "text-classifier", "nets.py:make", "nope",
          "a:", ":b", "x.y:9z"]
DEVICES = ["cpu", "cuda", "cuda:0", "cuda:1", "cuda:٣", "cuda:1\n", "cpu ", "CUDA", "cuda:01",
           "cuda:99999", "cuda:-1", "tpu", ""]
WORDS = ["relu", "gelu", "silu", "tanh", "fp32", "bf16", "fp16", "tf32", "int8-dynamic", "fp8",
         "none", "structured", "unstructured", "semi-structured-2:4", "eager", "default",
         "reduce-overhead", "train", "inference", "layer", "global", "[settings]", "🙂"]
HOSTILE_INTS = [0, 1, 2, 3, 8, 64, 4096, 4097, 2**20 + 1, 2**31, 2**63 - 1, 10**18, -1, -2**63]

ints = st.one_of(st.integers(min_value=-3, max_value=70), st.sampled_from(HOSTILE_INTS))
floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                   st.sampled_from([0.0, 0.01, 0.3, 0.5, 1.0, 1e300, -0.0]))
strings = st.one_of(st.sampled_from(MODELS + DEVICES + WORDS), st.text(max_size=8))
scalars = st.one_of(ints, floats, st.booleans(), strings)
keys = st.one_of(st.sampled_from(["method", "ratio", "scope", "round_to", "device", "model",
                                  "depth", "x"]), st.text(min_size=1, max_size=5))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) |
                      st.dictionaries(keys, inner, max_size=3), max_leaves=8)


def axis(elements: st.SearchStrategy) -> st.SearchStrategy:
    """One value or a short list (short: a block's cases are the product of its axes)."""
    return st.one_of(elements, st.lists(elements, min_size=0, max_size=2))


prune_tables = st.fixed_dictionaries(
    {"method": st.sampled_from(["none", "structured", "unstructured", "semi-structured-2:4",
                                "bogus"])},
    optional={"ratio": axis(st.one_of(floats, ints)), "scope": strings,
              "round_to": ints, "extra": scalars})
settings_tables = st.dictionaries(st.sampled_from([*SETTINGS_KEYS, "bogus", "max_time"]),
                                  st.one_of(scalars, values), max_size=4)
blocks = st.fixed_dictionaries(
    {"model": axis(st.sampled_from(MODELS))},
    optional={
        "depth": axis(ints), "width": axis(ints), "features": axis(ints),
        "image_size": axis(ints), "seq_len": axis(ints), "classes": axis(ints),
        "batch_size": axis(ints),
        "activation": axis(st.sampled_from([*WORDS[:4], "swish"])),
        "device": axis(st.sampled_from(DEVICES)),
        "precision": axis(st.sampled_from(WORDS[4:10])),
        "prune": st.one_of(st.just("none"), axis(prune_tables)),
        "compile": axis(st.sampled_from(["eager", "default", "reduce-overhead", "jit"])),
        "mode": axis(st.sampled_from(["train", "inference", "eval"])),
        "exclude": st.lists(st.dictionaries(st.sampled_from(["depth", "device", "prune", "zzz"]),
                                            values, max_size=2), max_size=2),
        "model_args": st.dictionaries(st.text(min_size=1, max_size=4), scalars, max_size=2),
        "settings": settings_tables,
        "name": strings,
        "bogus": scalars,
    })
documents = st.fixed_dictionaries(
    {"sweep": st.lists(blocks, min_size=0, max_size=2)},
    optional={"suite": st.fixed_dictionaries({"name": st.one_of(st.just("s"), strings)},
                                             optional={"description": scalars}),
              "settings": settings_tables})


def valid_base(doc: dict) -> dict:
    """Most generated documents get a valid header, so validation reaches the sweeps."""
    doc.setdefault("suite", {"name": "s"})
    return doc


def check_usable(path: Path) -> None:
    """Load; an accepted suite must hold only cases the worker can run as they are."""
    try:
        suite = load(path)
    except SpecError as exc:
        assert str(exc)  # a message for the user
        return
    adapter = TypeAdapter(Settings)
    for case in suite.cases:
        torch.device(case.device)  # the worker's first use of the device string
        assert case.device.isascii() and case.device == case.device.strip()
        again = Case.from_dict(json.loads(json.dumps(case.to_dict(), allow_nan=False)))
        assert again.case_id == case.case_id
        assert adapter.validate_python(case.settings.to_dict()) == case.settings
        for name, value in case.settings.to_dict().items():
            if isinstance(value, float):
                assert math.isfinite(value), name
        for axis_name, high in AXIS_MAX.items():
            value = getattr(case, axis_name)
            assert value is None or 1 <= value <= high, (axis_name, value)
        assert 1 <= case.batch_size <= 2**20
        size = footprint.estimate(case)
        assert size is None or size.bytes <= footprint.MAX_BYTES
        assert case.name and get(case.model)


@pytest.fixture
def suite_path(tmp_path: Path) -> Path:
    return tmp_path / "generated.toml"


@PROPS
@given(doc=documents)
def test_generated_documents_load_or_fail_cleanly(suite_path: Path, doc: dict) -> None:
    suite_path.write_text(tomli_w.dumps(valid_base(doc)))
    check_usable(suite_path)


VALID = """[suite]
name = "s"
[settings]
max_time_s = 0.5
[[sweep]]
model = ["mlp", "cnn"]
depth = [1, 2]
width = 8
device = ["cpu", "cuda:0"]
prune = [{ method = "structured", ratio = [0.25, 0.5] }]
exclude = [{ depth = 2, model = "cnn" }]
"""
DAMAGE = st.sampled_from([*b'[]{}="\n\\#,.:0123456789-+eE_ \t\xff\x00\xe2'])


@PROPS
@given(edits=st.lists(st.tuples(st.integers(0, 400), DAMAGE, st.integers(0, 2)),
                      min_size=1, max_size=6))
def test_mutated_suite_text_loads_or_fails_cleanly(suite_path: Path, edits: list) -> None:
    data = bytearray(VALID.encode())
    for position, byte, kind in edits:
        at = position % (len(data) + 1)
        if kind == 0:
            data.insert(at, byte)
        elif kind == 1 and at < len(data):
            del data[at]
        elif at < len(data):
            data[at] = byte
    suite_path.write_bytes(bytes(data))
    check_usable(suite_path)


@pytest.mark.parametrize("depth", [17, 600, 5000, 100_000])
@pytest.mark.parametrize("shape", ["array", "table", "exclude"])
def test_deep_nesting_is_a_spec_error(suite_path: Path, depth: int, shape: str) -> None:
    if shape == "array":
        value = "[" * depth + "]" * depth
        text = f'[suite]\nname = "s"\n[[sweep]]\nmodel = "mlp"\ndepth = {value}\n'
    elif shape == "table":
        value = "{a = " * depth + "1" + "}" * depth
        text = f'[suite]\nname = "s"\n[[sweep]]\nmodel = "mlp"\nmodel_args = {value}\n'
    else:
        value = "[" * depth + "1" + "]" * depth
        text = f'[suite]\nname = "s"\n[[sweep]]\nmodel = "mlp"\nexclude = [{{ depth = {value} }}]\n'
    suite_path.write_text(text)
    with pytest.raises(SpecError, match="nested"):
        load(suite_path)


@pytest.mark.parametrize(("line", "needle"), [
    ('device = "cuda:٣"', "device"),
    ('device = "cuda:1\\n"', "device"),
    ('device = "cuda:01"', "device"),
    ("depth = 1180591620717411303424", "depth"),       # 2**70
    ("depth = 1000000000000000000", "depth"),          # 10**18
    ("width = 1048577", "width"),
    ("batch_size = 1180591620717411303424", "batch_size"),
    ("settings = { seed = 1180591620717411303424 }", "seed"),
    ("settings = { timeout_s = inf }", "timeout_s"),
    ("settings = { max_time_s = nan }", "max_time_s"),
    ("settings = { timeout_s = 1e300 }", "timeout_s"),
    ("settings = { max_samples = 1180591620717411303424 }", "max_samples"),
])
def test_values_that_failed_at_run_time_fail_at_load(suite_path: Path, line: str,
                                                     needle: str) -> None:
    suite_path.write_text(f'[suite]\nname = "s"\n[[sweep]]\nmodel = "mlp"\n{line}\n')
    with pytest.raises(SpecError) as info:
        load(suite_path)
    assert needle in str(info.value)


def test_a_model_no_machine_holds_is_rejected_with_its_estimate(suite_path: Path) -> None:
    suite_path.write_text('[suite]\nname = "s"\n[[sweep]]\nmodel = "mlp"\n'
                          "depth = 4096\nwidth = 1048576\n")
    with pytest.raises(SpecError, match=r"needs about .*parameters.*more memory than any"):
        load(suite_path)


def test_a_block_expanding_to_too_many_cases_is_rejected(suite_path: Path) -> None:
    many = list(range(1, 61))
    suite_path.write_text(f'[suite]\nname = "s"\n[[sweep]]\nmodel = "mlp"\ndepth = {many}\n'
                          f"width = {many}\nfeatures = {many}\nclasses = {many[1:]}\n")
    with pytest.raises(SpecError, match="cases"):
        load(suite_path)


def test_max_time_override_below_default_min_time_names_both(suite_path: Path) -> None:
    suite_path.write_text('[suite]\nname = "s"\n[[sweep]]\nmodel = "mlp"\n')
    with pytest.raises(SpecError) as info:
        load(suite_path, settings_overrides={"max_time_s": 0.05})
    message = str(info.value)
    assert "max_time_s = 0.05 (override)" in message
    assert "min_time_s = 0.1 (default)" in message
    assert "--set min_time_s=0.05" in message
    assert str(suite_path) not in message  # the file is not what is wrong
    # The fix it names works.
    load(suite_path, settings_overrides={"max_time_s": 0.05, "min_time_s": 0.05})


@pytest.mark.parametrize(("model", "axes"), [
    ("mlp", {"depth": 3, "width": 64, "features": 32, "classes": 10, "activation": "relu"}),
    ("cnn", {"depth": 5, "width": 8, "image_size": 32, "classes": 10, "activation": "relu"}),
    ("transformer", {"depth": 2, "width": 128, "seq_len": 16, "classes": 10,
                     "activation": "gelu"}),
    ("seed-cnn", {"classes": 10}),
    ("text-classifier", {"seq_len": 16, "classes": 2}),
])
def test_the_estimate_counts_the_parameters_the_built_model_has(model, axes):
    from bench.measure.models import zoo

    case = Case(model=model, batch_size=2, **axes)
    built = getattr(zoo, f"build_{model.replace('-', '_')}")(case)
    size = footprint.estimate(case)
    assert size is not None
    assert size.params == sum(p.numel() for p in built.module.parameters())


def test_a_model_larger_than_this_machine_is_unsupported_before_it_is_built(suite_path):
    import psutil

    from bench.errors import UnsupportedCase
    from bench.measure import capability

    suite_path.write_text('[suite]\nname = "s"\n[[sweep]]\nmodel = "mlp"\n'
                          "depth = 16\nwidth = 131072\n")
    (case,) = load(suite_path).cases  # below what any machine has: accepted
    assert footprint.estimate(case).bytes > psutil.virtual_memory().total
    with pytest.raises(UnsupportedCase, match=r"needs about .* GiB in all"):
        capability.check_memory(case)
