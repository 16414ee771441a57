"""Where calibrated peaks live, and finding the one that matches a case's environment.

A calibration is measured once per environment (`archbench calibrate`) and cached as JSON at

    $ARCHBENCH_CACHE_DIR/calibration/<fingerprint hash>.json
    (default: $XDG_CACHE_HOME/archbench, else ~/.cache/archbench)

The hash is `bench.env.fingerprint_hash` of the environment: CPU model, GPU models, torch and
CUDA versions, and the thread count. A run looks a case up with the thread count that case
uses, so a calibration at 2 threads never stands in for a case run at 1. Torch-free.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import env
from bench.results.store import write_json_atomic

SCHEMA_VERSION = 1


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get("ARCHBENCH_CACHE_DIR"):
        return Path(environ["ARCHBENCH_CACHE_DIR"])
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "archbench"


def path_for(environment: Mapping[str, Any], directory: Path | None = None) -> Path:
    return (directory or cache_dir()) / "calibration" / f"{env.fingerprint_hash(environment)}.json"


def save(data: Mapping[str, Any], environment: Mapping[str, Any],
         directory: Path | None = None) -> Path:
    path = path_for(environment, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"schema_version": SCHEMA_VERSION,
                             "fingerprint": env.fingerprint(environment),
                             "fingerprint_hash": env.fingerprint_hash(environment), **data})
    return path


def load(environment: Mapping[str, Any], directory: Path | None = None
         ) -> tuple[dict[str, Any] | None, str | None]:
    """(calibration, None), or (None, why there is none)."""
    path = path_for(environment, directory)
    threads = environment.get("threads")
    hint = f"run `archbench calibrate --threads {threads}`" if isinstance(threads, int) else \
        "run `archbench calibrate`"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None, (f"no calibration for this environment (fingerprint "
                      f"{env.fingerprint_hash(environment)}, threads={threads}); {hint}")
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"unreadable calibration {path}: {exc}; {hint} --force"
    if data.get("schema_version") != SCHEMA_VERSION:
        return None, f"calibration {path} has another schema; {hint} --force"
    return data, None


class Index:
    """Calibrations for the cases of one run, loaded once per thread count."""

    def __init__(self, environment: Mapping[str, Any], directory: Path | None = None) -> None:
        self.environment = dict(environment)
        self.directory = directory
        self._cache: dict[Any, tuple[dict[str, Any] | None, str | None]] = {}

    def for_threads(self, threads: int | None) -> tuple[dict[str, Any] | None, str | None]:
        effective = threads or env.auto_threads()
        if effective not in self._cache:
            self._cache[effective] = load({**self.environment, "threads": effective},
                                          self.directory)
        return self._cache[effective]
