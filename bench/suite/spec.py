"""Suite, Case and Settings: the frozen description of what to measure and how.

A `Case` is one point of a sweep. Its `case_id` hashes the canonical parameters only (never the
measurement settings, the suite name or the machine), so the same workload has the same id in
every run on every machine — which is what lets `compare` and `--resume` match cases.

Torch-free: loading and listing suites never imports torch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from bench.suite import models
from bench.suite.axes import Prune
from bench.suite.question import Question

#: Bump when the canonical form changes, so old ids never alias new meanings.
CASE_ID_VERSION = 1

# Strict per field: a TOML string "3" is an error, an integer 3 for a float is fine. Every
# number is bounded: TOML has `inf`, `nan` and integers past 2**63, and none of them is a
# duration or a count a worker can use (a timer given 1e300 s raises instead of waiting).
#: The longest duration any setting takes: a week.
MAX_SECONDS = 7 * 24 * 3600.0
#: The largest count any setting takes.
MAX_COUNT = 10**9
PositiveFloat = Annotated[float, Field(gt=0, le=MAX_SECONDS, strict=True, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, le=MAX_SECONDS, strict=True,
                                          allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT, strict=True)]
Interval = Annotated[float, Field(le=60, strict=True, allow_inf_nan=False)]


@dataclass(frozen=True)
class Settings:
    """How to measure: warm-up, stopping rule, limits. Not part of a case's identity.

    A case is measured by several worker processes (`repeats = "auto"`): at least
    `min_repeats`, then more, one a round, until the 95% interval of its level — across its
    workers, so it includes what varies between runs — is within ±`target_ci`, or
    `max_repeats` workers, or `max_time_s` of its workers' time in all. Each worker warms
    up until its timings are steady, then samples for at least `min_samples` and
    `min_time_s` and stops when its own median's interval is within ±`target_ci` or its
    window (chosen by the run from the variance between and within the workers so far) ends.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    #: Calls before timing, at least; then the warm-up goes on as `warmup` says.
    warmup_iters: Count = 10
    #: The longest warm-up after `warmup_iters` calls ("steady"), or its length ("fixed").
    warmup_time_s: NonNegativeFloat = 0.25
    #: "steady": warm up until the time per call of the last three windows of calls agrees
    #: within STEADY_TOLERANCE (5%), or `warmup_time_s` has passed; "fixed": for the whole
    #: `warmup_time_s`. The first call is timed on its own either way.
    warmup: Literal["steady", "fixed"] = "steady"
    #: Per worker: the fewest samples before it may stop.
    min_samples: Annotated[int, Field(ge=2, le=MAX_COUNT, strict=True)] = 10
    #: Per worker: the shortest measuring window.
    min_time_s: NonNegativeFloat = 0.1
    #: The most time a case gets: with repeats = "auto", its workers' time in all (each
    #: worker's start, build and warm-up as well as its measuring window); with a fixed
    #: number of repeats, each worker's measuring window.
    max_time_s: PositiveFloat = 10.0
    #: The relative half-width of the level's 95% interval a case stops at (and a worker at
    #: its own median's).
    target_ci: Annotated[float, Field(gt=0, lt=1, strict=True, allow_inf_nan=False)] = 0.03
    #: The confidence level of every interval a case reports.
    confidence: Annotated[float, Field(gt=0.5, lt=1, strict=True, allow_inf_nan=False)] = 0.95
    #: Per worker: a hard cap on samples.
    max_samples: Annotated[int, Field(ge=2, le=MAX_COUNT, strict=True)] = 100_000
    #: Whole-case limit (build + warm-up + measuring); past it the worker is killed.
    timeout_s: PositiveFloat = 300.0
    #: `torch.set_num_threads` in the worker; None: one per physical core of the measuring
    #: CPUs — every CPU but one, which the parent's samplers get (`bench.env.auto_threads`;
    #: 1 on two CPUs).
    threads: Annotated[int, Field(ge=1, le=4096, strict=True)] | None = None
    #: Pin the worker to the measuring CPUs and the parent's sampler threads to the one left.
    pin_cpus: Annotated[bool, Field(strict=True)] = True
    #: Seeds torch's RNG before the model is built (weights) and `seed + 1` before its input
    #: is made, so every run measures the same weights on the same input.
    seed: Annotated[int, Field(ge=0, lt=2**63 - 1, strict=True)] = 0
    #: Sample the worker from the parent (RSS, NVML) and read CUDA memory per phase. Off, a
    #: case records timing and model statistics only (what the overhead benchmark compares).
    telemetry: Annotated[bool, Field(strict=True)] = True
    #: Parent-side RSS sampling interval; short, so brief peaks are not missed.
    rss_interval_s: Annotated[Interval, Field(ge=0.001)] = 0.005
    #: Parent-side NVML sampling interval (utilisation, power, clocks, energy counter).
    telemetry_interval_s: Annotated[Interval, Field(ge=0.005)] = 0.02
    #: After timing, run torch.profiler over `profile_iters` calls (outside the timed window)
    #: and keep the top operators and a Chrome trace.
    profile: Annotated[bool, Field(strict=True)] = False
    #: Calls the profiler records, after one unrecorded call that absorbs its start-up.
    profile_iters: Annotated[int, Field(ge=1, le=10_000, strict=True)] = 5
    #: Worker processes per case, visited in rounds through the run so they sample the
    #: machine at different times. "auto": from `min_repeats` to `max_repeats`, as the
    #: case's interval needs (see the class docstring). A number: exactly that many, each
    #: measuring up to max_time_s; 1 measures no variation between runs, and every place
    #: that shows its interval says so.
    repeats: Literal["auto"] | Annotated[int, Field(ge=1, le=100, strict=True)] = "auto"
    #: With repeats = "auto": the fewest workers a case gets.
    min_repeats: Annotated[int, Field(ge=2, le=100, strict=True)] = 3
    #: With repeats = "auto": the most workers a case gets.
    max_repeats: Annotated[int, Field(ge=2, le=100, strict=True)] = 10
    #: What a case measures: "time" (wall clock) or "instructions" (counted under
    #: callgrind in the counting worker: CPU cases, one thread, no telemetry; see
    #: bench.engine.counting). Counts do not move with the machine's load.
    measure: Literal["time", "instructions"] = "time"
    #: Counting: calls before counting (CPython specialises code over its first calls).
    count_warmup: Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)] = 10
    #: Counting: calls per counted sample.
    count_calls: Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)] = 5
    #: Counting: counted samples per case.
    count_samples: Annotated[int, Field(ge=1, le=1000, strict=True)] = 3
    #: Counting: which kernels torch's libraries use under valgrind. "sse4.2" pins MKL,
    #: oneDNN and ATen to their SSE4.2/baseline kernels: the same counts on any x86-64 CPU,
    #: and ~70x faster under valgrind than AVX2/FMA (emulated slowly) on an MLP. "native"
    #: counts the kernels valgrind's virtual CPU (AVX2) selects.
    count_isa: Literal["sse4.2", "native"] = "sse4.2"

    def __post_init__(self) -> None:
        if self.max_repeats < self.min_repeats:
            raise ValueError(
                f"max_repeats = {self.max_repeats} is below min_repeats = {self.min_repeats}; "
                f"raise max_repeats or lower min_repeats to {self.max_repeats} or less")
        if self.max_time_s < self.min_time_s:
            raise ValueError(
                f"max_time_s = {self.max_time_s:g} is below min_time_s = {self.min_time_s:g}: "
                "measuring would have to stop before it may; raise max_time_s or lower "
                f"min_time_s to {self.max_time_s:g} or less")
        if self.measure == "instructions":
            if self.threads not in (None, 1):
                raise ValueError(
                    f"threads = {self.threads} with measure = \"instructions\": counts are "
                    "taken on one thread (with more, the split of work and spin-waits make "
                    "them vary); drop `threads` or set it to 1")
            if self.profile:
                raise ValueError("profile = true with measure = \"instructions\": the profiler "
                                 "times operators, which under valgrind means nothing; profile "
                                 "a timed run instead")

    @property
    def counted(self) -> bool:
        return self.measure == "instructions"

    @property
    def auto_repeats(self) -> bool:
        """Whether the run decides how many workers the case gets (`repeats = "auto"`)."""
        return self.repeats == "auto"

    @property
    def most_repeats(self) -> int:
        """The most workers the case can get."""
        return self.max_repeats if self.repeats == "auto" else int(self.repeats)

    def for_counting(self) -> Settings:
        """The settings a counted case runs with, as its record states them: one thread, no
        telemetry (the valgrind process's memory is not the model's) and, unless a number
        of repeats is asked for, one worker: counts do not move between processes."""
        if not self.counted:
            return self
        return replace(self, threads=1, telemetry=False,
                       repeats=1 if self.repeats == "auto" else self.repeats)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, **changes: Any) -> Settings:
        return replace(self, **changes)


SETTINGS_KEYS = tuple(f.name for f in fields(Settings))


@dataclass(frozen=True)
class Case:
    """One point of a sweep, fully explicit: model defaults are filled in at expansion."""

    model: str
    batch_size: int
    device: str = "cpu"
    precision: str = "fp32"
    prune: Prune = field(default_factory=Prune)
    compile: str = "eager"
    mode: str = "inference"
    depth: int | None = None
    width: int | None = None
    activation: str | None = None
    features: int | None = None
    image_size: int | None = None
    seq_len: int | None = None
    classes: int | None = None
    #: Attention heads, key/value heads (grouped-query attention) and vocabulary of a
    #: transformers family; `new_tokens` is how many tokens `mode = "generate"` decodes
    #: after its prompt of `seq_len` tokens. None where they do not apply.
    heads: int | None = None
    kv_heads: int | None = None
    vocab_size: int | None = None
    new_tokens: int | None = None
    #: Free-form keywords for user factories and transformers config fields, as sorted
    #: (key, value) pairs (hashable: list values are kept as tuples).
    model_args: tuple[tuple[str, Any], ...] = ()
    settings: Settings = field(default_factory=Settings, compare=False)
    suite: str = field(default="", compare=False)
    #: Name of the sweep block the case came from, for grouping in reports.
    sweep: str = field(default="", compare=False)
    #: Set when two cases of a suite would otherwise share a name.
    name_suffix: str = field(default="", compare=False)
    #: The measuring window the run gave this one worker of the case (repeats = "auto"),
    #: in place of the settings' max_time_s; None: the settings' own limits.
    window_s: float | None = field(default=None, compare=False)

    # ---- identity -------------------------------------------------------------------------
    def params(self) -> dict[str, Any]:
        """The parameters as plain JSON values, None where an axis does not apply."""
        return {
            "model": self.model,
            "depth": self.depth,
            "width": self.width,
            "activation": self.activation,
            "features": self.features,
            "image_size": self.image_size,
            "seq_len": self.seq_len,
            "classes": self.classes,
            **{axis: getattr(self, axis) for axis in EXTRA_AXES},
            "model_args": dict(self.model_args),
            "batch_size": self.batch_size,
            "device": self.device,
            "precision": self.precision,
            "prune": self.prune.canonical(),
            "compile": self.compile,
            "mode": self.mode,
        }

    def canonical(self) -> dict[str, Any]:
        """What the id hashes: every parameter that applies, nothing that does not."""
        out = {k: v for k, v in self.params().items() if v is not None}
        if not out["model_args"]:
            del out["model_args"]
        return out

    @property
    def case_id(self) -> str:
        payload = json.dumps({"v": CASE_ID_VERSION, **self.canonical()},
                             sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def name(self) -> str:
        """Readable and filename-safe: 'mlp-d4-w512-relu-b32-fp32-cpu' plus non-default parts."""
        info = models.get(self.model)
        model = self.model.rpartition(":")[2] if models.is_user_model(self.model) else self.model
        if models.is_hf_model(self.model):
            model = "hf-" + self.model.removeprefix(models.HF_PREFIX).rstrip("/").rpartition("/")[2]
        parts = [model]
        if self.depth is not None:
            parts.append(f"d{self.depth}")
        if self.width is not None:
            parts.append(f"w{self.width}")
        for axis, tag in (("heads", "h"), ("kv_heads", "kv"), ("vocab_size", "v")):
            if getattr(self, axis) is not None:
                parts.append(f"{tag}{getattr(self, axis)}")
        if self.activation is not None:
            parts.append(self.activation)
        parts.append(f"b{self.batch_size}")
        parts += [self.precision, self.device.replace(":", "")]
        for axis, tag in (("features", "f"), ("image_size", "i"), ("seq_len", "s"),
                          ("classes", "c")):
            value = getattr(self, axis)
            if value is not None and value != info.defaults.get(axis):
                parts.append(f"{tag}{value}")
        if self.prune.method != "none":
            parts.append(self.prune.label)
        if self.compile != "eager":
            parts.append(f"compile-{self.compile}")
        if self.mode != "inference":
            parts.append(self.mode)
        if self.new_tokens is not None:
            parts.append(f"n{self.new_tokens}")
        if self.model_args:
            digest = hashlib.sha256(json.dumps(dict(self.model_args), sort_keys=True).encode())
            parts.append(f"a{digest.hexdigest()[:6]}")
        if self.name_suffix:
            parts.append(self.name_suffix)
        return "-".join(parts)

    def worker_settings(self) -> Settings:
        """The settings this worker measures with: the case's, within its window."""
        if self.window_s is None:
            return self.settings
        return self.settings.updated(max_time_s=self.window_s,
                                     min_time_s=min(self.settings.min_time_s, self.window_s))

    @property
    def device_kind(self) -> str:
        return self.device.partition(":")[0]

    @property
    def input_size(self) -> int | None:
        """The model's input size along its input axis (features, image side or tokens)."""
        axis = models.get(self.model).input_axis
        return getattr(self, axis) if axis else None

    # ---- (de)serialisation for records and worker messages --------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "name": self.name,
            "suite": self.suite,
            "sweep": self.sweep,
            "params": self.params(),
            "settings": self.settings.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Case:
        params = dict(data["params"])
        prune = Prune(**params.pop("prune"))
        model_args = hashable_args(params.pop("model_args") or {})
        case = cls(prune=prune, model_args=model_args, settings=Settings(**data["settings"]),
                   suite=data.get("suite", ""), sweep=data.get("sweep", ""), **params)
        if case.name != data.get("name", case.name):
            case = replace(case, name_suffix=str(data["name"]).rpartition("-")[2])
        return case


#: Case fields beyond the original model axes, in record order (absent from old records).
EXTRA_AXES = ("heads", "kv_heads", "vocab_size", "new_tokens")


def hashable_args(values: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """`model_args` as a Case holds them: sorted pairs, lists turned into tuples."""
    return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in values.items()))


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its cases in file order, and where it came from."""

    name: str
    path: str
    content_sha256: str
    cases: tuple[Case, ...]
    description: str = ""
    #: Cases dropped because an earlier block already produced the same case id.
    duplicates_dropped: int = 0
    #: The question its `[decide]` table asks, answered at the end of a run.
    decide: Question | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "path": self.path, "content_sha256": self.content_sha256,
               "description": self.description, "cases": len(self.cases)}
        if self.decide is not None:
            out["decide"] = self.decide.to_dict()
        return out
