"""The mutant catalogue: deliberately broken implementations the suite must catch.

A conformance suite that passes the reference proves nothing by itself; its worth is the bugs it catches.
Each mutant here is a small adapter that breaks *exactly one* behaviour of a correct implementation, with a
docstring saying what is broken and which clause of ``spec/SPEC.md`` must catch it. ``tests/test_mutants.py``
runs every property of that clause against the mutant (ci profile, default budget) and requires a failure
of the right kind; ``benchmarks/kill_matrix.py`` runs every clause against every mutant over many seeds.

Mutants are registered with :func:`mutant`::

    @mutant(catches="graph.roundtrip")
    class SharedModuleRebuiltTwice(KitAdapter):
        \"\"\"Merge builds a shared module once per reference ... graph.roundtrip must catch it.\"\"\"

Rules every mutant keeps, so that it can run in one process beside the reference run:

* It never patches the reference core (or anything shared) globally. A mutant is a subclass of an adapter
  overriding one method, or an adapter over its *own* subclass or copy of a core class.
* It is importable by spec (``mutants.graph:SharedModuleRebuiltTwice``) with ``tests/`` on ``sys.path``,
  because some properties rebuild the adapter in a child interpreter.
* Its ``name`` is ``mutant:<id>``, unique in the catalogue.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["FAMILIES", "MUTANTS", "Mutant", "by_name", "load", "mutant"]

T = TypeVar("T", bound=type)

FAMILIES = ("graph", "state", "rng", "layers", "errors", "sharding", "sequence")
"""Clause families of SPEC.md; ``mutants.<family>`` holds the mutants its clauses must catch."""


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One registered mutant: its adapter class and what must catch it."""

    id: str
    adapter: type
    catches: str
    """The clause id whose properties must catch it (at least one of them, or each of ``by``)."""
    by: tuple[str, ...] = ()
    """Property names (``test_...``) of that clause that must each catch it; empty: any one of them."""
    symptoms: tuple[type[BaseException], ...] = ()
    """Exception types besides ``AssertionError`` that count as the property catching *this* bug (an
    unhashable definition is caught by a ``TypeError`` from ``hash``). Anything else is a crash, not a
    catch."""
    control: str = "nnx_conformance.spec.adapters.core:CoreAdapter"
    """``pkg.module:Attr`` of the correct adapter this mutant breaks one behaviour of: its reproduction must
    pass there (``tests/test_repro_mutants.py``). The core, unless the mutant is of an adapter that
    disclaims what the core claims (a tree-only base is judged where the core is not)."""

    @property
    def name(self) -> str:
        return f"mutant:{self.id}"

    @property
    def family(self) -> str:
        return self.catches.split(".", 1)[0]

    @property
    def spec(self) -> str:
        """``pkg.module:Attr`` that rebuilds this mutant (``--nnx-impl`` and child interpreters)."""
        return f"{self.adapter.__module__}:{self.adapter.__qualname__}"

    @property
    def doc(self) -> str:
        return " ".join((self.adapter.__doc__ or "").split())

    @property
    def summary(self) -> str:
        """The docstring's first sentence: what is broken."""
        return self.doc.split(". ")[0].rstrip(".") + "."

    def make(self) -> Any:
        return self.adapter()


MUTANTS: list[Mutant] = []


def _kebab(name: str) -> str:
    """``KeysFromA24BitDigest`` -> ``keys-from-a-24-bit-digest``."""
    return re.sub(
        r"(?<=[a-z])(?=[A-Z0-9])|(?<=[0-9])(?=[A-Z])|(?<=[A-Z])(?=[0-9]|[A-Z][a-z])", "-", name
    ).lower()


def mutant(
    catches: str,
    *,
    by: tuple[str, ...] | str = (),
    symptoms: tuple[type[BaseException], ...] = (),
    id: str | None = None,
    control: type | None = None,
) -> Callable[[T], T]:
    """Register the decorated adapter class as a mutant that clause ``catches`` must catch.

    The class gets ``name = "mutant:<id>"`` (``id`` defaults to the class name in kebab case). The
    docstring is required and must name the clause: it is the mutant's specification. ``control``: the
    correct adapter it is a mutation of, where that is not the core (see :attr:`Mutant.control`).
    """
    from nnx_conformance.spec.clauses import spec_clauses

    if catches not in spec_clauses():
        raise ValueError(f"mutant names unknown clause {catches!r}")
    by = (by,) if isinstance(by, str) else tuple(by)

    def register(cls: T) -> T:
        if not cls.__doc__ or catches not in cls.__doc__:
            raise ValueError(f"{cls.__qualname__}: the docstring must say what is broken and name {catches}")
        entry = Mutant(id or _kebab(cls.__name__), cls, catches, by, tuple(symptoms))
        if control is not None:
            if not issubclass(cls, control):
                raise ValueError(f"{cls.__qualname__}: its control {control.__qualname__} is not a base of it")
            entry = dataclasses.replace(entry, control=f"{control.__module__}:{control.__qualname__}")
        if any(m.id == entry.id for m in MUTANTS):
            raise ValueError(f"mutant id {entry.id!r} registered twice")
        cls.name = entry.name
        MUTANTS.append(entry)
        return cls

    return register


def load() -> list[Mutant]:
    """Import every family module and return the whole catalogue, ordered by family then registration."""
    for family in FAMILIES:
        try:
            importlib.import_module(f"{__name__}.{family}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{family}":
                raise
    order = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(MUTANTS, key=lambda m: order.get(m.family, len(order)))


def by_name(name: str) -> Mutant:
    """The mutant called ``name`` (``mutant:<id>`` or ``<id>``)."""
    wanted = name.removeprefix("mutant:")
    for entry in load():
        if entry.id == wanted:
            return entry
    raise KeyError(name)
