"""Mutation score of the reference core: how many small bugs planted in core/ does our kill set catch?

Issue 13, item 6. A small AST mutator (stdlib ``ast`` only) enumerates every mutation point of
``core/{graph,state,rng,variable}.py`` (``--files`` adds ``layers.py``) in a fixed order, takes a fixed
sample of them (``--sample 150 --seed 0``), and runs the *kill set* against each mutant: our own
``tests/test_core_*.py`` and the spec against the core (``spec --nnx-impl core``), in one pytest process,
stopping at the first failure. A mutant is *killed* when that run fails (or cannot import, or runs past
the per-mutant timeout), *survives* when it passes. The score is killed / (sampled - equivalent), an
equivalent mutant being one no test could kill (a verdict made by reading the code, kept in
``benchmarks/mutation_verdicts.toml``).

Operators (one mutation point each; ``ordinal`` counts the points of one operator in one function):

* ``cmp``: a comparison operator flipped to its negation (``==``/``!=``, ``<``/``>=``, ``>``/``<=``,
  ``is``/``is not``, ``in``/``not in``), one point per operator of a chained comparison;
* ``negate``: the condition of an ``if``/``while``/conditional expression/comprehension ``if`` negated
  (``if x`` -> ``if not x``, and ``if not x`` -> ``if x``);
* ``delete``: a statement replaced by ``pass`` (not imports, definitions, docstrings, ``__all__``, bare
  annotations);
* ``int+1`` / ``int-1``: an integer constant (not a bool) plus or minus one;
* ``return_none``: ``return X`` -> ``return None``;
* ``boolop``: ``and`` <-> ``or``;
* ``arith``: ``+`` <-> ``-`` (also ``+=``/``-=``).

Not mutated: type annotations (strings under ``from __future__ import annotations``), docstrings, and
f-strings (they only word error messages).

The mutant id is ``file:qualname:operator:ordinal`` (e.g. ``state.py:State.partition:cmp:0``): it changes
only when the function it is in changes, so verdicts survive unrelated edits. The sample is the ``k``
points whose ``sha256(seed, id)`` is smallest, so it too is stable under unrelated edits.

The working tree's ``core/`` is never written. Each mutant is a copy of ``core/`` in a temporary
directory with the one mutated module (``ast.unparse`` of the mutated tree), imported as
``nnx_conformance.core`` through a ``sitecustomize.py`` there that puts a meta path finder first; the
directory is on ``PYTHONPATH``, so the interpreters the spec starts (isolated children) import the
mutant too. The child checks, before pytest starts, that ``nnx_conformance.core.<module>`` was loaded
from the copy. Each run gets ``CI=true`` (Hypothesis' derandomized ``ci`` profile), ``-x``,
``-p no:cacheprovider`` and a persistent JAX compilation cache shared by all runs of one invocation (in
the temporary directory: compiling is most of the suite's fixed cost, and the cache is keyed by the
compiled program, so a mutant that changes what is traced simply misses it).

    python benchmarks/mutation.py --sample 150 --seed 0 --jobs 1 --out docs/mutation.md --json mut.json
    python benchmarks/mutation.py --render mut.json --out docs/mutation.md   # report again, current verdicts
    python benchmarks/mutation.py --list                                    # every mutation point
    python benchmarks/mutation.py --show state.py:State.partition:cmp:0     # one mutant's diff

Not a test: nothing here runs in CI (``tests/test_benchmark_mutation.py`` checks the mutator itself).
"""

from __future__ import annotations

import argparse
import ast
import difflib
import hashlib
import io
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"
VERDICTS = Path(__file__).resolve().parent / "mutation_verdicts.toml"
DEFAULT_FILES = ("graph.py", "rng.py", "state.py", "variable.py")

OPERATORS = ("cmp", "negate", "delete", "int+1", "int-1", "return_none", "boolop", "arith")

_CMP_FLIP: dict[type, type] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_CMP_TEXT = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.GtE: ">=",
    ast.Gt: ">",
    ast.LtE: "<=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
}


# ---------------------------------------------------------------------------------------------------
# The mutator
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    """One mutation point: where, which operator, and what it does (for people)."""

    file: str
    qualname: str
    op: str
    ordinal: int
    line: int
    description: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.qualname}:{self.op}:{self.ordinal}"


@dataclass
class _Site:
    qualname: str
    op: str
    line: int
    description: str
    apply: Callable[[], None]


def _short(node: ast.AST, limit: int = 60) -> str:
    text = ast.unparse(node).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _deletable(stmt: ast.stmt) -> bool:
    if isinstance(
        stmt,
        (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Pass),
    ):
        return False
    if _is_docstring(stmt):
        return False
    if isinstance(stmt, ast.AnnAssign) and stmt.value is None:
        return False  # a bare annotation (``x: int``): no runtime effect
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis:
        return False
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    return not any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets)


def _is_type_checking(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.If) and ast.unparse(stmt.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")


class _Collector:
    """Walks one module in a fixed order (statement order, then each node's fields in ``_fields`` order)
    and records every mutation site with a closure that applies it to *this* tree."""

    def __init__(self) -> None:
        self.sites: list[_Site] = []

    def add(self, qual: str, op: str, node: ast.AST, description: str, apply: Callable[[], None]) -> None:
        self.sites.append(_Site(qual, op, getattr(node, "lineno", 0), description, apply))

    # statements -------------------------------------------------------------------------------------
    def body(self, stmts: list[ast.stmt], qual: str) -> None:
        for index, stmt in enumerate(stmts):
            if _is_type_checking(stmt):
                continue
            if _deletable(stmt):

                def delete(stmts: list[ast.stmt] = stmts, index: int = index) -> None:
                    old = stmts[index]
                    stmts[index] = ast.copy_location(ast.Pass(), old)

                self.add(qual, "delete", stmt, f"delete `{_short(stmt)}`", delete)
            self.stmt(stmt, qual)

    def stmt(self, stmt: ast.stmt, qual: str) -> None:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for deco in stmt.decorator_list:
                self.expr(deco, qual)
            self.arguments(stmt.args, qual)
            inner = f"{qual}.{stmt.name}" if qual != "<module>" else stmt.name
            self.body(stmt.body, inner)
            return
        if isinstance(stmt, ast.ClassDef):
            for deco in stmt.decorator_list:
                self.expr(deco, qual)
            for base in stmt.bases:
                self.expr(base, qual)
            inner = f"{qual}.{stmt.name}" if qual != "<module>" else stmt.name
            self.body(stmt.body, inner)
            return
        if isinstance(stmt, (ast.Import, ast.ImportFrom)) or _is_docstring(stmt):
            return
        if isinstance(stmt, ast.Return) and not (
            stmt.value is None or (isinstance(stmt.value, ast.Constant) and stmt.value.value is None)
        ):

            def to_none(stmt: ast.Return = stmt) -> None:
                stmt.value = ast.Constant(None)

            self.add(qual, "return_none", stmt, f"`return {_short(stmt.value)}` -> `return None`", to_none)
        if isinstance(stmt, (ast.If, ast.While)):
            self.negate(stmt, qual)
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.op, (ast.Add, ast.Sub)):
            self.arith(stmt, qual)
        for name, value in ast.iter_fields(stmt):
            if name in ("annotation", "returns", "type_comment"):
                continue
            if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                self.body(value, qual)
            elif isinstance(value, list):
                for item in value:
                    self.node(item, qual)
            else:
                self.node(value, qual)

    def node(self, value: Any, qual: str) -> None:
        if isinstance(value, ast.excepthandler):
            if value.type is not None:
                self.expr(value.type, qual)
            self.body(value.body, qual)
        elif isinstance(value, ast.stmt):
            self.stmt(value, qual)
        elif isinstance(value, ast.expr):
            self.expr(value, qual)
        elif isinstance(value, ast.arguments):
            self.arguments(value, qual)
        elif isinstance(value, (ast.comprehension, ast.keyword, ast.withitem, ast.match_case)):
            for name, child in ast.iter_fields(value):
                if isinstance(value, ast.comprehension) and name == "ifs":
                    for index in range(len(child)):
                        self.negate_in(child, index, qual)
                if isinstance(child, list):
                    for item in child:
                        self.node(item, qual)
                else:
                    self.node(child, qual)

    def arguments(self, args: ast.arguments, qual: str) -> None:
        for default in [*args.defaults, *[d for d in args.kw_defaults if d is not None]]:
            self.expr(default, qual)

    # expressions -------------------------------------------------------------------------------------
    def expr(self, node: ast.expr, qual: str) -> None:
        if isinstance(node, ast.JoinedStr):
            return  # message text only
        if isinstance(node, ast.Compare):
            for index, op in enumerate(node.ops):

                def flip(node: ast.Compare = node, index: int = index) -> None:
                    node.ops[index] = _CMP_FLIP[type(node.ops[index])]()

                self.add(
                    qual,
                    "cmp",
                    node,
                    f"`{_CMP_TEXT[type(op)]}` -> `{_CMP_TEXT[_CMP_FLIP[type(op)]]}` in `{_short(node)}`",
                    flip,
                )
        elif isinstance(node, ast.IfExp):
            self.negate(node, qual)
        elif isinstance(node, ast.BoolOp):
            new_text = "or" if isinstance(node.op, ast.And) else "and"

            def swap(node: ast.BoolOp = node) -> None:
                node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()

            self.add(qual, "boolop", node, f"`{_short(node)}`: -> `{new_text}`", swap)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            self.arith(node, qual)
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            for op, delta in (("int+1", 1), ("int-1", -1)):

                def shift(node: ast.Constant = node, delta: int = delta) -> None:
                    node.value = node.value + delta

                self.add(qual, op, node, f"`{node.value}` -> `{node.value + delta}`", shift)
        elif isinstance(node, ast.Lambda):
            self.arguments(node.args, qual)
            self.expr(node.body, qual)
            return
        for _name, value in ast.iter_fields(node):
            if isinstance(value, list):
                for item in value:
                    self.node(item, qual)
            else:
                self.node(value, qual)

    def negate(self, node: ast.If | ast.While | ast.IfExp, qual: str) -> None:
        test = node.test
        undo = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)

        def apply(node: ast.If | ast.While | ast.IfExp = node) -> None:
            t = node.test
            if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not):
                node.test = t.operand
            else:
                node.test = ast.UnaryOp(ast.Not(), t)

        new = _short(test.operand) if isinstance(test, ast.UnaryOp) and undo else f"not ({_short(test)})"
        kind = {ast.If: "if", ast.While: "while", ast.IfExp: "conditional"}[type(node)]
        self.add(qual, "negate", node, f"{kind} `{_short(test)}` -> `{new}`", apply)

    def negate_in(self, tests: list[ast.expr], index: int, qual: str) -> None:
        test = tests[index]

        def apply(tests: list[ast.expr] = tests, index: int = index) -> None:
            t = tests[index]
            if isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not):
                tests[index] = t.operand
            else:
                tests[index] = ast.UnaryOp(ast.Not(), t)

        self.add(qual, "negate", test, f"comprehension if `{_short(test)}` negated", apply)

    def arith(self, node: ast.BinOp | ast.AugAssign, qual: str) -> None:
        old, new = ("+", "-") if isinstance(node.op, ast.Add) else ("-", "+")

        def swap(node: ast.BinOp | ast.AugAssign = node) -> None:
            node.op = ast.Sub() if isinstance(node.op, ast.Add) else ast.Add()

        self.add(qual, "arith", node, f"`{old}` -> `{new}` in `{_short(node)}`", swap)


def _sites(tree: ast.Module) -> list[_Site]:
    collector = _Collector()
    collector.body(tree.body, "<module>")
    return collector.sites


def _with_ordinals(file: str, sites: list[_Site]) -> list[tuple[Point, _Site]]:
    counts: Counter[tuple[str, str]] = Counter()
    out = []
    for site in sites:
        key = (site.qualname, site.op)
        out.append((Point(file, site.qualname, site.op, counts[key], site.line, site.description), site))
        counts[key] += 1
    return out


def mutation_points(source: str, file: str) -> list[Point]:
    """Every mutation point of one module, in a fixed order (the same source gives the same list)."""
    return [point for point, _ in _with_ordinals(file, _sites(ast.parse(source)))]


def mutate(source: str, file: str, mutant_id: str) -> str:
    """The source of ``file`` with mutation ``mutant_id`` applied (``ast.unparse`` of the mutated tree)."""
    tree = ast.parse(source)
    for point, site in _with_ordinals(file, _sites(tree)):
        if point.id == mutant_id:
            site.apply()
            return ast.unparse(ast.fix_missing_locations(tree)) + "\n"
    raise KeyError(f"no mutation point {mutant_id!r} in {file}")


def roundtrip(source: str) -> str:
    """The unmutated module as the mutants are written (``ast.unparse``): what the baseline runs."""
    return ast.unparse(ast.parse(source)) + "\n"


def all_points(files: tuple[str, ...] = DEFAULT_FILES, core: Path = CORE) -> list[Point]:
    points: list[Point] = []
    for file in files:
        points.extend(mutation_points((core / file).read_text(encoding="utf-8"), file))
    return points


def sample(points: list[Point], k: int, seed: int) -> list[Point]:
    """The ``k`` points whose ``sha256(seed, id)`` is smallest, in enumeration order.

    Keyed by the mutant id, not by position: a point keeps its rank when other functions change.
    """

    def rank(point: Point) -> str:
        return hashlib.sha256(f"{seed}\0{point.id}".encode()).hexdigest()

    chosen = {p.id for p in sorted(points, key=rank)[:k]}
    return [p for p in points if p.id in chosen]


# ---------------------------------------------------------------------------------------------------
# Running a mutant
# ---------------------------------------------------------------------------------------------------

_SITECUSTOMIZE = '''\
"""Written by benchmarks/mutation.py: import nnx_conformance.core from $NNX_MUTANT_CORE (a mutated copy)
and nnx_conformance.spec/.strategies from $NNX_MUTANT_TREE (the snapshot the run was started on)."""
import importlib.abc
import importlib.util
import os
import sys

_PACKAGES = {
    "nnx_conformance.core": os.environ.get("NNX_MUTANT_CORE"),
    "nnx_conformance.spec": os.path.join(os.environ.get("NNX_MUTANT_TREE", ""), "spec"),
    "nnx_conformance.strategies": os.path.join(os.environ.get("NNX_MUTANT_TREE", ""), "strategies"),
}


class _MutantTree(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        folder = _PACKAGES.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(
            fullname, os.path.join(folder, "__init__.py"), submodule_search_locations=[folder]
        )


if os.environ.get("NNX_MUTANT_CORE") and os.environ.get("NNX_MUTANT_TREE"):
    sys.meta_path.insert(0, _MutantTree())
'''

_CHILD_MAIN = '''\
"""Written by benchmarks/mutation.py: import the mutant, check where it came from, then run pytest."""
import importlib
import os
import sys
import traceback

core = os.path.abspath(os.environ["NNX_MUTANT_CORE"])
tree = os.path.abspath(os.environ["NNX_MUTANT_TREE"])
module = os.environ["NNX_MUTANT_MODULE"]
try:
    mod = importlib.import_module("nnx_conformance.core." + module)
    importlib.import_module("nnx_conformance.core")
except BaseException:
    traceback.print_exc()
    print("MUTANT-IMPORT-FAILED")
    sys.exit(90)
import nnx_conformance.spec
import nnx_conformance.strategies

where = {
    os.path.dirname(os.path.abspath(mod.__file__)): core,
    os.path.dirname(os.path.abspath(nnx_conformance.spec.__file__)): os.path.join(tree, "spec"),
    os.path.dirname(os.path.abspath(nnx_conformance.strategies.__file__)): os.path.join(tree, "strategies"),
}
for got, expected in where.items():
    if got != expected:
        print(f"MUTANT-NOT-IMPORTED: loaded from {got}, not {expected}")
        sys.exit(91)
import pytest

sys.exit(pytest.main(sys.argv[1:]))
'''

EXIT_IMPORT_FAILED = 90
EXIT_NOT_IMPORTED = 91

# Our own core tests, cheapest and most telling first; the test file of the mutated module goes first.
CORE_TESTS = (
    "test_core_state.py",
    "test_core_variable.py",
    "test_core_errors.py",
    "test_core_graph.py",
    "test_core_adapter.py",
    "test_core_rng.py",
    "test_core_layers.py",
)
SPEC_ORDER = {
    "graph.py": ("test_graph", "test_errors", "test_state", "test_sequence", "test_sharding", "test_layers"),
    "state.py": ("test_state", "test_graph", "test_errors", "test_sequence", "test_sharding", "test_layers"),
    "rng.py": ("test_rng", "test_sequence", "test_layers", "test_graph", "test_state", "test_errors"),
    "variable.py": (
        "test_sharding",
        "test_state",
        "test_graph",
        "test_errors",
        "test_sequence",
        "test_layers",
    ),
    "layers.py": ("test_layers", "test_rng", "test_sharding", "test_graph", "test_state", "test_errors"),
}


def kill_set(file: str, root: Path = ROOT) -> list[str]:
    """Test files in the order one mutant runs them: our tests of ``file`` first (``test_core_<module>*``),
    our other ``tests/test_core_*.py`` (cheapest and most telling first), then the spec."""
    stem = file.removesuffix(".py")
    found = sorted(p.name for p in (root / "tests").glob("test_core_*.py"))
    rank = {name: i for i, name in enumerate(CORE_TESTS)}
    own = [t for t in found if t == f"test_core_{stem}.py" or t.startswith(f"test_core_{stem}_")]
    rest = sorted((t for t in found if t not in own), key=lambda t: (rank.get(t, len(rank)), t))
    tests = own + rest
    spec_all = sorted(p.stem for p in (root / "spec").glob("test_*.py"))
    first = [s for s in SPEC_ORDER.get(file, ()) if s in spec_all]
    spec = first + [s for s in spec_all if s not in first]
    return [f"tests/{t}" for t in tests] + [f"spec/{s}.py" for s in spec]


SNAPSHOT_PATHS = ("core", "spec", "strategies", "tests", "conftest.py", "pyproject.toml")


def snapshot(dest: Path, tree: str) -> Path:
    """A private copy of the code the kill set runs (others may edit the checkout meanwhile).

    ``head``: the committed tree (``git archive HEAD``); ``worktree``: the checkout's files as they are now
    (tracked and untracked, not ignored).
    """
    dest.mkdir(parents=True)
    if tree == "head":
        archive = subprocess.run(
            ["git", "archive", "--format=tar", "HEAD", *SNAPSHOT_PATHS],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
    elif tree == "worktree":
        listed = subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z", "--", *SNAPSHOT_PATHS],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout.decode()
        for name in filter(None, listed.split("\0")):
            source = ROOT / name
            if source.is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest / name)
    else:
        raise ValueError(f"--tree is 'head' or 'worktree', got {tree!r}")
    return dest


@dataclass
class Outcome:
    id: str
    file: str
    line: int
    op: str
    description: str
    status: str  # killed | import | timeout | survived
    seconds: float
    killer: str = ""
    tail: str = ""


@dataclass
class Runner:
    files: tuple[str, ...]
    timeout: float
    max_examples: int | None
    nnx_timeout: float
    workdir: Path
    tree: str = "head"
    only_tests: list[str] = field(default_factory=list)
    cache: Path = field(init=False)
    repo: Path = field(init=False)

    def __post_init__(self) -> None:
        self.cache = self.workdir / "jax-cache"
        self.cache.mkdir(parents=True, exist_ok=True)
        (self.workdir / "sitecustomize.py").write_text(_SITECUSTOMIZE, encoding="utf-8")
        (self.workdir / "mutant_main.py").write_text(_CHILD_MAIN, encoding="utf-8")
        self.repo = snapshot(self.workdir / "repo", self.tree)
        self.sources = {f: (self.repo / "core" / f).read_text(encoding="utf-8") for f in self.files}

    def pytest_args(self, file: str) -> list[str]:
        args = [
            *(self.only_tests or kill_set(file, self.repo)),
            "--nnx-impl",
            "core",
            "-x",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfE",
        ]
        # A hang is the commonest way a mutant dies slowly: pytest-timeout fails a test of ours after
        # --test-timeout seconds, --nnx-timeout a spec property; the per-mutant timeout is the backstop.
        args += ["--nnx-timeout", str(self.nnx_timeout), "--timeout", str(self.nnx_timeout)]
        if self.max_examples is not None:
            args += ["--nnx-max-examples", str(self.max_examples)]
        return args

    def _copy_core(self, name: str) -> Path:
        target = self.workdir / name / "core"
        if target.parent.exists():
            shutil.rmtree(target.parent)
        shutil.copytree(self.repo / "core", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        return target

    def run(self, name: str, file: str, sources: dict[str, str]) -> tuple[int | None, float, str]:
        """Run the kill set against a copy of core/ with ``sources`` written over it: (rc or None on
        timeout, seconds, output)."""
        core = self._copy_core(name)
        for fname, text in sources.items():
            (core / fname).write_text(text, encoding="utf-8")
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join(p for p in (str(self.workdir), env.get("PYTHONPATH", "")) if p),
            PYTHONDONTWRITEBYTECODE="1",
            CI="true",
            NNX_MUTANT_CORE=str(core),
            NNX_MUTANT_TREE=str(self.repo),
            NNX_MUTANT_MODULE=file.removesuffix(".py"),
            JAX_COMPILATION_CACHE_DIR=str(self.cache),
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        )
        env.pop("NNX_IMPL", None)
        cmd = [sys.executable, str(self.workdir / "mutant_main.py"), *self.pytest_args(file)]
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            cwd=self.repo,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=self.timeout)
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # our own child's process group (start_new_session)
            out, _ = proc.communicate()
            rc = None
        seconds = time.perf_counter() - start
        shutil.rmtree(core.parent, ignore_errors=True)
        return rc, seconds, out.decode("utf-8", "replace")

    def mutant(self, point: Point) -> Outcome:
        text = mutate(self.sources[point.file], point.file, point.id)
        name = "m_" + hashlib.sha256(point.id.encode()).hexdigest()[:12]
        rc, seconds, out = self.run(name, point.file, {point.file: text})
        if rc == EXIT_NOT_IMPORTED:
            raise SystemExit(f"setup error: the mutant was not what got imported:\n{out[-2000:]}")
        if rc is None:
            status = "timeout"
        elif rc == EXIT_IMPORT_FAILED:
            status = "import"
        elif rc == 0:
            status = "survived"
        else:
            status = "killed"
        killer = ""
        found = re.search(r"^(?:FAILED|ERROR) (\S+)", out, re.M)
        if found:
            killer = found.group(1)
        elif status == "killed":
            killer = f"pytest exit {rc}"
        return Outcome(
            point.id,
            point.file,
            point.line,
            point.op,
            point.description,
            status,
            round(seconds, 2),
            killer,
            out[-1500:] if status in ("killed", "import") and not found else "",
        )


# ---------------------------------------------------------------------------------------------------
# Verdicts and the report
# ---------------------------------------------------------------------------------------------------


def load_verdicts(path: Path = VERDICTS) -> dict[str, dict[str, str]]:
    """``{mutant id: {"verdict": "equivalent" | "gap", "reason": ...}}`` from the TOML file."""
    if not path.exists():
        return {}
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise SystemExit("reading the verdicts needs Python >= 3.11 (tomllib)") from None
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for key, entry in data.items():
        if entry.get("verdict") not in ("equivalent", "gap"):
            raise SystemExit(f"{path.name}: {key}: verdict must be 'equivalent' or 'gap'")
    return data


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.1f}%" if b else "n/a"


def render(
    result: dict[str, Any], verdicts: dict[str, dict[str, str]], other: dict[str, Any] | None = None
) -> str:
    outcomes = [Outcome(**o) for o in result["outcomes"]]
    meta = result["meta"]
    files = meta["files"]
    equivalent = {
        o.id
        for o in outcomes
        if o.status == "survived" and verdicts.get(o.id, {}).get("verdict") == "equivalent"
    }

    def row(subset: list[Outcome]) -> tuple[int, ...]:
        killed = sum(o.status == "killed" for o in subset)
        imp = sum(o.status == "import" for o in subset)
        tmo = sum(o.status == "timeout" for o in subset)
        surv = [o for o in subset if o.status == "survived"]
        eq = sum(o.id in equivalent for o in surv)
        return len(subset), killed, imp, tmo, len(surv), eq

    lines: list[str] = []
    add = lines.append
    total, killed, imp, tmo, surv, eq = row(outcomes)
    dead = killed + imp + tmo
    add("# Mutation score of the reference core")
    add("")
    add(
        "How many small bugs planted in `core/` does our kill set catch? Issue 13, item 6. Generated by "
        "[`benchmarks/mutation.py`](../benchmarks/mutation.py) (method in its docstring); the verdicts on "
        "survivors are kept in [`benchmarks/mutation_verdicts.toml`](../benchmarks/mutation_verdicts.toml). "
        "Regenerate the page from a saved run with `python benchmarks/mutation.py --render RUN.json --out "
        "docs/mutation.md`."
    )
    add("")
    add(
        f"**Score: {dead} of {total - eq} non-equivalent mutants killed, {_pct(dead, total - eq)}** "
        f"({total} sampled of {meta['points_total']} mutation points, seed {meta['seed']}; {eq} equivalent "
        f"mutants excluded; {surv - eq} non-equivalent survivors)."
    )
    add("")
    add("## Run")
    add("")
    add("| | |")
    add("|---|---|")
    add(f"| command | `{meta['command']}` |")
    add(
        f"| when | {meta['started']} (UTC), load average {meta['load_before']} before, {meta['load_after']} after |"
    )
    add(
        f"| code | commit `{meta['commit']}`"
        + (
            " (committed tree, `git archive`)"
            if meta["tree"] == "head"
            else " plus the checkout's uncommitted files"
        )
        + " |"
    )
    add(f"| machine | {meta['machine']} |")
    add(f"| kill set | {meta['kill_set']} |")
    add(
        f"| settings | `CI=true` (Hypothesis' derandomized `ci` profile), `-x`, `--nnx-max-examples "
        f"{meta['max_examples'] or 'default'}`, `--nnx-timeout {meta['nnx_timeout']}` and `--timeout {meta['nnx_timeout']}` (pytest-timeout, our tests), per-mutant timeout "
        f"{meta['timeout']:.0f} s, `--jobs {meta['jobs']}`, persistent JAX compilation cache per invocation |"
    )
    add(
        f"| baseline | the unmutated core (every sampled module round-tripped through `ast.unparse`, as the "
        f"mutants are written) passes the kill set: {meta['baseline_s']:.1f} s "
        f"({meta['warmup_s']:.1f} s for the first run, which fills the compilation cache) |"
    )
    add(
        f"| wall time | {meta['wall_s'] / 60:.1f} min for {total} mutants ({meta['wall_s'] / max(total, 1):.1f} s each on average) |"
    )
    add("")
    add("## Results")
    add("")
    add(
        "*killed*: a test failed; *import*: the mutated core failed to import (counted as killed); "
        "*timeout*: the run passed the per-mutant timeout (a loop that never ends; counted as killed); "
        "*equivalent*: a survivor no test can kill (verdict below); score = (killed + import + timeout) / "
        "(sampled - equivalent)."
    )
    add("")
    add("| file | points | sampled | killed | import | timeout | survived | equivalent | score |")
    add("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for file in files:
        sub = [o for o in outcomes if o.file == file]
        n, k, i, t, s, e = row(sub)
        add(
            f"| `{file}` | {meta['points'][file]} | {n} | {k} | {i} | {t} | {s} | {e} | {_pct(k + i + t, n - e)} |"
        )
    add(
        f"| **all** | {meta['points_total']} | {total} | {killed} | {imp} | {tmo} | {surv} | {eq} | **{_pct(dead, total - eq)}** |"
    )
    add("")
    add("By operator (sampled / killed, import and timeout included / equivalent):")
    add("")
    add("| operator | points | sampled | killed | equivalent |")
    add("|---|---:|---:|---:|---:|")
    for op in OPERATORS:
        sub = [o for o in outcomes if o.op == op]
        n, k, i, t, _s, e = row(sub)
        add(f"| `{op}` | {meta['points_by_op'].get(op, 0)} | {n} | {k + i + t} | {e} |")
    add("")
    killers = Counter(
        "tests/" if o.killer.startswith("tests/") else "spec/" if o.killer.startswith("spec/") else "other"
        for o in outcomes
        if o.status == "killed"
    )
    add(
        f"First failing test of the killed mutants: {killers['tests/']} in `tests/`, {killers['spec/']} in "
        f"`spec/`, {killers['other']} other (the kill set runs our own tests first, so this does not say "
        "what the spec alone kills)."
    )
    add("")
    if other is not None:
        theirs = {o["id"]: o["status"] for o in other["outcomes"]}
        add("## The spec alone")
        add("")
        add(
            f"The same sample against a kill set of the spec only ({other['meta']['kill_set']}; "
            f"{other['meta']['wall_s'] / 60:.1f} min, `{other['meta']['command']}`), the question the outside "
            "run of issue 13 asked. Equivalents as above; a mutant missing from that run is not counted."
        )
        add("")
        add("| file | sampled | killed by the spec alone | survived | score |")
        add("|---|---:|---:|---:|---:|")
        for name in [*files, None]:
            sub = [o for o in outcomes if (name is None or o.file == name) and o.id in theirs]
            judged = [o for o in sub if o.id not in equivalent]
            dead_alone = sum(theirs[o.id] != "survived" for o in judged)
            label = f"`{name}`" if name else "**all**"
            add(
                f"| {label} | {len(sub)} | {dead_alone} | {len(judged) - dead_alone} | {_pct(dead_alone, len(judged))} |"
            )
        add("")
        only_ours = [
            o.id for o in outcomes if o.id in theirs and o.id not in equivalent and theirs[o.id] == "survived"
        ]
        add(
            f"Killed only by our own tests ({len(only_ours)}): "
            + ", ".join(f"`{i}`" for i in only_ours)
            + "."
        )
        add("")
    add("## Survivors")
    add("")
    survivors = [o for o in outcomes if o.status == "survived"]
    if not survivors:
        add("None.")
    else:
        add("| mutant | line | mutation | verdict | reason |")
        add("|---|---:|---|---|---|")
        for o in survivors:
            v = verdicts.get(o.id, {})
            reason = v.get("reason", "").replace("|", "\\|").replace("\n", " ")
            add(
                f"| `{o.id}` | {o.line} | {o.description.replace('|', chr(92) + '|')} | {v.get('verdict', '**unjudged**')} | {reason} |"
            )
    timeouts = [o for o in outcomes if o.status == "timeout"]
    imports = [o for o in outcomes if o.status == "import"]
    if timeouts or imports:
        add("")
        add("## Killed without a failing test")
        add("")
        for o in imports:
            add(f"* `{o.id}` (line {o.line}, {o.description}): the mutated core failed to import")
        for o in timeouts:
            add(f"* `{o.id}` (line {o.line}, {o.description}): ran past the {meta['timeout']:.0f} s timeout")
    add("")
    add("## All sampled mutants")
    add("")
    add(f"<details><summary>{total} mutants: status, seconds, first failing test</summary>")
    add("")
    add("| mutant | line | mutation | status | s | first failure |")
    add("|---|---:|---|---|---:|---|")
    for o in outcomes:
        add(
            f"| `{o.id}` | {o.line} | {o.description.replace('|', chr(92) + '|')} | {o.status} | {o.seconds:.1f} | {o.killer.replace('|', chr(92) + '|')} |"
        )
    add("")
    add("</details>")
    add("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------


def _load() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def _iter_outcomes(runner: Runner, points: list[Point], jobs: int) -> Iterator[Outcome]:
    if jobs <= 1:
        for point in points:
            yield runner.mutant(point)
        return
    with ThreadPoolExecutor(jobs) as pool:
        yield from pool.map(runner.mutant, points)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--files", default=",".join(DEFAULT_FILES), help="core modules to mutate (comma-separated)"
    )
    parser.add_argument("--sample", type=int, default=150, help="mutants to run (default 150; 0: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once (default 1)")
    parser.add_argument(
        "--timeout", type=float, default=None, help="seconds per mutant (default 3x baseline, >= 60)"
    )
    parser.add_argument(
        "--max-examples", type=int, default=20, help="--nnx-max-examples of the spec (default 20)"
    )
    parser.add_argument(
        "--nnx-timeout", type=float, default=30.0, help="--nnx-timeout of the spec (default 30)"
    )
    parser.add_argument(
        "--only", default="", help="run only these mutant ids (comma-separated), e.g. to recheck survivors"
    )
    parser.add_argument(
        "--tree",
        choices=("head", "worktree"),
        default="head",
        help="what the kill set runs: the committed tree (default) or the checkout as it is now",
    )
    parser.add_argument(
        "--skip-baseline",
        action="store_true",
        help="no baseline run (only to recheck a few mutants while writing tests; never for a score)",
    )
    parser.add_argument(
        "--kill-set",
        default="",
        help="run these test paths instead of the kill set (comma-separated; rechecks)",
    )
    parser.add_argument(
        "--spec-alone",
        type=Path,
        help="with --render: a saved run of the same sample whose --kill-set was the spec only, for comparison",
    )
    parser.add_argument("--out", type=Path, help="write the Markdown report here")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument(
        "--render", type=Path, help="only render a saved --json run with the current verdicts"
    )
    parser.add_argument("--list", action="store_true", help="print every mutation point and exit")
    parser.add_argument("--show", metavar="ID", help="print one mutant's diff and exit")
    args = parser.parse_args(argv)
    files = tuple(f.strip() for f in args.files.split(",") if f.strip())

    if args.render:
        other = json.loads(args.spec_alone.read_text(encoding="utf-8")) if args.spec_alone else None
        report = render(json.loads(args.render.read_text(encoding="utf-8")), load_verdicts(), other)
        if args.out:
            args.out.write_text(report, encoding="utf-8")
        else:
            print(report)
        return 0

    points = all_points(files)
    if args.list:
        for p in points:
            print(f"{p.id}\tline {p.line}\t{p.description}")
        return 0
    if args.show:
        file = args.show.split(":", 1)[0]
        source = (CORE / file).read_text(encoding="utf-8")
        before, after = roundtrip(source), mutate(source, file, args.show)
        sys.stdout.writelines(
            difflib.unified_diff(
                before.splitlines(True), after.splitlines(True), f"core/{file}", f"mutant {args.show}"
            )
        )
        return 0

    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    load_before = _load()
    wall_start = time.perf_counter()
    commit = _git("rev-parse", "--short", "HEAD")
    with tempfile.TemporaryDirectory(prefix="nnx-mutation-") as tmp:
        runner = Runner(
            files,
            args.timeout or 600.0,
            args.max_examples,
            args.nnx_timeout,
            Path(tmp),
            args.tree,
            [t for t in args.kill_set.split(",") if t],
        )
        points = all_points(files, runner.repo / "core")  # the snapshot's core, which the mutants copy
        chosen = sample(points, args.sample, args.seed) if args.sample else points
        if args.only:
            wanted = set(args.only.split(","))
            chosen = [p for p in points if p.id in wanted]
            if len(chosen) != len(wanted):
                raise SystemExit(f"unknown mutant ids: {sorted(wanted - {p.id for p in chosen})}")
        kill_order = runner.only_tests or kill_set(files[0], runner.repo)
        # The baseline: every mutated module as the mutants are written, unmutated. It must pass.
        baseline_sources = {f: roundtrip(runner.sources[f]) for f in files}
        attempts = ("warm-up", "baseline") if not args.skip_baseline else ()
        times = [0.0, 0.0] if args.skip_baseline else []
        for attempt in attempts:
            rc, seconds, out = runner.run("baseline", files[0], baseline_sources)
            print(f"{attempt}: rc={rc} in {seconds:.1f} s", flush=True)
            if rc != 0:
                sys.stderr.write(out[-6000:])
                raise SystemExit(
                    f"the unmutated core FAILS the kill set ({attempt} run, exit {rc}): a mutation score "
                    "would mean nothing; fix the baseline first"
                )
            times.append(seconds)
        warmup_s, baseline_s = times
        runner.timeout = args.timeout or max(60.0, 3 * baseline_s)
        print(
            f"{len(chosen)} mutants of {len(points)} points; timeout {runner.timeout:.0f} s each", flush=True
        )
        outcomes = []
        for n, outcome in enumerate(_iter_outcomes(runner, chosen, args.jobs), 1):
            outcomes.append(outcome)
            print(
                f"[{n}/{len(chosen)}] {outcome.status:8} {outcome.seconds:6.1f}s {outcome.id}  {outcome.killer}",
                flush=True,
            )
    wall_s = time.perf_counter() - wall_start
    result = {
        "meta": {
            "command": "python benchmarks/mutation.py "
            + " ".join(argv if argv is not None else sys.argv[1:]),
            "started": started,
            "load_before": load_before,
            "load_after": _load(),
            "commit": commit,
            "tree": args.tree,
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
            "kill_set": "`"
            + " ".join(kill_order)
            + (
                "` (the same order for every file)"
                if runner.only_tests
                else f"` (this order for `{files[0]}`; the mutated module's own test file and spec areas go first)"
            ),
            "files": list(files),
            "points": {f: sum(p.file == f for p in points) for f in files},
            "points_by_op": dict(Counter(p.op for p in points)),
            "points_total": len(points),
            "seed": args.seed,
            "max_examples": args.max_examples,
            "nnx_timeout": args.nnx_timeout,
            "timeout": runner.timeout,
            "jobs": args.jobs,
            "baseline_s": baseline_s,
            "warmup_s": warmup_s,
            "wall_s": wall_s,
        },
        "outcomes": [asdict(o) for o in outcomes],
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    report = render(result, load_verdicts())
    if args.out:
        args.out.write_text(report, encoding="utf-8")
    summary = [o for o in outcomes if o.status == "survived"]
    print(f"done in {wall_s / 60:.1f} min; {len(summary)} survivors:")
    for o in summary:
        print(f"  {o.id}  line {o.line}  {o.description}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
