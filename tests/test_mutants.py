"""Suite power: every mutant in ``tests/mutants/`` is caught by the clause its docstring names.

For each mutant, the properties of its clause run against it with the loaded Hypothesis profile's budget
(in CI: the ``ci`` profile, each property's default budget) and, in every profile, the seed the
derandomized ``ci`` profile gives the property, so a verdict is the same on every run (``dev``, being
random, would otherwise catch a mutant on most runs and miss it on some); at least one must fail
with an ``AssertionError`` -- or with an exception the mutant declares as its symptom. A mutant that only
makes a property *crash* for an unrelated reason is not caught. The shrink phase is skipped: it does not
change which examples are generated, only how the failure is reported, and it is most of the cost.

The reference core passing every clause is the spec run itself (``pytest spec``, part of the same CI
command) plus ``tests/test_false_alarms.py``; here we also check that :class:`mutants._kit.KitAdapter`,
the correct base most graph mutants derive from, passes the clauses those mutants target, so that a kit
mutant is caught for its own bug and not the kit's.
"""

from __future__ import annotations

import mutants
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mutants._kit import KitAdapter
from mutants.harness import Outcome, run_property

from nnx_conformance.spec.clauses import properties, spec_clauses

CATALOGUE = mutants.load()
MIN_MUTANTS = 30


def _properties_for(m: mutants.Mutant) -> list:
    fns = properties()[m.catches]
    named = {fn.__name__: fn for fn in fns}
    unknown = [name for name in m.by if name not in named]
    assert not unknown, f"{m.name} names properties that {m.catches} does not have: {unknown}"
    # A mutant with ``by`` must be caught by each of those; otherwise the first catch ends the run.
    return [named[name] for name in m.by] if m.by else fns


@pytest.mark.parametrize("m", CATALOGUE, ids=[m.name for m in CATALOGUE])
def test_mutant_is_caught_by_its_clause(m: mutants.Mutant) -> None:
    impl = m.make()
    outcomes: list[Outcome] = []
    for fn in _properties_for(m):
        outcome = run_property(fn, impl, shrink=False, derandomize=True)
        outcomes.append(outcome)
        if outcome.caught_by(m.symptoms) and not m.by:
            return
    report = "\n  ".join(o.describe() for o in outcomes)
    if m.by:
        missed = [o for o in outcomes if o.property in m.by and not o.caught_by(m.symptoms)]
        assert not missed, f"{m.name} ({m.summary}) escaped named properties of {m.catches}:\n  {report}"
    else:
        raise AssertionError(f"{m.name} ({m.summary}) escaped every property of {m.catches}:\n  {report}")


def test_catalogue_is_large_and_covers_every_clause_family() -> None:
    assert len(CATALOGUE) >= MIN_MUTANTS, f"only {len(CATALOGUE)} mutants"
    families = {cid.split(".", 1)[0] for cid in spec_clauses()}
    covered = {m.family for m in CATALOGUE}
    assert families <= covered, f"clause families without a mutant: {sorted(families - covered)}"


def test_every_clause_has_a_mutant() -> None:
    """SPEC.md promises each clause is shown to catch at least one bug."""
    missing = sorted(set(spec_clauses()) - {m.catches for m in CATALOGUE})
    assert not missing, f"clauses no mutant targets: {missing}"


def test_mutants_are_documented_and_uniquely_named() -> None:
    names = [m.name for m in CATALOGUE]
    assert len(names) == len(set(names))
    for m in CATALOGUE:
        assert m.adapter.name == m.name, f"{m.spec}: name {m.adapter.name!r}, registered as {m.name!r}"
        assert m.catches in m.doc, f"{m.spec}: the docstring must name the clause {m.catches}"
        assert len(m.doc) > 80, f"{m.spec}: the docstring must say what is broken"


_KIT_CLAUSES = sorted({m.catches for m in CATALOGUE if issubclass(m.adapter, KitAdapter)})


@pytest.mark.parametrize("clause_id", _KIT_CLAUSES)
def test_kit_base_passes_the_clauses_its_mutants_target(clause_id: str) -> None:
    impl = KitAdapter()
    failures = [o for fn in properties()[clause_id] if (o := run_property(fn, impl, shrink=False)).failed]
    assert not failures, "the kit itself fails:\n  " + "\n  ".join(o.describe() for o in failures)


def test_harness_replays_the_examples_the_property_sees() -> None:
    """The harness's rebuilt test, derandomized, draws exactly what the decorated property draws itself."""
    seen: list[list[tuple[int, int]]] = [[], []]
    sink = [0]

    @settings(derandomize=True, max_examples=25, database=None)
    @given(x=st.integers(), data=st.data())
    def prop(impl: object, x: int, data: st.DataObject) -> None:
        seen[sink[0]].append((x, data.draw(st.integers(0, 9))))

    prop(impl=None)
    sink[0] = 1
    outcome = run_property(prop, None, shrink=False)
    assert not outcome.failed and outcome.examples == len(seen[1])
    assert seen[1] == seen[0]
