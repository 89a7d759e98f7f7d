"""The mutator of benchmarks/mutation.py: deterministic points, valid and different mutants, a stable sample.

Only the AST part is tested here (fast); running mutants is the benchmark's job.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "mutation.py"
_spec = importlib.util.spec_from_file_location("_nnx_benchmark_mutation", _PATH)
assert _spec is not None and _spec.loader is not None
mutation = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = mutation  # dataclasses look their module up while the class is created
_spec.loader.exec_module(mutation)

SOURCE = '''\
"""Module docstring: never mutated."""
from __future__ import annotations

import os

__all__ = ["f", "C"]
LIMIT = 2


def f(x: int, ys: list[int]) -> int | None:
    """Docstring."""
    if x < LIMIT and ys:
        x += 1
    while not x:
        x = x - 1
    total = [y for y in ys if y is not None]
    label = f"{x + 1} items"
    return x if x in total else None


class C:
    size = 3
    name: str

    def g(self) -> bool:
        return self.size == 3 or os.sep == "/"
'''


def _points(source: str = SOURCE, file: str = "m.py") -> list:
    return mutation.mutation_points(source, file)


def test_enumeration_is_deterministic_and_ids_are_unique():
    first, second = _points(), _points()
    assert first == second
    assert len({p.id for p in first}) == len(first)
    core = mutation.all_points()
    assert core == mutation.all_points() and len({p.id for p in core}) == len(core)
    assert {p.file for p in core} == set(mutation.DEFAULT_FILES)


def test_every_operator_has_points_and_each_mutant_compiles_and_differs():
    points = _points()
    assert {p.op for p in points} == set(mutation.OPERATORS)
    original = mutation.roundtrip(SOURCE)
    for point in points:
        text = mutation.mutate(SOURCE, "m.py", point.id)
        compile(text, "m.py", "exec")
        assert text != original, point.id
        assert ast.dump(ast.parse(text)) != ast.dump(ast.parse(SOURCE)), point.id


@pytest.mark.parametrize(
    ("mutant", "before", "after"),
    [
        ("f:cmp:0", "x < LIMIT", "x >= LIMIT"),
        ("f:cmp:1", "y is not None", "y is None"),
        ("f:cmp:2", "x in total", "x not in total"),
        ("f:negate:0", "if x < LIMIT and ys:", "if not (x < LIMIT and ys):"),
        ("f:negate:1", "while not x:", "while x:"),
        ("f:negate:2", "if y is not None]", "if not y is not None]"),
        ("f:negate:3", "x if x in total else None", "x if not x in total else None"),
        ("f:boolop:0", "x < LIMIT and ys", "x < LIMIT or ys"),
        ("f:arith:0", "x += 1", "x -= 1"),
        ("f:arith:1", "x = x - 1", "x = x + 1"),
        ("f:int+1:0", "x += 1", "x += 2"),
        ("f:int-1:1", "x = x - 1", "x = x - 0"),
        ("f:return_none:0", "return x if", "return None"),
        ("f:delete:0", "if x < LIMIT and ys:\n        x += 1", "pass"),
        ("<module>:delete:0", "LIMIT = 2", "pass"),
        ("<module>:int+1:0", "LIMIT = 2", "LIMIT = 3"),
        ("C:delete:0", "size = 3", "pass"),
        ("C.g:boolop:0", "self.size == 3 or", "self.size == 3 and"),
    ],
)
def test_each_operator_does_what_it_says(mutant, before, after):
    original = mutation.roundtrip(SOURCE)
    text = mutation.mutate(SOURCE, "m.py", f"m.py:{mutant}")
    assert before in original and after in text
    assert text.count(after) > original.count(after)


def test_docstrings_annotations_fstrings_imports_and_all_are_not_mutated():
    lines = SOURCE.splitlines()

    def line_of(text: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if text in line)

    by_line: dict[int, list[str]] = {}
    for p in _points():
        by_line.setdefault(p.line, []).append(p.op)
    for quiet in ('"""Module docstring', "import os", "__all__", "def f(", '"""Docstring."""', "name: str"):
        assert line_of(quiet) not in by_line, quiet
    assert by_line[line_of("label = ")] == ["delete"]  # the statement, never the f-string's insides


def test_an_unknown_mutant_id_is_an_error():
    with pytest.raises(KeyError):
        mutation.mutate(SOURCE, "m.py", "m.py:f:cmp:99")


def test_ids_and_sample_survive_an_unrelated_edit():
    edited = SOURCE + "\n\ndef h(a):\n    if a > 1:\n        return a + 1\n    return 0\n"
    before = {p.id for p in _points()}
    after = _points(edited)
    assert before <= {p.id for p in after}
    new = {p.id for p in after} - before
    k = 10
    old_sample = {p.id for p in mutation.sample(_points(), k, 0)}
    new_sample = {p.id for p in mutation.sample(after, k, 0)}
    assert new_sample - new <= old_sample  # no old point enters; new points may displace some
    assert len(old_sample & new_sample) >= k - len(new)


def test_the_sample_is_fixed_for_a_seed_and_changes_with_it():
    points = mutation.all_points()
    chosen = mutation.sample(points, 150, 0)
    assert len(chosen) == 150 and chosen == mutation.sample(points, 150, 0)
    assert [p for p in points if p in chosen] == chosen  # enumeration order
    assert {p.id for p in mutation.sample(points, 150, 1)} != {p.id for p in chosen}
    assert mutation.sample(points, len(points) + 5, 0) == points


def test_the_kill_set_runs_the_mutated_modules_tests_first():
    root = _PATH.parent.parent
    for file in mutation.DEFAULT_FILES:
        tests = mutation.kill_set(file)
        assert tests[0] == f"tests/test_core_{file.removesuffix('.py')}.py"
        assert all((root / t).is_file() for t in tests)
        assert any(t.startswith("spec/") for t in tests)


def test_verdicts_name_current_mutants():
    pytest.importorskip("tomllib")
    verdicts = mutation.load_verdicts()
    ids = {p.id for p in mutation.all_points(("graph.py", "rng.py", "state.py", "variable.py", "layers.py"))}
    assert set(verdicts) <= ids, sorted(set(verdicts) - ids)
    for entry in verdicts.values():
        assert entry["verdict"] in ("equivalent", "gap") and entry.get("reason")
