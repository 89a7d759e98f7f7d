"""The spec is complete: every clause has a property, every property a clause, and pytest collects them all."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from nnx_conformance.spec.clauses import PROPERTY_MODULES, clause_of, properties, registered, spec_clauses

SPEC_DIR = Path(importlib.import_module("nnx_conformance.spec").__file__).parent


def test_every_clause_is_checked_by_a_property() -> None:
    unchecked = [cid for cid, fns in properties().items() if not fns]
    assert not unchecked, f"clauses of SPEC.md with no property: {unchecked}"


def test_every_property_belongs_to_a_known_clause() -> None:
    known = spec_clauses()
    for name in PROPERTY_MODULES:
        module = importlib.import_module(name)
        for attr, fn in vars(module).items():
            if attr.startswith("test_") and callable(fn):
                tag = clause_of(fn)
                assert tag is not None, f"{name}.{attr} is a property without @clause(...)"
                assert tag.id in known, f"{name}.{attr} names unknown clause {tag.id!r}"


def test_each_property_module_is_collected_through_its_test_file() -> None:
    for name in PROPERTY_MODULES:
        area_name = name.rsplit(".", 1)[1]
        test_file = SPEC_DIR / f"test_{area_name}.py"
        assert test_file.exists(), f"{name} has no spec/test_{area_name}.py collecting it"
        assert f'area("{area_name}")' in test_file.read_text(encoding="utf-8"), (
            f"{test_file} does not collect area({area_name!r}) from the registry"
        )


def test_property_names_are_unique_across_modules() -> None:
    names = [fn.__name__ for fns in properties().values() for fn in fns]
    assert len(names) == len(set(names)) == len(registered())


def test_a_property_in_two_modules_is_rejected() -> None:
    from nnx_conformance.spec import clauses

    def test_merge_restores_an_isomorphic_graph(impl):  # same name as a graph property
        pass

    test_merge_restores_an_isomorphic_graph.__module__ = "somewhere.else"
    with pytest.raises(ValueError, match="defined in both"):
        clauses.clause("graph.roundtrip")(test_merge_restores_an_isomorphic_graph)


def test_clause_ids_are_unique_and_well_formed() -> None:
    clauses = spec_clauses()
    assert len(clauses) >= 23
    for cid, clause in clauses.items():
        assert clause.text.endswith("."), f"{cid}: the clause text must be complete sentences"
        assert len(clause.text) < 400, f"{cid}: a clause is one or two sentences"


def test_unknown_clause_is_rejected_with_the_fix() -> None:
    from nnx_conformance.spec.clauses import clause

    with pytest.raises(ValueError, match=r"add a '### `graph\.nonsense`' section"):
        clause("graph.nonsense")


def collection_problems(collected: list[str], registered_names: set[str], impls: list[str]) -> list[str]:
    """Both directions: every registered property collected once per implementation, and nothing
    collected that the registry does not know."""
    problems: list[str] = []
    seen: dict[tuple[str, str], int] = {}
    for nodeid in collected:
        test = nodeid.split("::")[-1]
        name, _, rest = test.partition("[")
        impl = rest.rstrip("]")
        if name not in registered_names:
            problems.append(f"{nodeid} is collected from spec/ but is not a registered property")
        seen[(name, impl)] = seen.get((name, impl), 0) + 1
    for name in sorted(registered_names):
        for impl in impls:
            count = seen.get((name, impl), 0)
            if count != 1:
                problems.append(f"registered property {name} is collected {count} times for {impl}")
    return problems


def _collect(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=SPEC_DIR.parent,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return [line for line in out.stdout.splitlines() if "::" in line]


def test_every_registered_property_is_collected_for_each_implementation_and_nothing_else() -> None:
    """Collect the spec the way a user does; a property that escapes collection, or a test that escapes
    the registry, fails here."""
    collected = _collect(str(SPEC_DIR), "--nnx-impl", "core,seed")
    problems = collection_problems(collected, set(registered()), ["core", "seed"])
    assert not problems, "\n".join(problems)


def test_the_both_ways_check_sees_a_dropped_and_a_stray_test() -> None:
    names = set(registered())
    full = [f"spec/test_x.py::{n}[core]" for n in sorted(names)]
    dropped = sorted(names)[0]
    problems = collection_problems([i for i in full if f"::{dropped}[" not in i], names, ["core"])
    assert problems == [f"registered property {dropped} is collected 0 times for core"]
    problems = collection_problems([*full, "spec/test_x.py::test_stray[core]"], names, ["core"])
    assert problems == ["spec/test_x.py::test_stray[core] is collected from spec/ but is not a registered property"]
