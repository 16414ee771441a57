"""Reference pages generated from the code when the site is built, so they cannot drift.

A page asks for a generated part with a marker on a line of its own::

    <!-- generated: settings -->

and this mkdocs hook (`hooks:` in mkdocs.yml) replaces the marker with markdown rendered from
the code that owns the facts: the command line from `bench.cli.build_parser()`, the settings
from the `Settings` dataclass (its `#:` comments, defaults and bounds), the axes from the suite
loader's models, the models from their registry, the gated metrics from the gate's registry,
the pytest options from the plugin. Where markdown is read as it is (on GitHub) the marker
is an invisible comment. An unknown marker fails the build. tests/test_docs.py renders every
part too, so a broken generator fails the tests as well as the docs build.
"""

from __future__ import annotations

import argparse
import inspect
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.M)
#: Width of the usage lines in the command-line reference (argparse wraps to it).
USAGE_WIDTH = 90


# ---- the mkdocs hook -------------------------------------------------------------------------
def on_page_markdown(markdown: str, **_: Any) -> str:
    return expand(markdown)


def expand(markdown: str) -> str:
    """The page with every marker replaced by its generated markdown."""
    def render(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated part {name!r}; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]().rstrip("\n")

    return MARKER.sub(render, markdown)


# ---- helpers ---------------------------------------------------------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """The `#:` comment lines above each field of a class body, joined, by field name."""
    docs: dict[str, str] = {}
    pending: list[str] = []
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#:"):
            pending.append(stripped[2:].strip())
            continue
        field = re.match(r"\s{4}(\w+)\s*:", line)
        if field and pending:
            docs[field.group(1)] = " ".join(pending)
        pending = []
    return docs


def cell(text: Any) -> str:
    """Text that stays inside one markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def toml_value(value: Any) -> str:
    """A default as it is written in a suite file."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str):
        return f'`"{value}"`'
    if isinstance(value, list):
        return "`[" + ", ".join(toml_value(v).strip("`") for v in value) + "]`"
    if isinstance(value, float):
        return f"`{value:g}`" if value != int(value) else f"`{value:.1f}`"
    return f"`{value}`"


def _number(value: float) -> str:
    if value == 7 * 24 * 3600:
        return "604800 (a week)"
    if value >= 2**62:
        return "2⁶³ − 1"
    if value == int(value):
        return f"{int(value):,}".replace(",", " ") if abs(value) >= 10_000 else f"{int(value)}"
    return f"{value:g}"


def allowed(schema: dict[str, Any]) -> str:
    """What a JSON-schema property admits, in words: choices or bounds."""
    if "anyOf" in schema:
        parts = [allowed(option) for option in schema["anyOf"] if option.get("type") != "null"]
        return " or ".join(p for p in parts if p)
    if "const" in schema:
        return f'`"{schema["const"]}"`'
    if "enum" in schema:
        return ", ".join(f'`"{v}"`' for v in schema["enum"])
    kind = schema.get("type")
    if kind == "boolean":
        return "`true`, `false`"
    if kind == "array":
        return allowed(schema.get("items", {}))
    low = ("≥ " + _number(schema["minimum"])) if "minimum" in schema else \
        ("> " + _number(schema["exclusiveMinimum"])) if "exclusiveMinimum" in schema else ""
    high = ("≤ " + _number(schema["maximum"])) if "maximum" in schema else \
        ("< " + _number(schema["exclusiveMaximum"])) if "exclusiveMaximum" in schema else ""
    words = {"integer": "an integer", "number": "a number", "string": "a string"}.get(kind, "")
    bounds = ", ".join(b for b in (low, high) if b)
    return f"{words} {bounds}".strip() if bounds else words


# ---- the suite file --------------------------------------------------------------------------
def settings_table() -> str:
    """Every measurement setting: default, what it admits, what it does."""
    from pydantic import TypeAdapter

    from bench.suite.spec import Settings

    schema = TypeAdapter(Settings).json_schema()["properties"]
    docs = field_docs(Settings)
    rows = ["| setting | default | allowed | meaning |", "|---|---|---|---|"]
    for name, prop in schema.items():
        rows.append(f"| `{name}` | {toml_value(prop.get('default'))} | {cell(allowed(prop))} "
                    f"| {cell(docs[name])} |")
    return "\n".join(rows)


def axes_table() -> str:
    """Every key of a `[[sweep]]` block: values, default, meaning."""
    from bench.suite import loader

    schema = loader.SweepBlock.model_json_schema()
    docs = field_docs(loader.SweepBlock)
    props = schema["properties"]
    rows = ["| key | values | default | meaning |", "|---|---|---|---|"]
    for name, prop in props.items():
        values = allowed(prop)
        if name == "prune":
            values = '`"none"` or pruning tables'
        elif name in ("model_args", "exclude", "settings"):
            values = "a table" if name != "exclude" else "a list of tables"
        elif name == "device":
            values = '`"cpu"`, `"cuda"`, `"cuda:N"`'
        elif name == "model":
            values = "a model name (below) or a factory path"
        elif prop.get("type") == "array" or "anyOf" in prop:
            values = values or "integers"
        required = name in schema.get("required", [])
        default = "required" if required else (
            "per model" if prop.get("default") is None and name not in ("model_args",)
            else toml_value(prop.get("default")))
        if name == "prune":
            default = '`"none"`'
        rows.append(f"| `{name}` | {cell(values)} | {cell(default)} | {cell(docs[name])} |")
    return "\n".join(rows)


def prune_table() -> str:
    """The keys of a pruning table."""
    from bench.suite import loader

    return "\n".join(keys_table(loader.PruneEntry,
                                 {"ratio": "a number or a list of numbers"}))


def keys_table(model: Any, values: Mapping[str, str]) -> list[str]:
    """The rows of a table of a suite table's keys: the values each takes (`allowed`, or
    `values[key]`), its default ("required" without one) and its `#:` comment."""
    schema = model.model_json_schema()
    docs = field_docs(model)
    rows = ["| key | values | default | meaning |", "|---|---|---|---|"]
    for name, prop in schema["properties"].items():
        default = "required" if name in schema.get("required", []) else \
            toml_value(prop.get("default"))
        rows.append(f"| `{name}` | {cell(values.get(name) or allowed(prop))} | {cell(default)} "
                    f"| {cell(docs[name])} |")
    return rows


def models_table() -> str:
    """The built-in models: what each is, the axes it takes with default and bounds."""
    from bench.suite import models

    rows = ["| model | architecture | takes: default (bounds) |", "|---|---|---|"]
    for name in models.known():
        info = models.get(name)
        takes = []
        for axis in models.MODEL_AXES:
            if axis not in info.axes:
                continue
            default = info.defaults.get(axis)
            if axis == "activation":
                takes.append(f"`{axis}` {default}")
                continue
            low, high = info.bounds_of(axis)
            takes.append(f"`{axis}` {default} ({low}–{_number(high)})")
        rows.append(f"| `{name}` | {cell(info.summary)} | {cell(', '.join(takes))} |")
    return "\n".join(rows)


def precisions_table() -> str:
    """The precisions: what each means and where it runs."""
    from bench.suite import axes

    rows = ["| precision | what | devices | trains |", "|---|---|---|---|"]
    for info in axes.PRECISIONS.values():
        rows.append(f"| `{info.name}` | {cell(info.summary)} | {', '.join(info.devices)} | "
                    f"{'yes' if info.trains else 'no'} |")
    return "\n".join(rows)


def decide_table() -> str:
    """The keys of a `[decide]` table, the objectives and the units a constraint may use."""
    from bench.suite import loader, question

    rows = keys_table(loader.DecideTable, {"constraints": "a list of strings"})
    rows += ["", "| objective or short name | column |", "|---|---|"]
    rows += [f"| `{short}` | `{column}` |" for short, column in question.ALIASES.items()]
    rows += ["", "| a metric whose name ends in | takes the units |", "|---|---|"]
    examples = {"_ms": "p99_ms", "_s": "duration_s", "_bytes": "peak_rss_bytes",
                "_j": "energy_per_item_j", "_w": "power_mean_w",
                "_items_s": "throughput_items_s", "fidelity_…": "fidelity_top1_agreement"}
    for suffix, metric in examples.items():
        units, _ = question.units_of(metric)
        rows.append(f"| `{suffix}` | {', '.join(f'`{u}`' for u in units)} |")
    return "\n".join(rows)


def limits_list() -> str:
    """The limits a suite is checked against, from the constants that enforce them."""
    from bench.suite import footprint, loader, models, spec

    axis_max = ", ".join(f"`{axis}` ≤ {_number(high)}" for axis, high in models.AXIS_MAX.items())
    return "\n".join([
        f"- integer axes: {axis_max}; `batch_size` ≤ {_number(loader.MAX_BATCH_SIZE)};",
        f"- durations ≤ {spec.MAX_SECONDS:,.0f} s (a week), counts ≤ {spec.MAX_COUNT:,}, "
        "`seed` < 2⁶³ − 1;".replace(",", " "),
        f"- arrays and tables nest at most {loader.MAX_NESTING} levels;",
        f"- a block expands to at most {loader.MAX_CASES:,} cases;".replace(",", " "),
        f"- a built-in model's estimated memory ≤ {footprint.MAX_BYTES // 2**40} TiB "
        "(beyond the device's memory the case is recorded `unsupported` with the estimate).",
    ])


# ---- results ---------------------------------------------------------------------------------
def record_fields() -> str:
    """The fields of one line of results.jsonl."""
    import dataclasses

    from bench.results.record import Record

    docs = field_docs(Record)
    rows = ["| field | meaning |", "|---|---|"]
    for f in dataclasses.fields(Record):
        rows.append(f"| `{f.name}` | {cell(docs.get(f.name, RECORD_NOTES.get(f.name, '')))} |")
    return "\n".join(rows)


#: Record fields whose meaning the dataclass states by name and type alone.
RECORD_NOTES = {
    "run_id": "the run folder's id",
    "case_id": "hash of the case's parameters (never its settings): the same workload has the "
               "same id in every run",
    "name": "the readable case name (`mlp-d4-w512-relu-b32-fp32-cpu`)",
    "suite": "the suite's name",
    "params": "the case's parameters, every axis (None where it does not apply)",
    "settings": "the measurement settings the case ran with",
    "status": "`ok`, `unsupported`, `failed`, `oom`, `crashed` or `timeout`",
    "reason": "why the case did not measure (its message)",
    "traceback": "the worker's traceback or crash stack, when there is one",
    "timing": "raw samples (`samples_ns`) and how they were taken (block size, warm-up, stop "
              "reason; per-worker medians when merged)",
    "metrics": "flat scalars with units in their names (parameters, FLOPs, memory, fidelity, "
               "energy...)",
    "warnings": "what the reader should know (emulated bf16, recompiles, noise...)",
    "sweep": "the name of the sweep block the case came from",
    "started_at": "when the worker started (ISO 8601)",
    "duration_s": "the worker's wall time, build to teardown",
    "schema_version": "the record schema's version",
}


# ---- the gate --------------------------------------------------------------------------------
def gate_metrics_table() -> str:
    """The metrics `compare` and `ab` gate, how and how far each may move by default."""
    from bench.gate.thresholds import metric_specs

    rows = ["| metric | kind | default threshold | worse when |", "|---|---|---|---|"]
    for spec in metric_specs().values():
        threshold = f"{spec.threshold:g}" + ("" if spec.absolute else "%")
        worse = "it rises" if spec.lower_is_better else "it falls"
        if spec.kind == "exact":
            worse = "it changes at all" if spec.threshold == 0 else worse
        rows.append(f"| `{spec.name}` | {spec.kind} | {threshold} | {worse} |")
    return "\n".join(rows)


# ---- front ends ------------------------------------------------------------------------------
def commands_table() -> str:
    """Every `archbench` command with its one-line help."""
    rows = ["| command | what it does |", "|---|---|"]
    for name, _parser, help_text in _subcommands(_root()):
        anchor = f"archbench-{name}"
        rows.append(f"| [`archbench {name}`](#{anchor}) | {cell(help_text)} |")
    return "\n".join(rows)


def exit_codes_table() -> str:
    """What each command's epilog says about its exit codes."""
    rows = ["| command | exit codes |", "|---|---|"]
    for name, parser, _ in _subcommands(_root()):
        said = (parser.epilog or "").partition("Exit codes:")[2].strip()
        rows.append(f"| `archbench {name}` | {cell(said) if said else 'the general rule'} |")
    return "\n".join(rows)


def cli_reference() -> str:
    """Every command and subcommand: usage, description, options, from the parsers."""
    out: list[str] = []
    for name, parser, _ in _subcommands(_root()):
        out += _parser_section(f"archbench {name}", parser, level=3)
    return "\n".join(out)


def _root() -> argparse.ArgumentParser:
    from bench.cli import build_parser

    return build_parser()


def _subcommands(parser: argparse.ArgumentParser
                 ) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, sub, helps.get(name, "")


def _parser_section(title: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    formatter = parser.formatter_class(prog=parser.prog, width=USAGE_WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, "")
    usage = formatter.format_help().strip()
    out = [f"{'#' * level} `{title}`", "", "```text", usage, "```", ""]
    if parser.description:
        out += [parser.description, ""]
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        if action.option_strings:
            metavar = formatter._format_args(action, action.dest.upper()) if action.nargs != 0 \
                else ""
            flags = ", ".join(f"`{s}{' ' + metavar if metavar else ''}`"
                              for s in action.option_strings)
        else:
            flags = f"`{formatter._metavar_formatter(action, action.dest)(1)[0]}`"
        help_text = formatter._expand_help(action) if action.help else ""
        if action.choices and not isinstance(action, argparse._SubParsersAction) and \
                "{" not in flags:
            help_text += f" (one of {', '.join(map(str, action.choices))})"
        if action.required and action.option_strings:
            help_text = "required. " + help_text
        rows.append(f"| {cell(flags)} | {cell(help_text)} |")
    if rows:
        out += ["| argument | meaning |", "|---|---|", *rows, ""]
    if parser.epilog:
        out += [parser.epilog, ""]
    for name, sub, _ in _subcommands(parser):
        out += _parser_section(f"{title} {name}", sub, level=level + 1)
    return out


def pytest_options_table() -> str:
    """The pytest plugin's command-line options, from its `pytest_addoption`."""
    from bench.pytest import plugin

    recorded: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    class Group:
        def addoption(self, *names: str, **options: Any) -> None:
            recorded.append((names, options))

    class Parser:
        def getgroup(self, *_: Any, **__: Any) -> Group:
            return Group()

    plugin.pytest_addoption(Parser())  # type: ignore[arg-type]
    rows = ["| option | meaning |", "|---|---|"]
    for names, options in recorded:
        metavar = options.get("metavar") or ("{" + ",".join(options["choices"]) + "}"
                                             if options.get("choices") else "")
        if options.get("action") == "store_true":
            metavar = ""
        flag = ", ".join(f"`{n}{' ' + metavar if metavar else ''}`" for n in names)
        help_text = str(options.get("help", "")).replace("%%", "%")
        if options.get("default") not in (None, [], False) and "default" not in help_text:
            help_text += f" (default {options['default']})"
        rows.append(f"| {cell(flag)} | {cell(help_text)} |")
    return "\n".join(rows)


GENERATORS: dict[str, Callable[[], str]] = {
    "commands": commands_table,
    "cli": cli_reference,
    "exit-codes": exit_codes_table,
    "settings": settings_table,
    "axes": axes_table,
    "prune": prune_table,
    "models": models_table,
    "precisions": precisions_table,
    "decide": decide_table,
    "limits": limits_list,
    "record-fields": record_fields,
    "gate-metrics": gate_metrics_table,
    "pytest-options": pytest_options_table,
}
