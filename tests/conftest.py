from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

#: Short measuring windows and one worker per case for tests; the defaults stay honest for
#: users. Tests of several workers per case (`repeats = "auto"` by default) set it back.
FAST_SETTINGS = """
[settings]
warmup_iters = 1
warmup_time_s = 0.0
min_samples = 5
min_time_s = 0.0
max_time_s = 0.05
timeout_s = 60
repeats = 1
"""


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[..., Path]:
    """Write a suite file; `fast=True` prepends the short test settings."""
    counter = iter(range(1000))

    def write(body: str, *, fast: bool = True, name: str = "t", folder: Path | None = None) -> Path:
        text = f'[suite]\nname = "{name}"\n'
        if fast:
            text += FAST_SETTINGS
        text += textwrap.dedent(body)
        path = (folder or tmp_path) / f"suite{next(counter)}.toml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` need a GPU; here they are skipped with the reason."""
    import torch

    if torch.cuda.is_available():
        return
    why = ("no CUDA device (torch " + torch.__version__ + ", cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=why))
