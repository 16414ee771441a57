"""The documentation stays true: every example in README.md and docs/ runs, every relative link
resolves, and the reference generated from the code renders and covers what it should.

How a page runs. Each page gets a fresh folder holding copies of the repository's `suites/`
and `examples/`. Its fenced blocks run in order, in that folder:

- `bash` blocks run under `bash -euo pipefail`, with this environment's `archbench`,
  `pytest` and `python` first on the PATH;
- `python` blocks run in this process (one namespace per page), in the page's folder;
- `toml` blocks are loaded as suites (a fragment inside a minimal suite); `yaml` blocks are
  parsed; `text` blocks are output and are not run;
- an HTML comment just above a block changes that (see docs/architecture.md, "The
  documentation"): `<!-- docs-test: file PATH -->` writes the block to PATH instead;
  `<!-- docs-test: setup: COMMAND -->` runs a hidden command first; `<!-- docs-test: exit 0 1 -->`
  accepts those exit codes (a verdict that depends on this machine's timings);
  `<!-- docs-test: skip: REASON -->` leaves the block out, saying why.
- `--8<-- "path"` lines embed a repository file, as pymdownx.snippets does on the site;
- `<!-- docs-test: after PAGE -->` anywhere on a page starts it in a copy of the folder PAGE
  left (the guides that continue from Getting started's run), running PAGE first if needed.

How it shortens runs. The pages show the commands a user types, with the default, honest
measuring settings. Here `archbench run` and `archbench ab` get, before the page's own
options (so a page that sets one of them still wins):

    --set max_time_s=0.05 --set min_time_s=0 --set warmup_time_s=0 --set warmup_iters=1
    --set repeats=1

and `archbench run` also gets `--no-report` (the reports page draws reports explicitly);
`pytest` gets the same settings through `--archbench-set`. Every case still runs in its own
worker, is built, transformed, timed and recorded: only the windows are short and each case
has one worker. Nothing else about a command changes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]

FAST_SETTINGS = ("max_time_s=0.05", "min_time_s=0", "warmup_time_s=0", "warmup_iters=1",
                 "repeats=1")
_SET = " ".join(f"--set {s}" for s in FAST_SETTINGS)
_PYTEST_SET = " ".join(f"--archbench-set {s}" for s in FAST_SETTINGS)
PREAMBLE = f"""
archbench() {{
    case "${{1-}}" in
        run) command archbench run {_SET} --no-report "${{@:2}}" ;;
        ab) command archbench ab {_SET} "${{@:2}}" ;;
        *) command archbench "$@" ;;
    esac
}}
pytest() {{ command pytest -p no:cacheprovider {_PYTEST_SET} "$@"; }}
"""

RUN_LANGS = {"bash", "sh", "python", "toml", "yaml"}
OUTPUT_LANGS = {"", "text"}
DIRECTIVE = re.compile(r"^\s*<!--\s*docs-test:\s*(\w+):?\s*(.*?)\s*-->\s*$")
AFTER = re.compile(r"^<!--\s*docs-test:\s*after\s+(\S+)\s*-->\s*$", re.M)
FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w-]*)[^`]*$")
SNIPPET = re.compile(r'^(\s*)--8<--\s+"([^"]+)"\s*$')
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced blocks of a page with the docs-test directives just above each."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    pending: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        directive = DIRECTIVE.match(line)
        fence = FENCE.match(line)
        if directive and directive.group(1) == "after":
            pass  # a page-level directive (see `start_folder`)
        elif directive:
            kind, argument = directive.groups()
            assert kind in ("skip", "file", "setup", "exit"), \
                f"{page.name}:{index + 1}: unknown docs-test directive {kind!r}"
            assert kind != "skip" or argument, f"{page.name}:{index + 1}: skip needs a reason"
            pending[kind] = argument
        elif fence:
            indent, ticks, lang = fence.groups()
            body: list[str] = []
            index += 1
            while index < len(lines) and lines[index].strip() != ticks:
                body.append(lines[index][len(indent):] if lines[index].startswith(indent)
                            else lines[index])
                index += 1
            found.append(Block(page, index - len(body), lang, expand_snippets("\n".join(body)),
                               pending))
            pending = {}
        elif line.strip() and pending:
            raise AssertionError(f"{page.name}:{index + 1}: a docs-test directive must be "
                                 "followed by a code block")
        index += 1
    return found


def expand_snippets(code: str) -> str:
    def include(match: re.Match[str]) -> str:
        indent, path = match.groups()
        target = ROOT / path
        assert target.is_file(), f"--8<-- names {path}, which does not exist"
        return textwrap.indent(target.read_text(encoding="utf-8").rstrip("\n"), indent)

    return "\n".join(SNIPPET.sub(include, line) for line in code.splitlines())


def run_env() -> dict[str, str]:
    """This environment's tools first; nothing that would send results elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTEST_", "ARCHBENCH_", "RAY_", "GITHUB_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["COLUMNS"] = "100"
    return env


def shell(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-euo", "pipefail", "-c", PREAMBLE + script], cwd=folder,
                          env=run_env(), capture_output=True, text=True, timeout=240)


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def load_suite_text(text: str, folder: Path, name: str) -> None:
    """Load TOML as a suite, inside a minimal one when it is a fragment."""
    from bench.suite import loader

    if "[suite]" not in text:
        text = f'[suite]\nname = "fragment"\n\n{text}'
        if "[[sweep]]" not in text:
            text += '\n\n[[sweep]]\nmodel = "mlp"\n'
    path = folder / name
    path.write_text(text, encoding="utf-8")
    loader.load(path)


def run_block(block: Block, folder: Path, namespace: dict[str, Any]) -> None:
    if "setup" in block.directives:
        done = shell(block.directives["setup"], folder)
        assert done.returncode == 0, f"{block.where}: setup failed\n{tail(done.stderr)}"
    if "file" in block.directives:
        path = folder / block.directives["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block.code + "\n", encoding="utf-8")
        return
    if block.lang in ("bash", "sh"):
        allowed = {int(c) for c in block.directives.get("exit", "0").split()}
        done = shell(block.code, folder)
        assert done.returncode in allowed, (
            f"{block.where}: exit {done.returncode} (expected {sorted(allowed)})\n"
            f"{block.code}\n--- stdout\n{tail(done.stdout)}\n--- stderr\n{tail(done.stderr)}")
    elif block.lang == "python":
        exec(compile(block.code, block.where, "exec"), namespace)
    elif block.lang == "toml":
        load_suite_text(block.code, folder, f"_block_{block.line}.toml")
    elif block.lang == "yaml":
        import yaml

        yaml.safe_load(block.code)


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


#: The folder each page left, for the pages that continue from it (`after`).
_FOLDERS: dict[Path, Path] = {}


def start_folder(page: Path, factory: pytest.TempPathFactory) -> Path:
    """A fresh folder for the page: copies of suites/ and examples/, or a copy of the folder
    the page it continues from left."""
    folder = factory.mktemp(page.stem) / "page"
    after = AFTER.search(page.read_text(encoding="utf-8"))
    if after:
        before = (ROOT / after.group(1)).resolve()
        assert before.is_file(), f"{page_id(page)}: docs-test after {after.group(1)}: no such page"
        shutil.copytree(run_page(before, factory), folder, symlinks=True)
    else:
        folder.mkdir()
        for name in ("suites", "examples"):
            shutil.copytree(ROOT / name, folder / name)
    return folder


def run_page(page: Path, factory: pytest.TempPathFactory) -> Path:
    """Run a page's blocks in order (once per session); the folder it leaves."""
    if page in _FOLDERS:
        return _FOLDERS[page]
    found = blocks(page)
    for block in found:
        assert block.lang in RUN_LANGS | OUTPUT_LANGS, \
            f"{block.where}: a ```{block.lang} block: use bash, python, toml, yaml or text"
    runnable = [b for b in found if b.lang in RUN_LANGS and "skip" not in b.directives]
    folder = start_folder(page, factory)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        for block in runnable:
            run_block(block, folder, namespace)
    print(f"{page_id(page)}: {len(runnable)} block(s) in {time.perf_counter() - started:.1f} s")
    _FOLDERS[page] = folder
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_examples_run(page: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    run_page(page, tmp_path_factory)


# ---- links -----------------------------------------------------------------------------------
def slug(heading: str) -> str:
    """The anchor MkDocs (python-markdown's toc) gives a heading."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip()
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> set[str]:
    text = hooks().expand(page.read_text(encoding="utf-8"))
    text = re.sub(r"^([ \t]*)```.*?^\1```", "", text, flags=re.M | re.S)  # no headings in code
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_resolve(page: Path) -> None:
    text = re.sub(r"^([ \t]*)```.*?^\1```", "", page.read_text(encoding="utf-8"),
                  flags=re.M | re.S)
    broken = []
    for target in LINK.findall(text) + IMAGE.findall(text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page_id(page)}: " + "; ".join(broken)


# ---- the README --------------------------------------------------------------------------------
def test_readme_is_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200


def test_readme_lists_every_command() -> None:
    """The README's command table has one row for each command `archbench --help` lists."""
    section = README.read_text(encoding="utf-8").partition("## Commands")[2].partition("\n## ")[0]
    listed = re.findall(r"^\| \[`archbench (\w+)`\]", section, re.M)
    commands = [name for name, _, _ in hooks()._subcommands(hooks()._root())]
    assert sorted(listed) == sorted(commands)
    assert len(listed) == len(set(listed))


def test_readme_example_is_getting_started() -> None:
    """The README's example is not run twice: it is the one docs/getting-started.md runs,
    line for line (comments aside)."""
    guide = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    same = [b for b in blocks(README) if "getting-started" in b.directives.get("skip", "")]
    assert len(same) == 2
    for block in same:
        for line in block.code.splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip() if block.lang == "bash" else line
            assert command in guide, f"{block.where}: {command!r} is not in getting-started.md"


def test_two_commands_suites_load() -> None:
    """What the README's skipped tox commands run: the quickstart suite loads."""
    from bench.suite import loader

    assert len(loader.load(ROOT / "suites" / "quickstart.toml").cases) > 0


# ---- the generated reference -------------------------------------------------------------------
def hooks() -> ModuleType:
    """docs/hooks.py, the mkdocs hook that renders the reference from the code."""
    module = sys.modules.get("archbench_docs_hooks")
    if module is None:
        spec = importlib.util.spec_from_file_location("archbench_docs_hooks", DOCS / "hooks.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["archbench_docs_hooks"] = module
        spec.loader.exec_module(module)
    return module


def test_every_marker_names_a_generator() -> None:
    names = {m.group(1) for page in PAGES
             for m in hooks().MARKER.finditer(page.read_text(encoding="utf-8"))}
    assert names <= set(hooks().GENERATORS), names - set(hooks().GENERATORS)
    assert set(hooks().GENERATORS) <= names, "a generator no page uses"


@pytest.mark.parametrize("name", sorted(hooks().GENERATORS))
def test_generator_renders(name: str) -> None:
    out = hooks().GENERATORS[name]()
    assert out.strip()
    assert "| None |" not in out and "`None`" not in out


def test_every_field_is_documented() -> None:
    """The suite-file reference reads `#:` comments: each field a user sets has one."""
    from bench.suite import loader
    from bench.suite.spec import SETTINGS_KEYS, Settings

    docs = hooks().field_docs(Settings)
    assert set(docs) == set(SETTINGS_KEYS), set(SETTINGS_KEYS) - set(docs)
    for model in (loader.SweepBlock, loader.PruneEntry, loader.DecideTable):
        missing = set(model.model_fields) - set(hooks().field_docs(model))
        assert not missing, f"{model.__name__}: no #: comment for {sorted(missing)}"
    table = hooks().settings_table()
    for key in SETTINGS_KEYS:
        assert f"| `{key}` |" in table


def test_cli_reference_covers_every_option() -> None:
    reference = hooks().cli_reference()
    for name, parser, _ in hooks()._subcommands(hooks()._root()):
        assert f"`archbench {name}`" in reference
        for action in parser._actions:
            for flag in set(action.option_strings) - {"-h", "--help"}:
                assert f"`{flag}" in reference, f"archbench {name} {flag}"


# ---- the columns of bench.load() ---------------------------------------------------------------
def documented_columns() -> set[str]:
    """The column names in backticks in the Columns section of the results reference (the
    `cuda_max_*_bytes` family spelled out)."""
    text = (DOCS / "reference" / "results.md").read_text(encoding="utf-8")
    section = text.partition("\n## Columns")[2].partition("\n## ")[0]
    names = set(re.findall(r"`([a-z][a-z0-9_]*)`", section))
    if "`cuda_max_*_bytes`" in section:
        names |= {f"cuda_max_{kind}_{phase}_bytes" for kind in ("allocated", "reserved")
                  for phase in ("build", "warmup", "timed")}
    return names


@pytest.mark.slow
def test_results_reference_documents_every_column(tmp_path: Path) -> None:
    """Every column a real run's `bench.load()` has is documented, and every documented name
    is one the code writes (a renamed column fails here)."""
    import bench

    suite = tmp_path / "cols.toml"
    suite.write_text(textwrap.dedent("""\
        [suite]
        name = "cols"

        [[sweep]]
        model = "mlp"
        width = 64
        prune = [{ method = "structured", ratio = 0.5 }, { method = "unstructured", ratio = 0.5 }]
        """))
    done = subprocess.run(["archbench", "run", str(suite), "--out", str(tmp_path / "run"),
                           *(a for s in FAST_SETTINGS for a in ("--set", s)), "--no-report"],
                          env=run_env(), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, tail(done.stderr)
    columns = set(bench.load(tmp_path / "run").columns)
    documented = documented_columns()
    assert not columns - documented, f"undocumented columns: {sorted(columns - documented)}"
    from bench.gate.thresholds import metric_specs

    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "bench").rglob("*.py"))
    values = {"ok", "unsupported", "failed", "oom", "crashed", "timeout", "target_ci", "repeats",
              "max_time", "mixed", "perf_counter_ns"}  # values of columns, not columns
    known = columns | set(metric_specs()) | values
    unknown = {name for name in documented - known if f'"{name}"' not in source}
    assert not unknown, f"documented but not written by bench/: {sorted(unknown)}"
