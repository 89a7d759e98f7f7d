"""The spec is complete: every clause has a property, every property a clause, and pytest collects them all."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from nnx_conformance.spec.clauses import PROPERTY_MODULES, clause_of, properties, spec_clauses

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
        area = name.rsplit(".", 1)[1]
        test_file = SPEC_DIR / f"test_{area}.py"
        assert test_file.exists(), f"{name} has no spec/test_{area}.py re-exporting it"
        assert name in test_file.read_text(encoding="utf-8"), f"{test_file} does not import {name}"


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


def test_collected_spec_items_all_carry_a_clause_marker() -> None:
    """Collect the spec the way a user does and check no test escapes the registry."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", str(SPEC_DIR)],
        capture_output=True,
        text=True,
        check=False,
        cwd=SPEC_DIR.parent,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    ids = [line for line in out.stdout.splitlines() if "::" in line]
    assert ids, out.stdout
    by_name = {fn.__name__ for fns in properties().values() for fn in fns}
    for nodeid in ids:
        name = nodeid.split("::")[-1].split("[")[0]
        assert name in by_name, f"{nodeid} is collected from spec/ but is not a registered property"
