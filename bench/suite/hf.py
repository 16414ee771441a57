"""Hugging Face transformers families as sweepable models: `model = "hf:llama"` builds a
model of that type from its config class with random weights (nothing is downloaded), and
`model = "hf:path/to/dir"` loads one saved with `save_pretrained` (config and weights).

What a family takes is read from its config class: `describe` returns a `Family`, a plain
JSON-able description (config fields, the defaults that matter, which head is built, which
archbench axis sets which config field). Everything after that is pure and torch-free:
`fill_defaults` and `problems` (used by the suite loader, so bad combinations are suite errors
naming the field) and `config_overrides` (used by the worker to build the model) read only the
`Family`, so the loader and the worker cannot disagree.

transformers imports torch, which the parent process never does (it forks workers): the
loader gets its `Family`s from `describe_in_subprocess`, one short-lived interpreter per
suite load; workers call `describe` directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.errors import SpecError, did_you_mean
from bench.suite.models import HF_PREFIX
from bench.suite.spec import Case

#: What to install when transformers is missing.
INSTALL_HINT = "pip install 'archbench[hf]'"
#: Input sizes when the suite gives none: tokens per sequence (the prompt, when generating),
#: image side (unless the config has its own `image_size`), tokens decoded when generating.
DEFAULT_SEQ_LEN = 128
DEFAULT_IMAGE_SIZE = 224
DEFAULT_NEW_TOKENS = 32
#: How the model's head is chosen, in this order: decoder-only language models get their
#: causal-LM head (generation needs it), vision models an image classifier, text encoders a
#: sequence classifier; anything else is the bare model (its first output is compared).
KINDS = ("causal-lm", "image-classification", "text-classification", "base")
#: Axes that change a saved model's architecture: its weights fix them.
ARCHITECTURE_AXES = ("depth", "width", "heads", "kv_heads", "vocab_size", "classes")
#: Config values a Family keeps (where the config has them): what the axes read and check.
KEPT_FIELDS = ("num_hidden_layers", "depths", "hidden_size", "hidden_sizes", "embedding_size",
         "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size",
         "vocab_size", "max_position_embeddings", "image_size", "patch_size", "num_labels")


class HFUnavailable(SpecError):
    """transformers is not installed."""


@dataclass(frozen=True)
class Family:
    """A transformers model type (or saved model) as archbench sweeps it."""

    name: str
    model_type: str
    #: "type" (built from its config class, random weights) or "dir" (save_pretrained folder).
    source: str
    kind: str
    #: "input_ids" or "pixel_values": what the model is fed.
    input_name: str
    #: Every field the config class has (its attribute_map aliases too): model_args keys.
    fields: tuple[str, ...]
    #: The config's values for `KEPT_FIELDS` (those it has).
    defaults: Mapping[str, Any]
    #: archbench axis -> the config field it sets (only the axes this family takes).
    axis_fields: Mapping[str, str]
    #: The folder of a saved model (absolute), None for a model type.
    path: str | None = None
    #: The head class built (`LlamaForCausalLM`): for the record.
    model_class: str = ""
    #: The config's attribute_map (GPT-2's hidden_size -> n_embd ...).
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def axes(self) -> frozenset[str]:
        """The model axes this family takes (input sizes included)."""
        inputs = {"seq_len"} if self.input_name == "input_ids" else {"image_size"}
        return frozenset(self.axis_fields) | inputs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Family:
        return cls(**{**data, "fields": tuple(data["fields"])})


# ---- describing a family (needs transformers) ------------------------------------------------
def describe(name: str, search_path: Sequence[str] = ()) -> Family:
    """The Family of `hf:MODEL_TYPE` or `hf:path/to/dir`; imports transformers (and torch)."""
    target = name.removeprefix(HF_PREFIX)
    try:
        import transformers
        from transformers import CONFIG_MAPPING
    except ImportError:
        raise HFUnavailable(f'model "{name}" needs Hugging Face transformers, which is not '
                            f"installed; install it with: {INSTALL_HINT}") from None
    folder = find_folder(target, search_path)
    if folder is not None:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
        architectures = list(getattr(config, "architectures", None) or [])
        model_class = architectures[0] if architectures else ""
        source, path = "dir", str(folder)
    elif target in CONFIG_MAPPING:
        config = CONFIG_MAPPING[target]()
        model_class, source, path = "", "type", None
    else:
        raise SpecError(_unknown(name, target, search_path, list(CONFIG_MAPPING.keys())))
    kind, model_class = _head(config.model_type, model_class)
    defaults = {key: _plain(getattr(config, key)) for key in KEPT_FIELDS if _has(config, key)}
    fields = sorted(set(_config_fields(config)) | set(getattr(config, "attribute_map", {})))
    input_name = "pixel_values" if kind == "image-classification" or (
        "image_size" in defaults and "vocab_size" not in defaults) else "input_ids"
    return Family(name=name, model_type=config.model_type, source=source, kind=kind,
                  input_name=input_name, fields=tuple(fields), defaults=defaults,
                  axis_fields=_axis_fields(defaults, fields, kind, input_name), path=path,
                  model_class=model_class, aliases=dict(getattr(config, "attribute_map", {})))


def find_folder(target: str, search_path: Sequence[str]) -> Path | None:
    """The saved model's folder: absolute, or relative to the suite's folder or the cwd."""
    bases = [Path(target)] if Path(target).is_absolute() else [Path(b) / target
                                                                for b in (*search_path, ".")]
    for candidate in bases:
        if (candidate / "config.json").is_file():
            return candidate.resolve()
    return None


def _unknown(name: str, target: str, search_path: Sequence[str], types: list[str]) -> str:
    looked = ", ".join(dict.fromkeys([*search_path, "."]))
    if "/" in target or "\\" in target or target.startswith("."):
        return (f'"{name}": no folder "{target}" with a config.json (looked in {looked}). '
                "archbench never downloads: a Hub name cannot be fetched. Save the model with "
                f"save_pretrained() and give hf:path/to/that/folder, or name a model type "
                f"(hf:llama, hf:bert, ...)")
    return (f'"{name}": transformers has no model type "{target}"{did_you_mean(target, types)}'
            f"; give a model type (hf:llama, hf:gpt2, hf:bert, hf:vit, hf:resnet, ...) or the "
            f"folder of a saved model (hf:path/to/dir, looked in {looked}). A Hub name cannot "
            "be fetched: archbench never downloads")


def _head(model_type: str, model_class: str) -> tuple[str, str]:
    """(kind, head class name). A saved model keeps the head it was saved with."""
    from transformers.models.auto import modeling_auto as auto

    mappings: dict[str, Any] = {
        "causal-lm": auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        "image-classification": auto.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
        "text-classification": auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        "base": auto.MODEL_MAPPING_NAMES,
    }
    if model_class:
        for kind, names in mappings.items():
            if model_class in _class_names(names.get(model_type)):
                return kind, model_class
        return "base", model_class
    # A causal-LM head on an encoder (BERT as a decoder) is not a decoder-only model.
    decoder_only = (model_type in mappings["causal-lm"]
                    and model_type not in auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    order = ["causal-lm"] if decoder_only else []
    order += ["image-classification", "text-classification", "base"]
    for kind in order:
        names = _class_names(mappings[kind].get(model_type))
        if names:
            return kind, names[0]
    return "base", ""


def _class_names(entry: Any) -> list[str]:
    if entry is None:
        return []
    return [entry] if isinstance(entry, str) else list(entry)


def _config_fields(config: Any) -> list[str]:
    import dataclasses

    if dataclasses.is_dataclass(config):
        return [f.name for f in dataclasses.fields(config)]
    return [k for k in vars(config) if not k.startswith("_")]


def _has(config: Any, key: str) -> bool:
    try:
        return getattr(config, key) is not None
    except AttributeError:
        return False


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _axis_fields(defaults: Mapping[str, Any], fields: Sequence[str], kind: str,
                 input_name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(defaults.get("num_hidden_layers"), int):
        out["depth"] = "num_hidden_layers"
    elif isinstance(defaults.get("depths"), list):
        out["depth"] = "depths"
    if isinstance(defaults.get("hidden_size"), int):
        out["width"] = "hidden_size"
    elif isinstance(defaults.get("hidden_sizes"), list):
        out["width"] = "hidden_sizes"
    if isinstance(defaults.get("num_attention_heads"), int):
        out["heads"] = "num_attention_heads"
    if "num_key_value_heads" in fields:
        out["kv_heads"] = "num_key_value_heads"
    if input_name == "input_ids" and "vocab_size" in defaults:
        out["vocab_size"] = "vocab_size"
    if kind in ("image-classification", "text-classification"):
        out["classes"] = "num_labels"
    return out


# ---- the loader's side: one subprocess per suite load ---------------------------------------
def describe_in_subprocess(names: Sequence[str], search_path: Sequence[str] = (),
                           timeout_s: float = 300.0) -> dict[str, Family | SpecError]:
    """`describe` for each name, run in a child interpreter so this process never imports
    torch; a name that cannot be described maps to its SpecError (unknown type, no folder,
    transformers missing)."""
    if not names:
        return {}
    request = json.dumps({"names": list(names), "search_path": list(search_path)})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    code = "from bench.suite.hf import _serve; _serve()"
    try:
        done = subprocess.run([sys.executable, "-c", code], input=request, text=True,
                              capture_output=True, timeout=timeout_s, env=env, check=False)
    except subprocess.TimeoutExpired:
        raise SpecError(f"describing the transformers models {', '.join(names)} took more than "
                        f"{timeout_s:g} s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise SpecError("could not describe the transformers models "
                        f"{', '.join(names)}: " + " | ".join(tail))
    answer = json.loads(lines[-1])
    out: dict[str, Family | SpecError] = {}
    for name in names:
        entry = answer[name]
        out[name] = (Family.from_json(entry["family"]) if "family" in entry
                     else SpecError(entry["error"]))
    return out


def _serve() -> None:
    """The subprocess's side of `describe_in_subprocess`: JSON in on stdin, JSON out."""
    import warnings

    warnings.simplefilter("ignore")
    request = json.loads(sys.stdin.read())
    answer: dict[str, Any] = {}
    for name in request["names"]:
        try:
            answer[name] = {"family": describe(name, request["search_path"]).to_json()}
        except SpecError as exc:
            answer[name] = {"error": str(exc)}
        except Exception as exc:  # a config class that fails to build: say which and why
            answer[name] = {"error": f'"{name}": its config could not be built: '
                                     f"{type(exc).__name__}: {exc}"}
    print(json.dumps(answer))


# ---- pure: defaults, checks and the config a case builds -------------------------------------
def fill_defaults(family: Family, case: Case) -> Case:
    """The case with its input sizes filled in (made to fit the family) and `new_tokens` set
    only when generating."""
    changes: dict[str, Any] = {}
    if family.input_name == "input_ids":
        if case.seq_len is None:
            changes["seq_len"] = DEFAULT_SEQ_LEN
    elif case.image_size is None:
        image = family.defaults.get("image_size")
        changes["image_size"] = image if isinstance(image, int) else DEFAULT_IMAGE_SIZE
    if case.mode == "generate":
        if case.new_tokens is None:
            changes["new_tokens"] = DEFAULT_NEW_TOKENS
    elif case.new_tokens is not None:
        changes["new_tokens"] = None
    return replace(case, **changes) if changes else case


def problems(family: Family, case: Case) -> list[tuple[str, str]]:
    """What makes this case impossible, as (key, reason) pairs; the key is the suite key to
    fix (`width`, `model_args.hidden_size`, ...)."""
    found: list[tuple[str, str]] = []
    label = family.name
    for axis in ("depth", "width", "heads", "kv_heads", "vocab_size", "classes", "seq_len",
                 "image_size"):
        if getattr(case, axis) is not None and axis not in family.axes:
            found.append((axis, f"{label} does not take `{axis}` ({_why_not(family, axis)})"))
    if family.source == "dir":
        fixed = [a for a in ARCHITECTURE_AXES if getattr(case, a) is not None]
        if fixed or case.model_args:
            key = fixed[0] if fixed else "model_args"
            found.append((key, f"{label} is a saved model: its weights fix its architecture, "
                               "so only seq_len, image_size, batch_size, new_tokens and the "
                               "transforms can be swept"))
    args = dict(case.model_args)
    for key in args:
        if key not in family.fields:
            found.append((f"model_args.{key}",
                          f'{family.model_type} configs have no field "{key}"'
                          f"{did_you_mean(key, family.fields)}"))
        owner = next((a for a, f in family.axis_fields.items()
                      if _same_field(family, f, key) and getattr(case, a) is not None), None)
        if owner is not None:
            found.append((f"model_args.{key}", f"`{owner}` already sets {key}; give it once"))
    if found:
        return found
    config = effective_config(family, case)
    hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
    kv = config.get("num_key_value_heads")
    head_key = "heads" if case.heads is not None else "width"
    attention = "hidden_size" in family.axis_fields.values()
    if (attention and isinstance(hidden, int) and isinstance(heads, int)
            and (heads < 1 or hidden % heads)):
        found.append((head_key, f"hidden size {hidden} is not divisible by {heads} heads; "
                                "choose heads that divide the width"))
    if isinstance(heads, int) and isinstance(kv, int) and (kv < 1 or heads % kv):
        found.append(("kv_heads", f"{heads} attention heads cannot be shared among {kv} "
                                  "key/value heads; kv_heads must divide heads"))
    positions = config.get("max_position_embeddings")
    needed = (case.seq_len or 0) + (case.new_tokens or 0)
    if family.input_name == "input_ids" and isinstance(positions, int) and needed > positions:
        what = (f"seq_len {case.seq_len} + new_tokens {case.new_tokens}"
                if case.new_tokens else f"seq_len {case.seq_len}")
        fix = ("lower seq_len" if family.source == "dir" else
               f"lower seq_len or set model_args.max_position_embeddings >= {needed}")
        found.append(("seq_len", f"{what} exceeds the {positions} positions {label} has; {fix}"))
    patch = config.get("patch_size")
    if case.image_size is not None and isinstance(patch, int) and case.image_size % patch:
        found.append(("image_size", f"image_size {case.image_size} is not a multiple of "
                                    f"{label}'s patch_size {patch}"))
    if case.mode == "generate" and family.kind != "causal-lm":
        found.append(("mode", f'mode "generate" needs a decoder-only language model '
                              f"(hf:llama, hf:gpt2, ...); {label} is {_a(family.kind)}"))
    if case.mode == "train" and family.kind not in ("image-classification",
                                                    "text-classification"):
        found.append(("mode", f'mode "train" needs a classifier (batch, classes) output; '
                              f"{label} is {_a(family.kind)}"))
    return found


def _a(kind: str) -> str:
    return {"causal-lm": "a causal language model", "base": "a bare model without a head",
            "image-classification": "an image classifier",
            "text-classification": "a text classifier"}[kind]


def _why_not(family: Family, axis: str) -> str:
    if axis in ("seq_len", "vocab_size") and family.input_name != "input_ids":
        return "it takes images"
    if axis == "image_size":
        return "it takes token ids"
    if axis == "classes":
        return f"it is {_a(family.kind)}, not a classifier"
    field_name = {"depth": "num_hidden_layers", "width": "hidden_size",
                  "heads": "num_attention_heads", "kv_heads": "num_key_value_heads"}[axis]
    return f"its config has no {field_name}"


def _same_field(family: Family, field_name: str, key: str) -> bool:
    """Whether model_args key `key` names config field `field_name`, directly or by alias."""
    aliases = family.aliases
    return aliases.get(key, key) == aliases.get(field_name, field_name)


def effective_config(family: Family, case: Case) -> dict[str, Any]:
    """The config values the case's model will have (defaults, then the case's overrides)."""
    return {**family.defaults, **config_overrides(family, case)}


def config_overrides(family: Family, case: Case) -> dict[str, Any]:
    """The config keywords that make the case's architecture: the axes mapped onto the
    family's fields (keeping its MLP ratio and head size where only the width is given),
    then `model_args` as given."""
    d, out = family.defaults, dict[str, Any]()
    fields = family.axis_fields
    if case.depth is not None:
        out[fields["depth"]] = (case.depth if fields["depth"] == "num_hidden_layers"
                                else [case.depth] * len(d["depths"]))
    if case.width is not None and fields.get("width") == "hidden_sizes":
        scale = case.width / d["hidden_sizes"][0]
        out["hidden_sizes"] = [max(1, round(h * scale)) for h in d["hidden_sizes"]]
        if isinstance(d.get("embedding_size"), int):
            out["embedding_size"] = max(1, round(d["embedding_size"] * scale))
    elif case.width is not None and fields.get("width") == "hidden_size":
        out["hidden_size"] = case.width
        if isinstance(d.get("intermediate_size"), int):
            out["intermediate_size"] = max(1, round(d["intermediate_size"] * case.width
                                                     / d["hidden_size"]))
    heads = case.heads
    if heads is None and case.width is not None and "heads" in fields:
        heads = _heads_for(case.width, _head_dim(d))
    if heads is not None:
        out["num_attention_heads"] = heads
        hidden = out.get("hidden_size", d.get("hidden_size"))
        if "head_dim" in family.fields and isinstance(hidden, int):
            out["head_dim"] = hidden // heads if heads else None
    kv = case.kv_heads
    if kv is None and heads is not None and "kv_heads" in fields:
        kv = _kv_for(heads, d)
    if kv is not None:
        out["num_key_value_heads"] = kv
    if case.vocab_size is not None:
        out["vocab_size"] = case.vocab_size
    if case.classes is not None:
        out["num_labels"] = case.classes
    if case.image_size is not None and "image_size" in family.fields and family.source != "dir":
        out["image_size"] = case.image_size
    for key, value in case.model_args:
        out[key] = list(value) if isinstance(value, tuple) else value
    return out


def _head_dim(defaults: Mapping[str, Any]) -> int:
    if isinstance(defaults.get("head_dim"), int):
        return int(defaults["head_dim"])
    return max(1, defaults["hidden_size"] // defaults["num_attention_heads"])


def _heads_for(width: int, head_dim: int) -> int:
    """Heads for a width given alone: the family's head size kept (at least one head), the
    count lowered until it divides the width."""
    heads = max(1, width // head_dim)
    while width % heads:
        heads -= 1
    return heads


def _kv_for(heads: int, defaults: Mapping[str, Any]) -> int:
    """Key/value heads when only the heads change: the family's sharing ratio where it
    divides, else one key/value head per head (plain multi-head attention)."""
    base_heads, base_kv = defaults.get("num_attention_heads"), defaults.get("num_key_value_heads")
    if isinstance(base_heads, int) and isinstance(base_kv, int) and base_kv:
        group = base_heads // base_kv
        if group >= 1 and heads % group == 0:
            return heads // group
    return heads


def preload_modules(cases: Sequence[Case]) -> list[str]:
    """Modules a worker of these cases imports (transformers and each family's modeling
    module), so a preloading process can import them once. Torch-free: module names only."""
    types: list[str] = []
    for case in cases:
        if not case.model.startswith(HF_PREFIX):
            continue
        target = case.model.removeprefix(HF_PREFIX)
        model_type = target if "/" not in target else _saved_type(target)
        if model_type and model_type not in types:
            types.append(model_type)
    if not types:
        return []
    return ["transformers", "bench.measure.models.hf",
            *(f"transformers.models.{_module_name(t)}.modeling_{_module_name(t)}"
              for t in types)]


def _saved_type(target: str) -> str | None:
    try:
        return str(json.loads((Path(target) / "config.json").read_text())["model_type"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _module_name(model_type: str) -> str:
    """transformers' module folder for a model type (its own rule: '-' becomes '_')."""
    return model_type.replace("-", "_")

