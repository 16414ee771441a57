"""Read a suite TOML file into a validated, expanded `Suite`.

Structure and types are checked by pydantic models (unknown keys are errors, so a typo never
silently drops an axis); meaning (which axes a model takes, impossible combinations) is checked
here. Every problem becomes a `SpecError` naming the file, the key path, the value and the fix.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    TypeAdapter,
    ValidationError,
)

from bench.errors import SpecError, did_you_mean, one_of
from bench.suite import axes, footprint, hf, models
from bench.suite.question import Question, QuestionError, split_constraint
from bench.suite.spec import SETTINGS_KEYS, Case, Settings, Suite, hashable_args


def _listify(value: Any) -> Any:
    """A scalar where a list is expected means a one-value axis."""
    return value if isinstance(value, list) else [value]


def _prune_shorthand(value: Any) -> Any:
    """`prune = "none"` (or a list holding "none") is short for `{ method = "none" }`."""
    return [{"method": "none"} if v == "none" else v for v in _listify(value)]


_AXIS = (BeforeValidator(_listify), Field(min_length=1))
IntAxis = Annotated[list[StrictInt], *_AXIS]
#: Largest batch size: beyond it one input tensor overflows 32-bit indexing on its own.
MAX_BATCH_SIZE = 2**20
#: Most tokens a generate case decodes.
MAX_NEW_TOKENS = 2**20
BatchAxis = Annotated[list[Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE, strict=True)]], *_AXIS]
StrAxis = Annotated[list[StrictStr], *_AXIS]
# Spelled out for the type checker; tests keep them equal to bench.suite.axes.
Activation = Literal["relu", "gelu", "silu", "tanh"]
Precision = Literal["fp32", "tf32", "fp16", "bf16", "amp-fp16", "amp-bf16", "int8-dynamic",
                    "int8-weight-only", "fp8"]
CompileMode = Literal["eager", "default", "max-autotune", "reduce-overhead"]
Mode = Literal["inference", "train", "generate"]
PruneMethod = Literal["none", "unstructured", "structured", "semi-structured-2:4"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PruneEntry(_Strict):
    #: "unstructured" (L1 magnitude masks), "structured" (whole neurons, channels and head
    #: dimensions removed along the dependency graph), "semi-structured-2:4" (CUDA, fp16/bf16).
    method: PruneMethod
    #: The fraction of weights (unstructured) or of channels and neurons (structured) to
    #: remove, in (0, 1); a list sweeps several. 2:4 sparsity is 0.5 by definition.
    ratio: Annotated[list[StrictFloat | StrictInt], *_AXIS] | None = None
    #: Unstructured: rank weights within each layer ("layer") or across all layers ("global").
    scope: Literal["layer", "global"] = "layer"
    #: Structured: round each pruned layer's channel count to a multiple of this.
    round_to: Annotated[int, Field(ge=1, le=1024)] = 8


class SuiteHeader(_Strict):
    name: Annotated[StrictStr, Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: StrictStr = ""


class SweepBlock(_Strict):
    """One `[[sweep]]` block: its cases are the product of its axes, less `exclude`. An axis
    given one value may be written without the list."""

    #: A label for the block (grouping in reports).
    name: StrictStr = ""
    #: A built-in model, or a factory "package.module:function" / "path/file.py:function".
    model: StrAxis
    #: Layers or blocks (models that take it).
    depth: IntAxis | None = None
    #: Hidden units, channels or d_model (models that take it).
    width: IntAxis | None = None
    #: Attention heads of a transformers family (default: the config's, kept a divisor of
    #: `width`).
    heads: IntAxis | None = None
    #: Key/value heads for grouped-query attention (a divisor of `heads`).
    kv_heads: IntAxis | None = None
    #: The token vocabulary of a transformers family.
    vocab_size: IntAxis | None = None
    #: The activation between layers (models that take it).
    activation: Annotated[list[Activation], *_AXIS] | None = None
    #: The MLP's input size.
    features: IntAxis | None = None
    #: The CNN's input side (pixels).
    image_size: IntAxis | None = None
    #: Tokens per input (transformer, text classifier).
    seq_len: IntAxis | None = None
    #: Output classes.
    classes: IntAxis | None = None
    #: Tokens `mode = "generate"` decodes after its prompt of `seq_len` tokens.
    new_tokens: Annotated[list[Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS, strict=True)]],
                          *_AXIS] | None = None
    #: Items per call; throughput counts them.
    batch_size: BatchAxis = [1]
    #: "cpu", "cuda" or "cuda:N"; a device this machine lacks records its cases unsupported.
    device: StrAxis = ["cpu"]
    #: What the weights are stored in and what the matmuls compute in.
    precision: Annotated[list[Precision], *_AXIS] = ["fp32"]
    #: "none", or tables { method, ratio, scope, round_to } (below).
    prune: Annotated[list[PruneEntry], BeforeValidator(_prune_shorthand),
                     Field(min_length=1)] = [PruneEntry(method="none")]
    #: torch.compile mode, or "eager" for none.
    compile: Annotated[list[CompileMode], *_AXIS] = ["eager"]
    #: "inference" (a forward call), "train" (forward, loss, backward, AdamW step) or
    #: "generate" (decoder-only transformers: prefill, then per-token decode with the cache).
    mode: Annotated[list[Mode], *_AXIS] = ["inference"]
    #: Free-form keywords a user factory reads from `case.model_args`, or other fields of a
    #: transformers family's config (part of the case's identity).
    model_args: dict[str, StrictStr | StrictInt | StrictFloat | bool |
                     list[StrictInt | StrictFloat | StrictStr]] | None = None
    #: Tables of axis values; a case is dropped when every axis of one table matches one of
    #: the table's values.
    exclude: list[dict[str, Any]] = []
    #: Settings for this block's cases, over the suite's `[settings]`.
    settings: dict[str, Any] = {}


class DecideTable(_Strict):
    """`[decide]`: the question `archbench run` answers at its end (see `archbench best`)."""

    #: What to optimise: the lowest median_ms, p99_ms, energy_per_item or peak_memory, or
    #: the highest throughput.
    objective: Literal["median_ms", "p99_ms", "throughput", "energy_per_item",
                       "peak_memory"] = "median_ms"
    #: "METRIC<=VALUE[UNIT]" (also <, >=, >) on any metric of the run.
    constraints: list[StrictStr] = []
    #: How many ranked answers to show.
    top: Annotated[int, Field(ge=1)] = 5
    #: How sure a timing constraint must be met (its confidence interval's level).
    confidence: Annotated[StrictFloat, Field(ge=0.5, lt=1)] = 0.95


class SuiteFile(_Strict):
    suite: SuiteHeader
    settings: dict[str, Any] = {}
    sweep: Annotated[list[SweepBlock], Field(min_length=1)]
    decide: DecideTable | None = None


#: The axes of a sweep block, in the order cases are expanded (last varies fastest).
AXES = ("model", "depth", "width", "heads", "kv_heads", "vocab_size", "activation", "features",
        "image_size", "seq_len", "classes", "new_tokens", "batch_size", "device", "precision",
        "prune", "compile", "mode")
_SETTINGS = TypeAdapter(Settings)


def load(path: str | Path, *, axis_overrides: Mapping[str, Sequence[Any]] | None = None,
         settings_overrides: Mapping[str, Any] | None = None) -> Suite:
    """Load, validate and expand a suite file.

    `axis_overrides` replace an axis in every block (the CLI's `--device cuda`);
    `settings_overrides` win over the file's settings (`--max-time 2`).
    """
    file = str(path)
    try:
        raw_bytes = Path(path).read_bytes()
    except FileNotFoundError:
        raise SpecError("no such file; check the path (suites usually live in suites/)",
                        file=file) from None
    except OSError as exc:
        raise SpecError(f"cannot read the file: {exc.strerror}", file=file) from None
    try:
        data = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SpecError(f"the file is not UTF-8 text (byte {exc.start})", file=file) from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"not valid TOML: {exc}", file=file) from None
    except RecursionError:
        raise SpecError(f"arrays or tables are nested too deeply to read; a suite needs at most "
                        f"{MAX_NESTING} levels", file=file) from None
    _check_nesting(data, file=file)
    for axis, values in (axis_overrides or {}).items():
        for block in data.get("sweep", []) if isinstance(data.get("sweep"), list) else []:
            if isinstance(block, dict):
                block[axis] = list(values)
    try:
        parsed = SuiteFile.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_describe(exc), file=file) from None

    base = _settings(parsed.settings, settings_overrides, file=file, key="settings")
    families = _hf_families(parsed.sweep, folder=str(Path(path).resolve().parent), file=file)
    cases: list[Case] = []
    for index, block in enumerate(parsed.sweep):
        where = f"sweep[{index}]"
        block_settings = _settings({**parsed.settings, **block.settings}, settings_overrides,
                                   file=file, key=f"{where}.settings") if block.settings else base
        cases += _expand(block, block_settings, parsed.suite.name, families, file=file,
                         where=where)

    unique: dict[str, Case] = {}
    for case in cases:
        unique.setdefault(case.case_id, case)
    return Suite(
        name=parsed.suite.name,
        path=file,
        content_sha256=hashlib.sha256(raw_bytes).hexdigest(),
        cases=_unique_names(list(unique.values())),
        description=parsed.suite.description,
        duplicates_dropped=len(cases) - len(unique),
        decide=_question(parsed.decide, file=file),
    )


def _question(table: DecideTable | None, *, file: str) -> Question | None:
    """The `[decide]` table as a Question, each constraint's syntax and unit checked now (that
    the run collects its metric is known only once it has run)."""
    if table is None:
        return None
    for index, text in enumerate(table.constraints):
        try:
            split_constraint(text)
        except QuestionError as exc:
            raise SpecError(str(exc), file=file, key=f"decide.constraints[{index}]") from None
    return Question(table.objective, tuple(table.constraints), table.top, table.confidence)


# ---- one case outside a file (the pytest fixture) --------------------------------------------
#: The transform axes a single case can be given without a suite file.
TRANSFORM_AXES = ("precision", "prune", "compile", "mode")


def transforms(values: Mapping[str, Any], device: str, *, file: str) -> dict[str, Any]:
    """The transform axes of one case (scalars; `prune` "none" or a table), checked exactly
    as a sweep block's are, as keyword arguments for `Case`."""
    given = {key: values[key] for key in TRANSFORM_AXES if key in values}
    try:
        block = SweepBlock.model_validate({"model": ["-"], "device": [device], **given})
    except ValidationError as exc:
        raise SpecError(_describe(exc), file=file) from None
    _check_devices(block.device, file=file, key="device")
    out: dict[str, Any] = {key: getattr(block, key)[0] for key in given if key != "prune"}
    if "prune" in given:
        prunes = _prunes(block.prune, file=file, key="prune")
        if len(prunes) != 1:
            raise SpecError("give one pruning ratio for a single case", file=file, key="prune")
        out["prune"] = prunes[0]
    conflicts = axes.static_conflicts(device=device, precision=out.get("precision", "fp32"),
                                      prune=out.get("prune", axes.Prune()),
                                      compile=out.get("compile", "eager"),
                                      mode=out.get("mode", "inference"))
    if conflicts:
        raise SpecError(conflicts[0][1], file=file, key=conflicts[0][0])
    return out


def settings(values: Mapping[str, Any], overrides: Mapping[str, Any] | None = None, *,
             file: str, key: str = "settings") -> Settings:
    """Settings from a table and overrides (`--set`), with the errors a suite file gets."""
    return _settings(values, overrides, file=file, key=key)


#: Most cases one block may expand to (a sweep beyond this would run for weeks).
MAX_CASES = 100_000
#: Deepest nesting of arrays and tables a suite may use (a real one needs about 6).
MAX_NESTING = 16


def _check_nesting(data: Any, *, file: str) -> None:
    """Reject deeper nesting than suites use, before validation walks it recursively."""
    stack: list[tuple[Any, int, str]] = [(data, 0, "")]
    while stack:
        value, depth, key = stack.pop()
        if depth > MAX_NESTING:
            raise SpecError(f"nested more than {MAX_NESTING} levels deep; no suite key needs "
                            "that", file=file, key=key or None)
        if isinstance(value, dict):
            stack += [(v, depth + 1, f"{key}.{k}" if key else str(k)) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, depth + 1, f"{key}[{i}]") for i, v in enumerate(value)]


# ---- settings -------------------------------------------------------------------------------
def _settings(values: Mapping[str, Any], overrides: Mapping[str, Any] | None, *, file: str,
              key: str) -> Settings:
    merged = {**values, **(overrides or {})}
    for name in merged:
        if name not in SETTINGS_KEYS:
            raise SpecError(f'unknown setting "{name}"{did_you_mean(name, SETTINGS_KEYS)}; '
                            f"settings are {one_of(SETTINGS_KEYS)}", file=file, key=f"{key}.{name}")
    _check_time_window(values, overrides or {}, file=file, key=key)
    try:
        return _SETTINGS.validate_python(merged)
    except ValidationError as exc:
        raise SpecError(_describe(exc, prefix=key), file=file) from None


def _check_time_window(values: Mapping[str, Any], overrides: Mapping[str, Any], *, file: str,
                       key: str) -> None:
    """max_time_s below min_time_s, named with where each came from and the fix; often one
    is an override (`--set max_time_s=0.3`) and the other the default."""
    defaults = Settings()
    found: dict[str, tuple[Any, str]] = {}
    for name in ("min_time_s", "max_time_s"):
        if name in overrides:
            found[name] = (overrides[name], "override")
        elif name in values:
            found[name] = (values[name], key)
        else:
            found[name] = (getattr(defaults, name), "default")
    (low, low_from), (high, high_from) = found["min_time_s"], found["max_time_s"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if not numbers or not high < low:
        return
    fix = (f"also override min_time_s (e.g. --set min_time_s={high:g}) or raise max_time_s"
           if high_from == "override" and low_from != "override" else
           f"lower min_time_s to {high:g} or less, or raise max_time_s")
    in_file = {low_from, high_from} - {"default", "override"}
    raise SpecError(f"max_time_s = {high:g} ({high_from}) is below min_time_s = {low:g} "
                    f"({low_from}): measuring would have to stop before it may; {fix}",
                    file=file if in_file else None)


# ---- transformers families ------------------------------------------------------------------
def _hf_families(blocks: Sequence[SweepBlock], *, folder: str,
                 file: str) -> dict[str, hf.Family]:
    """The Family of every `hf:` model the suite names, described in one subprocess (the
    parent never imports torch); a name that cannot be described is an error at its key."""
    where: dict[str, str] = {}
    for index, block in enumerate(blocks):
        for i, name in enumerate(block.model):
            if models.is_hf_model(name):
                models.get(name, key=f"sweep[{index}].model[{i}]", file=file)
                where.setdefault(name, f"sweep[{index}].model[{i}]")
    if not where:
        return {}
    described = hf.describe_in_subprocess(list(where), search_path=[folder])
    out: dict[str, hf.Family] = {}
    for name, family in described.items():
        if isinstance(family, SpecError):
            raise SpecError(str(family), file=file, key=where[name])
        out[name] = family
    return out


def _check_hf(case: Case, families: Mapping[str, hf.Family], *, file: str,
              where: str) -> Case:
    """A transformers case with its inputs made to fit, or the first reason it cannot be."""
    if not models.is_hf_model(case.model):
        if case.mode == "generate":
            raise SpecError(f'{case.name}: mode "generate" needs a decoder-only transformers '
                            'model (model = "hf:llama", "hf:gpt2", ...)', file=file,
                            key=f"{where}.mode")
        return case
    family = families[case.model]
    case = hf.fill_defaults(family, case)
    found = hf.problems(family, case)
    if found:
        key, reason = found[0]
        raise SpecError(f"{case.name}: {reason}", file=file, key=f"{where}.{key}")
    return case


# ---- expansion ------------------------------------------------------------------------------
def _expand(block: SweepBlock, settings: Settings, suite: str,
            families: Mapping[str, hf.Family], *, file: str, where: str) -> list[Case]:
    for model_name in block.model:
        _check_model_axes(block, model_name, file=file, where=where)
    _check_devices(block.device, file=file, key=f"{where}.device")
    prunes = _prunes(block.prune, file=file, key=f"{where}.prune")
    rules = [_exclude_rule(rule, file=file, key=f"{where}.exclude[{i}]")
             for i, rule in enumerate(block.exclude)]
    model_args = hashable_args(block.model_args or {})

    out: list[Case] = []
    for model_name in block.model:
        info = models.get(model_name)
        values: dict[str, Sequence[Any]] = {}
        for axis in AXES[1:]:
            given = prunes if axis == "prune" else getattr(block, axis)
            if axis in models.MODEL_AXES or axis == "new_tokens":
                default = info.defaults.get(axis)
                values[axis] = given if given is not None else [default]
            else:
                values[axis] = given
        count = math.prod(len(v) for v in values.values())
        if count * len(block.model) > MAX_CASES:
            raise SpecError(f"this block expands to {count * len(block.model):,} cases; the "
                            f"limit is {MAX_CASES:,}: split the sweep or narrow its axes",
                            file=file, key=where)
        for combo in itertools.product(*values.values()):
            params = dict(zip(values, combo, strict=True))
            if any(_matches(rule, model_name, params) for rule in rules):
                continue
            case = Case(model=model_name, model_args=model_args, settings=settings, suite=suite,
                        sweep=block.name, **params)
            case = _check_hf(case, families, file=file, where=where)
            _check_static(case, file=file, where=where)
            _check_footprint(case, file=file, where=where)
            out.append(case)
    if not out:
        raise SpecError("every case of this block is excluded; loosen `exclude` or remove the "
                        "block", file=file, key=where)
    return out


def _check_model_axes(block: SweepBlock, model_name: str, *, file: str, where: str) -> None:
    info = models.get(model_name, key=f"{where}.model", file=file)
    for axis in models.MODEL_AXES:
        given = getattr(block, axis)
        if given is None:
            continue
        if axis not in info.axes:
            takes = one_of(sorted(info.axes)) if info.axes else "no model axes"
            note = f"; {info.fixed_note}" if info.fixed_note else ""
            raise SpecError(
                f'model "{model_name}" does not take `{axis}` (it takes {takes}){note}; '
                f"remove `{axis}` or put {model_name} in a [[sweep]] block of its own",
                file=file, key=f"{where}.{axis}")
        if axis not in models.AXIS_MAX:  # not a number (activation)
            continue
        low, high = info.bounds_of(axis)
        for i, value in enumerate(given):
            if not low <= value <= high:
                raise SpecError(f"{value} is out of range for {model_name}; use a value "
                                f"between {low} and {high}", file=file, key=f"{where}.{axis}[{i}]")
    if block.model_args and not info.takes_model_args:
        raise SpecError(f'model "{model_name}" takes no model_args (only user factories do)',
                        file=file, key=f"{where}.model_args")


def _check_devices(devices: Sequence[str], *, file: str, key: str) -> None:
    for i, device in enumerate(devices):
        if axes.device_kind(device) is None:
            raise SpecError(f'unknown device "{device}"; use "cpu", "cuda" or "cuda:N"',
                            file=file, key=f"{key}[{i}]")


def _prunes(entries: Sequence[PruneEntry], *, file: str, key: str) -> list[axes.Prune]:
    """Each table may give several ratios; it stands for one Prune per ratio."""
    out: list[axes.Prune] = []
    for i, entry in enumerate(entries):
        if entry.method == "none":
            if entry.ratio is not None:
                raise SpecError('method "none" takes no ratio; drop `ratio`',
                                file=file, key=f"{key}[{i}].ratio")
            out.append(axes.Prune())
            continue
        if entry.method == "semi-structured-2:4":
            if entry.ratio not in (None, [0.5]):
                raise SpecError("2:4 sparsity always removes half the weights; drop `ratio` or "
                                "set it to 0.5", file=file, key=f"{key}[{i}].ratio")
            out.append(axes.Prune(method=entry.method, ratio=0.5))
            continue
        if entry.ratio is None:
            raise SpecError(f'method "{entry.method}" needs a ratio in (0, 1), e.g. ratio = 0.5',
                            file=file, key=f"{key}[{i}].ratio")
        for j, ratio in enumerate(entry.ratio):
            if not 0 < ratio < 1:
                raise SpecError(f"ratio {ratio} is outside (0, 1); it is the fraction removed",
                                file=file, key=f"{key}[{i}].ratio[{j}]")
            out.append(axes.Prune(method=entry.method, ratio=float(ratio), scope=entry.scope,
                                  round_to=entry.round_to))
    return out


def _check_static(case: Case, *, file: str, where: str) -> None:
    conflicts = axes.static_conflicts(device=case.device, precision=case.precision,
                                      prune=case.prune, compile=case.compile, mode=case.mode)
    if conflicts:
        axis, reason = conflicts[0]
        rule = {"device": case.device, axis: getattr(case, axis)}
        if axis == "prune":
            rule["prune"] = {"method": case.prune.method}
        shown = ", ".join(f"{k} = {_toml(v)}" for k, v in rule.items())
        raise SpecError(f"{case.name}: {reason}; remove that value or add "
                        f"`exclude = [{{ {shown} }}]` to the block",
                        file=file, key=f"{where}.{axis}")


def _check_footprint(case: Case, *, file: str, where: str) -> None:
    size = footprint.estimate(case)
    if size is not None and size.bytes > footprint.MAX_BYTES:
        raise SpecError(f"{case.name} needs {size.describe()}: more memory than any machine "
                        f"has ({footprint.human(footprint.MAX_BYTES)}); use smaller sizes",
                        file=file, key=where)


# ---- exclude rules --------------------------------------------------------------------------
def _exclude_rule(rule: Mapping[str, Any], *, file: str, key: str) -> dict[str, list[Any]]:
    if not rule:
        raise SpecError("an empty exclude rule would drop every case; give at least one axis",
                        file=file, key=key)
    out: dict[str, list[Any]] = {}
    for axis, value in rule.items():
        if axis not in AXES:
            raise SpecError(f'unknown axis "{axis}"{did_you_mean(axis, AXES)} in an exclude '
                            f"rule; axes are {one_of(AXES)}", file=file, key=f"{key}.{axis}")
        out[axis] = value if isinstance(value, list) else [value]
    return out


def _matches(rule: Mapping[str, list[Any]], model: str, params: Mapping[str, Any]) -> bool:
    """A case is excluded when every axis of the rule matches one of the rule's values."""
    for axis, allowed in rule.items():
        value = model if axis == "model" else params[axis]
        if axis == "prune":
            if not any(_prune_matches(value, pattern) for pattern in allowed):
                return False
        elif value not in allowed:
            return False
    return True


def _prune_matches(prune: Any, pattern: Any) -> bool:
    if isinstance(pattern, str):
        return prune.method == pattern
    if isinstance(pattern, dict):
        return all(getattr(prune, k, object()) == v for k, v in pattern.items())
    return False


# ---- names ----------------------------------------------------------------------------------
def _unique_names(cases: list[Case]) -> tuple[Case, ...]:
    """Two cases that differ only in something the name leaves out get an id suffix."""
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.name] = counts.get(case.name, 0) + 1
    return tuple(replace(c, name_suffix=c.case_id[:6]) if counts[c.name] > 1 else c
                 for c in cases)


# ---- error text -----------------------------------------------------------------------------
def _describe(exc: ValidationError, prefix: str = "") -> str:
    """Turn pydantic's errors into lines naming the key path, the value and the fix."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [part for part in error["loc"] if not _is_union_tag(part)]
        key = _key_path(loc, prefix)
        kind = error["type"]
        if kind == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            word = str(loc[-1])
            lines.append(f'{key}: unknown key "{word}"{did_you_mean(word, allowed)}; '
                         f"allowed keys here are {one_of(allowed)}")
        elif kind == "missing":
            lines.append(f"{key}: required key is missing")
        elif kind == "too_short":
            lines.append(f"{key}: must not be empty; give at least one value")
        elif not loc:  # a check of the whole table: the message names the keys
            lines.append(f"{key}: {error['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{key}: {error['msg']}, got {_toml(error.get('input'))}")
    first, *rest = lines
    return first + "".join(f"\n  also {line}" for line in rest[:4])


def _is_union_tag(part: Any) -> bool:
    """pydantic puts the tried union member in the location; users never wrote those."""
    return isinstance(part, str) and (part.startswith(("literal[", "function-")) or
                                      part in ("str", "int", "float", "bool"))


def _key_path(loc: Sequence[Any], prefix: str) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(top level)"


_NESTED: dict[str, type[BaseModel]] = {"suite": SuiteHeader, "sweep": SweepBlock,
                                       "prune": PruneEntry, "decide": DecideTable}


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    """The keys of the table at `loc`, for "did you mean" and the list of allowed keys."""
    shape: type[BaseModel] = SuiteFile
    for part in loc:
        if isinstance(part, str):
            shape = _NESTED.get(part, shape)
    return list(shape.model_fields)


def _toml(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return repr(value)
