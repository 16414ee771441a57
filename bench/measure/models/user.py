"""User factories: `model = "package.module:function"` or `"path/to/file.py:function"`.

The contract (also in docs/guides/suites.md)::

    def my_factory(case: bench.suite.spec.Case) -> tuple[torch.nn.Module, Callable[[int], Tensor]]:
        # case.depth, case.width, case.activation, case.features, case.image_size,
        # case.seq_len, case.classes are what the suite gave (None where it gave nothing);
        # dict(case.model_args) holds the block's free-form `model_args`.
        module = ...
        def make_input(batch_size: int) -> torch.Tensor | tuple[torch.Tensor, ...]:
            return torch.randn(batch_size, 3, 224, 224)
        return module, make_input

archbench seeds torch's RNG before calling the factory and before calling make_input, so
weights and inputs are the same on every run. Modules are looked up on the suite's folder and
the current directory first, then on the normal import path.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.errors import BuildError


def load_factory(model: str, search_path: Sequence[str] = ()) -> Callable[..., Any]:
    target, _, function = model.rpartition(":")
    module = _load_file(target, search_path) if target.endswith(".py") else _import(target,
                                                                                    search_path)
    factory = getattr(module, function, None)
    if not callable(factory):
        raise BuildError(f'"{target}" has no function "{function}" (model "{model}")')
    return factory


def _import(name: str, search_path: Sequence[str]) -> Any:
    added = [p for p in search_path if p not in sys.path]
    sys.path[:0] = added
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            looked = ", ".join(search_path) or "the import path"
            raise BuildError(f'cannot import "{name}": no module "{exc.name}" (looked in '
                             f"{looked} and the import path); check the spelling or install the "
                             "package") from None
        raise
    finally:
        for p in added:
            sys.path.remove(p)


def _load_file(path: str, search_path: Sequence[str]) -> Any:
    candidates = [Path(path)] if Path(path).is_absolute() else [Path(base) / path
                                                                for base in search_path]
    for candidate in candidates:
        if candidate.is_file():
            spec = importlib.util.spec_from_file_location(f"archbench_user_{candidate.stem}",
                                                          candidate)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise BuildError(f'no file "{path}" (looked in {", ".join(map(str, candidates))})')
