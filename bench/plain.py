"""Plain JSON values: the one sanitiser for everything archbench writes or sends between
processes.

Numpy and torch scalars become Python numbers (unpickling a torch object in the parent would
import torch; even `torch.__version__` is a str subclass), NaN and infinity become null
(standard JSON every tool reads), tuples become lists, mapping keys become strings, and
anything else becomes its `str`.
"""

from __future__ import annotations

import math
from typing import Any

_SCALARS = (bool, int, float, str)


def plain(value: Any) -> Any:
    if value is None:
        return None
    if type(value) in _SCALARS:
        return None if type(value) is float and not math.isfinite(value) else value
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    for kind in _SCALARS:
        if isinstance(value, kind):  # subclasses (str enums, torch's version string)
            return plain(kind(value))
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        return plain(value.item())  # numpy / torch scalars
    return str(value)
