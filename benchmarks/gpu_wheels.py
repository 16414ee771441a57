"""The wheels that carry archbench's missing dependencies to a GPU machine with no internet.

The GPU machines this check is run on (benchmarks/README.md, "A lent GPU") have Python 3.12
with a CUDA torch 2.11 and most of archbench's dependencies (PRESENT), but no package registry.
What is missing travels as wheels beside the working tree, at most 64 MiB in all:

    python -m benchmarks.gpu_wheels [--dest .whl] [--no-ray]

1. downloads each pinned wheel (CARRY) for CPython 3.12 on manylinux x86_64, without its
   dependencies: the closure is checked in step 3 instead, against what the machine has;
2. rewrites Ray's wheel without `ray/jars/` — the Java workers' jar, 31 of its 75 MiB, which
   Python tasks never load — so that Ray fits;
3. checks that every requirement of every wheel (markers evaluated for that machine) is
   carried or already there, and that no package is carried twice;
4. prints each wheel's size and what would travel (the wheels plus the working tree: tracked
   and untracked-not-ignored files) against the 64 MiB limit. Exit 1 when a requirement is
   missing or the total is over.

On the machine, before the check: `python3 -m pip install -q --no-index --no-deps --no-compile
--no-cache-dir --upgrade --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site`.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
TRAVEL_LIMIT_BYTES = 64 * 2**20

#: name -> (version, why it travels). The versions are those tox installs here, except
#: torchao: 0.17.0 is the release built for torch 2.11 (it loads its kernels from 2.11 on).
CARRY: dict[str, tuple[str, str]] = {
    "pydantic": ("2.14.4", "suite and record validation"),
    "pydantic-core": ("2.50.5", "pydantic's compiled core"),
    "annotated-types": ("0.8.0", "pydantic"),
    "typing-inspection": ("0.4.5", "pydantic"),
    "typing-extensions": ("4.16.0", "pydantic needs >= 4.16; the machine's may be older"),
    "torch-pruning": ("1.6.1", "structured pruning (the quickstart's structured cases)"),
    "torchao": ("0.17.0", "int8-weight-only and fp8"),
    "ray": ("2.60.0", "--executor ray (without its Java jar)"),
    "jsonschema": ("4.26.0", "ray"),
    "jsonschema-specifications": ("2025.9.1", "ray"),
    "referencing": ("0.37.0", "ray"),
    "rpds-py": ("2026.9.1", "ray"),
}
RAY_ONLY = ("ray", "jsonschema", "jsonschema-specifications", "referencing", "rpds-py")
#: Not carried: plotly (the HTML report; the check runs with --no-report) and duckdb (history).
#: Installed on the machine (its image's package list), of what the carried wheels need.
PRESENT = frozenset(canonicalize_name(n) for n in (
    "torch", "numpy", "scipy", "pandas", "psutil", "nvidia-ml-py", "rich", "pyarrow", "pytest",
    "pytest-timeout", "triton", "click", "filelock", "msgpack", "packaging", "protobuf",
    "pyyaml", "requests", "aiohappyeyeballs", "aiosignal", "attrs", "frozenlist", "multidict",
    "propcache", "yarl", "idna", "aiohttp", "typing-extensions"))
#: The machine: CPython 3.12 on Linux x86_64 (manylinux tags as pip matches them: exactly).
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64")
MARKERS = {**default_environment(), "python_version": "3.12", "python_full_version": "3.12.3",
           "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
           "os_name": "posix"}


def download(names: list[str], dest: Path) -> None:
    specs = [f"{name}=={CARRY[name][0]}" for name in names]
    platforms = [arg for p in PLATFORMS for arg in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                    *platforms, "--dest", str(dest), "--quiet", *specs], check=True)


def wheel_name(path: Path) -> str:
    return canonicalize_name(path.name.split("-")[0])


def strip_jars(path: Path) -> int:
    """Rewrite a Ray wheel without ray/jars/ (and their RECORD lines); the bytes saved."""
    before, stripped = path.stat().st_size, path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(stripped, "w",
                                                       zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            if item.filename.startswith("ray/jars/"):
                continue
            data = src.read(item)
            if item.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True)
                                if not line.startswith(b"ray/jars/"))
            dst.writestr(item, data)
    stripped.replace(path)
    return before - path.stat().st_size


def requirements(path: Path) -> list[Requirement]:
    """The wheel's requirements that apply on the machine (no extras, markers evaluated)."""
    with zipfile.ZipFile(path) as wheel:
        metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
        text = wheel.read(metadata).decode()
    out = []
    for line in re.findall(r"^Requires-Dist: (.+)$", text, flags=re.MULTILINE):
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({**MARKERS, "extra": ""}):
            out.append(requirement)
    return out


def missing(wheels: list[Path]) -> list[str]:
    carried = {wheel_name(w) for w in wheels}
    problems = []
    for wheel in wheels:
        for requirement in requirements(wheel):
            name = canonicalize_name(requirement.name)
            if name not in carried and name not in PRESENT:
                problems.append(f"{wheel.name} needs {requirement}, neither carried nor there")
    return problems


def tree_bytes() -> int:
    """What travels of the checkout: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
    paths = {ROOT / p for p in listed.stdout.decode().split("\0") if p}
    return sum(p.stat().st_size for p in paths if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / ".whl",
                        help="folder for the wheels (default .whl, ignored by git); emptied")
    parser.add_argument("--no-ray", action="store_true",
                        help="leave Ray and its dependencies out (the Ray row is then n/a)")
    args = parser.parse_args(argv)
    names = [n for n in CARRY if not (args.no_ray and n in RAY_ONLY)]
    shutil.rmtree(args.dest, ignore_errors=True)
    args.dest.mkdir(parents=True)
    download(names, args.dest)
    wheels = sorted(args.dest.glob("*.whl"))
    saved = sum(strip_jars(w) for w in wheels if wheel_name(w) == "ray")
    duplicates = {wheel_name(w) for w in wheels if
                  sum(wheel_name(x) == wheel_name(w) for x in wheels) > 1}
    problems = missing(wheels) + [f"{n} is carried twice" for n in sorted(duplicates)]
    for wheel in wheels:
        size = wheel.stat().st_size
        print(f"{size / 2**20:8.2f} MiB  {wheel.name}  ({CARRY[wheel_name(wheel)][1]})")
    wheel_total, tree = sum(w.stat().st_size for w in wheels), tree_bytes()
    if saved:
        print(f"Ray's wheel without ray/jars/: {saved / 2**20:.1f} MiB saved")
    print(f"wheels {wheel_total / 2**20:.1f} MiB + working tree {tree / 2**20:.1f} MiB = "
          f"{(wheel_total + tree) / 2**20:.1f} MiB to travel (limit "
          f"{TRAVEL_LIMIT_BYTES / 2**20:.0f} MiB)")
    if wheel_total + tree > TRAVEL_LIMIT_BYTES:
        problems.append("over the limit: try --no-ray")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
