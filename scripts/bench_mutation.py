"""Mutation testing of the hub's core modules: a benchmark of the test suite, not a gate.

Usage: scripts/bench mutation [--modules hub/buffer.py,hub/triggers/engine.py] [--max-mutants N]
                              [--time-limit S] [--jobs J] [--json PATH]

Each module is mutated one small change at a time (a comparison flipped at its boundary, ``and``/``or`` swapped,
``not`` dropped, an arithmetic operator swapped, a number moved by one, ``True``/``False`` swapped, a return value
replaced by ``None``, a call statement removed, ``break``/``continue`` swapped) and its fast tests are run
against each mutant: a mutant is *killed* when a test fails (or the run times out), *survives* otherwise. The
score per module is killed / run. Survivors are listed with file:line and the change, for a reader to judge:
an equivalent mutant (no behaviour changed) or a missing test.

Why not mutmut: mutmut 3 (tried, 3.8.1 in .venv) reads its settings only from setup.cfg/pyproject.toml, runs a
"stats" pass over the whole tests/ folder (Chromium and service tests included: minutes per module) and copies
only the mutated files into its mutants/ folder, so ``hub`` there lacks its ``__init__`` and the test suite fails
to import before any mutant runs. This script needs nothing but the standard library: the mutant is never
written to disk; an import hook compiles the mutated syntax tree in place of the module, in the test run and in
every Python process it starts (a ``sitecustomize`` on PYTHONPATH installs the same hook in real hub processes).

Runs are forked from one parent that has already imported pytest and the heavy third-party modules (never
``hub``), so a mutant costs its tests, not the interpreter's start-up.
"""

from __future__ import annotations

import argparse
import ast
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ENV = "PINGWATCH_MUTANT"  # JSON {"module", "path", "index"} of the mutant under test

# module -> the fast tests that exercise it (no Chromium, no hub process where an in-process test exists)
MODULES: dict[str, list[str]] = {
    "hub/triggers/engine.py": ["tests/test_engine.py", "tests/test_motion.py"],
    "hub/triggers/motion.py": ["tests/test_motion.py", "tests/test_engine.py"],
    "hub/triggers/audio.py": ["tests/test_audio.py", "tests/test_engine.py"],
    "hub/triggers/zones.py": ["tests/test_zones.py", "tests/test_motion.py"],
    "hub/buffer.py": ["tests/test_buffer.py"],
    # tests/test_clip_gaps.py, test_bframes.py and test_h265.py also exercise clips (10-20 s a run each)
    "hub/clips.py": ["tests/test_clips_mutation.py", "tests/test_clips.py"],
    # tests/test_hub_telegram.py and tests/test_composition.py also drive the recorder, through a broker and the
    # Telegram fake (~30 s a run): too slow per mutant; tests/test_recorder.py is the same parts in ~3 s
    "hub/recorder.py": ["tests/test_recorder.py"],
    # tests/test_disk_full.py (a real hub on a small disk, ~30 s) also exercises retention: too slow per mutant
    "hub/retention.py": ["tests/test_retention.py",
                         "tests/test_hub_security.py::test_retention_deletes_only_contained_files"],
    # tests/test_web_security.py replays the same attacks on a hub process (and Chromium), ~20 s a run
    "hub/web/auth.py": ["tests/test_auth_unit.py", "tests/test_web_sessions.py"],
    "hub/store.py": ["tests/test_store.py"],
}
PRELOAD = ("numpy", "av", "cv2", "aiortc", "aiohttp", "httpx", "pydantic", "yaml", "hypothesis", "pytest_asyncio",
           "paho.mqtt.client", "cryptography")
LOG_NAMES = {"log", "logger", "logging", "warnings"}


# -- mutants ------------------------------------------------------------------------------------------------

_SWAP_CMP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
             ast.NotEq: ast.Eq, ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}
_SWAP_BIN = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Div,
             ast.Mod: ast.FloorDiv, ast.BitAnd: ast.BitOr, ast.BitOr: ast.BitAnd, ast.LShift: ast.RShift,
             ast.RShift: ast.LShift, ast.Pow: ast.Mult}


@dataclass
class Site:
    """One mutation: ``apply`` changes the tree in place and returns (before, after) as source text."""

    line: int
    kind: str
    node: Any
    how: Any = field(repr=False)


def _short(node: Any) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= 90 else text[:87] + "..."


def _is_log_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    while isinstance(f, ast.Attribute):
        f = f.value
    return isinstance(f, ast.Name) and f.id in LOG_NAMES


def _skip_lines(source: str) -> set[int]:
    return {i for i, line in enumerate(source.splitlines(), 1) if "pragma: no mutate" in line}


def sites(tree: ast.Module, source: str) -> list[Site]:
    """Every mutation site of ``tree``, in a fixed order (the same each time the same source is parsed)."""
    out: list[Site] = []
    skip = _skip_lines(source)

    def visit(node: ast.AST, parent: ast.AST | None) -> None:
        # Not mutated: docstrings, annotations, logging calls, imports, `if TYPE_CHECKING:` blocks.
        if isinstance(node, (ast.Import, ast.ImportFrom)) or _is_log_call(node):
            return
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            return
        line = getattr(node, "lineno", None)
        if line is not None and line in skip:
            return
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                if type(op) in _SWAP_CMP:
                    out.append(Site(node.lineno, "compare", node, ("cmp", i)))
        elif isinstance(node, ast.BinOp) and type(node.op) in _SWAP_BIN:
            if not (isinstance(node.op, ast.Mod) and isinstance(node.left, (ast.Constant, ast.JoinedStr))):
                out.append(Site(node.lineno, "arith", node, ("bin",)))
        elif isinstance(node, ast.AugAssign) and type(node.op) in _SWAP_BIN:
            out.append(Site(node.lineno, "arith", node, ("aug",)))
        elif isinstance(node, ast.BoolOp):
            out.append(Site(node.lineno, "bool", node, ("boolop",)))
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            out.append(Site(node.lineno, "unary", node, ("unary",)))
        elif isinstance(node, ast.Constant) and hasattr(node, "lineno"):
            v = node.value
            if isinstance(v, bool):
                out.append(Site(node.lineno, "constant", node, ("bool",)))
            elif isinstance(v, (int, float)) and not isinstance(v, complex):
                out.append(Site(node.lineno, "constant", node, ("num",)))
        elif isinstance(node, ast.Return) and node.value is not None and not (
                isinstance(node.value, ast.Constant) and node.value.value is None):
            out.append(Site(node.lineno, "return", node, ("return",)))
        elif isinstance(node, ast.Expr) and isinstance(node.value, (ast.Call, ast.Await)) and \
                not _is_log_call(node.value):
            out.append(Site(node.lineno, "statement", node, ("drop",)))
        elif isinstance(node, (ast.Break, ast.Continue)):
            out.append(Site(node.lineno, "loop", node, ("loop",)))
        for name, value in ast.iter_fields(node):
            if name in ("annotation", "returns", "decorator_list", "type_comment"):
                continue
            if isinstance(value, list):
                body = value
                if name == "body" and body and isinstance(body[0], ast.Expr) and \
                        isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                    body = body[1:]  # docstring
                for item in body:
                    if isinstance(item, ast.AST):
                        visit(item, node)
            elif isinstance(value, ast.AST):
                visit(value, node)

    visit(tree, None)
    return out


def mutate(tree: ast.Module, site: Site) -> tuple[str, str]:
    """Apply ``site`` to ``tree`` (in place; the node is replaced through its parent where needed)."""
    node, how = site.node, site.how
    before = _short(node)
    if how[0] == "cmp":
        node.ops[how[1]] = _SWAP_CMP[type(node.ops[how[1]])]()
        return before, _short(node)
    if how[0] in ("bin", "aug"):
        node.op = _SWAP_BIN[type(node.op)]()
        return before, _short(node)
    if how[0] == "boolop":
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return before, _short(node)
    if how[0] == "bool":
        node.value = not node.value
        return before, _short(node)
    if how[0] == "num":
        node.value = node.value + 1
        return before, _short(node)
    if how[0] == "return":
        node.value = ast.Constant(None)
        return before, "return None"
    # replacements of the node itself: done through the parent's field
    if how[0] == "unary":
        new: ast.AST = node.operand
    elif how[0] == "drop":
        new = ast.Pass()
    else:  # loop
        new = ast.Continue() if isinstance(node, ast.Break) else ast.Break()
    for parent in ast.walk(tree):
        for name, value in ast.iter_fields(parent):
            if value is node:
                setattr(parent, name, new)
            elif isinstance(value, list):
                for i, item in enumerate(value):
                    if item is node:
                        value[i] = new
    ast.copy_location(new, node)
    return before, _short(new) if not isinstance(new, ast.Pass) else "pass"


def mutated_code(path: Path, index: int) -> tuple[Any, str, str, int]:
    source = path.read_text()
    tree = ast.parse(source, str(path))
    site = sites(tree, source)[index]
    before, after = mutate(tree, site)
    ast.fix_missing_locations(tree)
    return compile(tree, str(path), "exec"), before, after, site.line


# -- the import hook (in the test run and in every Python process it starts) -----------------------------

class _MutantLoader(importlib.machinery.SourceFileLoader):
    def __init__(self, fullname: str, path: str, index: int) -> None:
        super().__init__(fullname, path)
        self.index = index

    def get_code(self, fullname: str) -> Any:  # never the cached bytecode of the original
        return mutated_code(Path(self.path), self.index)[0]


class _MutantFinder(importlib.abc.MetaPathFinder):
    def __init__(self, module: str, path: str, index: int) -> None:
        self.module, self.path, self.index = module, path, index

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.module:
            return None
        loader = _MutantLoader(fullname, self.path, self.index)
        return importlib.util.spec_from_file_location(fullname, self.path, loader=loader)


def install_from_env() -> None:
    """Called by the generated sitecustomize in every Python process of a mutant's run."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    m = json.loads(spec)
    if not any(isinstance(f, _MutantFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MutantFinder(m["module"], m["path"], m["index"]))


def _sitecustomize_dir(tmp: Path) -> Path:
    d = tmp / "site"
    d.mkdir(parents=True, exist_ok=True)
    (d / "sitecustomize.py").write_text(
        "import sys\n"
        f"sys.path.insert(0, {str(REPO / 'scripts')!r})\n"
        "import bench_mutation\n"
        "bench_mutation.install_from_env()\n"
        "sys.path.remove(" f"{str(REPO / 'scripts')!r})\n")
    return d


# -- running ----------------------------------------------------------------------------------------------

@dataclass
class Result:
    module: str
    index: int
    line: int
    kind: str
    before: str
    after: str
    outcome: str = "not run"  # killed | survived | timeout | not run
    seconds: float = 0.0


def _module_name(rel: str) -> str:
    return rel[:-3].replace("/", ".")


def _fork_run(tests: list[str], mutant: dict[str, Any] | None, basetemp: Path, log: Path) -> int:
    """Fork a child that runs pytest on ``tests`` (with the mutant's hook installed); returns its pid."""
    pid = os.fork()
    if pid:
        return pid
    try:  # child: its own process group, so a timeout kills the hub processes it started too
        os.setsid()
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        if mutant is not None:
            os.environ[ENV] = json.dumps(mutant)
            install_from_env()
        import pytest

        code = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "--basetemp", str(basetemp),
                            "-o", "timeout=120", *tests])
        sys.stdout.flush()
        os._exit(int(code))
    except BaseException:  # noqa: BLE001 - never return into the parent's code from a child
        import traceback

        traceback.print_exc()
        sys.stdout.flush()
        os._exit(99)


def run_all(jobs: list[tuple[Result, list[str], dict[str, Any]]], workers: int, timeout_s: float,
            deadline: float, tmp: Path) -> None:
    running: dict[int, tuple[Result, float]] = {}
    queue = list(jobs)
    while queue or running:
        while queue and len(running) < workers and time.monotonic() < deadline:
            res, tests, mutant = queue.pop(0)
            n = f"{_module_name(res.module)}-{res.index}"
            pid = _fork_run(tests, mutant, tmp / "t" / n, tmp / f"{n}.log")
            running[pid] = (res, time.monotonic())
        if not running:
            break  # out of time: the rest stay "not run"
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            now = time.monotonic()
            for p, (res, t0) in list(running.items()):
                if now - t0 > timeout_s:
                    try:
                        os.killpg(p, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    os.waitpid(p, 0)
                    res.outcome, res.seconds = "timeout", now - t0
                    del running[p]
                    _progress(res)
            time.sleep(0.05)  # parent's poll of its children (os.waitpid has no timeout)
            continue
        if pid not in running:
            continue
        res, t0 = running.pop(pid)
        try:  # the hub processes a test left behind, if any
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        code = os.waitstatus_to_exitcode(status)
        res.seconds = time.monotonic() - t0
        res.outcome = "survived" if code == 0 else "killed"
        _progress(res)


def _progress(res: Result) -> None:
    mark = {"killed": ".", "timeout": "T", "survived": "S"}.get(res.outcome, "?")
    print(mark, end="", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modules", default="hub/triggers/engine.py,hub/buffer.py,hub/retention.py",
                    help=f"comma-separated; known: {', '.join(MODULES)}; 'all' for every one")
    ap.add_argument("--max-mutants", type=int, default=150, help="per module; a fixed random sample when more")
    ap.add_argument("--time-limit", type=float, default=1800, help="seconds for the whole run")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--json", default=str(REPO / "artifacts" / "mutation.json"))
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--tests", default="", help="comma-separated test files to run instead of the module's list")
    ap.add_argument("--indices", default="", help="run only these mutant numbers (as --list shows them)")
    args = ap.parse_args()

    modules = list(MODULES) if args.modules == "all" else [m.strip() for m in args.modules.split(",") if m.strip()]
    for m in modules:
        if m not in MODULES:
            ap.error(f"unknown module {m!r}; known: {', '.join(MODULES)}")
    os.chdir(REPO)
    deadline = time.monotonic() + args.time_limit
    tmp = Path(tempfile.mkdtemp(prefix="pw-mutation-"))
    (tmp / "t").mkdir()  # each run's --basetemp lies in here (pytest makes only the last level)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(_sitecustomize_dir(tmp)), os.environ.get("PYTHONPATH", "")])
    for name in PRELOAD:  # paid once here instead of in every forked run
        try:
            __import__(name)
        except ImportError:
            pass
    import pytest  # noqa: F401
    assert not any(k == "hub" or k.startswith("hub.") for k in sys.modules), "the parent must not import hub"

    report: dict[str, Any] = {"command": "scripts/bench mutation " + " ".join(sys.argv[1:]), "modules": {}}
    for rel in modules:
        listed = args.tests.split(",") if args.tests else MODULES[rel]
        tests = [t for t in listed if Path(t.split("::")[0]).exists()]
        path = REPO / rel
        source = path.read_text()
        all_sites = sites(ast.parse(source), source)
        chosen = list(range(len(all_sites)))
        if args.indices:
            chosen = [int(i) for i in args.indices.split(",")]
        elif len(chosen) > args.max_mutants:
            chosen = sorted(random.Random(args.seed).sample(chosen, args.max_mutants))
        if args.list:
            for i in chosen:
                _, before, after, line = mutated_code(path, i)
                print(f"{rel}:{line} [{i}] {before}  ->  {after}")
            continue

        # the unmutated tests must pass, and how long they take sets the per-mutant timeout
        t0 = time.monotonic()
        pid = _fork_run(tests, None, tmp / "t" / "baseline", tmp / "baseline.log")
        _, status = os.waitpid(pid, 0)
        base_s = time.monotonic() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            print((tmp / "baseline.log").read_text()[-3000:])
            print(f"error: the tests of {rel} fail without any mutant: {' '.join(tests)}", file=sys.stderr)
            return 1
        print(f"{rel}: {len(all_sites)} mutants, running {len(chosen)} against {' '.join(tests)} "
              f"(baseline {base_s:.1f} s)")
        results = []
        for i in chosen:
            _, before, after, line = mutated_code(path, i)
            results.append(Result(rel, i, line, all_sites[i].kind, before, after))
        jobs = [(r, tests, {"module": _module_name(rel), "path": str(path), "index": r.index}) for r in results]
        run_all(jobs, args.jobs, timeout_s=3 * base_s + 20, deadline=deadline, tmp=tmp)
        print()
        ran = [r for r in results if r.outcome != "not run"]
        killed = [r for r in ran if r.outcome in ("killed", "timeout")]
        report["modules"][rel] = {
            "tests": tests, "mutants": len(all_sites), "run": len(ran), "killed": len(killed),
            "score": round(100 * len(killed) / len(ran), 1) if ran else None,
            "survivors": [asdict(r) for r in ran if r.outcome == "survived"],
            "not_run": len(results) - len(ran),
        }

    if args.list:
        return 0
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print("\n| module | mutants | run | killed | score | survivors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rel, m in report["modules"].items():
        score = "n/a" if m["score"] is None else f"{m['score']:.1f} %"
        print(f"| {rel} | {m['mutants']} | {m['run']} | {m['killed']} | {score} | {len(m['survivors'])} |")
    for rel, m in report["modules"].items():
        if m["survivors"]:
            print(f"\nSurvivors in {rel}:")
            for s in m["survivors"]:
                print(f"- {rel}:{s['line']} ({s['kind']}) `{s['before']}` → `{s['after']}`")
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
