"""Ties every property to a clause of ``SPEC.md``.

A property without a clause cannot be reported clause by clause, and a clause without a property is a
promise nobody checks; ``tests/test_spec_registry.py`` fails on either. The clause text lives in
``SPEC.md`` (the document users read) and is parsed from there, so the two never drift apart.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])

SPEC_PATH = Path(__file__).with_name("SPEC.md")
MARKER = "nnx_clause"

_HEADING = re.compile(r"^### `(?P<id>[a-z]+\.[a-z0-9-]+)`\s*$")
_NEEDS = re.compile(r"^\*Needs:\*\s*(?P<needs>.+)$")


@dataclasses.dataclass(frozen=True)
class Clause:
    """One clause of the specification, as ``SPEC.md`` states it."""

    id: str
    text: str
    needs: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return self.id.split(".", 1)[0]


@dataclasses.dataclass(frozen=True)
class ClauseTag:
    """What :func:`clause` attaches to a property function."""

    id: str
    needs: tuple[str, ...]


@cache
def spec_clauses() -> dict[str, Clause]:
    """Every clause in ``SPEC.md``, in document order."""
    clauses: dict[str, Clause] = {}
    current: str | None = None
    body: list[str] = []
    needs: tuple[str, ...] = ()

    def flush() -> None:
        if current is not None:
            text = " ".join(line.strip() for line in body if line.strip())
            clauses[current] = Clause(current, text, needs)

    for line in SPEC_PATH.read_text(encoding="utf-8").splitlines():
        heading = _HEADING.match(line)
        if heading:
            flush()
            current, body, needs = heading["id"], [], ()
            if current in clauses:
                raise ValueError(f"SPEC.md states clause {current!r} twice")
        elif line.startswith("#"):
            flush()
            current, body, needs = None, [], ()
        elif current is not None:
            need = _NEEDS.match(line.strip())
            if need:
                needs = tuple(n.strip(" `") for n in need["needs"].split(","))
            else:
                body.append(line)
    flush()
    return clauses


def clause(clause_id: str, *, needs: Iterable[str] = ()) -> Callable[[F], F]:
    """Declare that the decorated property checks ``clause_id``.

    ``needs`` names :class:`~nnx_conformance.spec.adapter.Capabilities` fields the property cannot run
    without (on top of those the clause itself needs); an implementation lacking one gets a skip that
    names it. Put this decorator outermost, above ``@given``.
    """
    known = spec_clauses()
    if clause_id not in known:
        raise ValueError(f"unknown clause {clause_id!r}: add a '### `{clause_id}`' section to {SPEC_PATH}")
    all_needs = tuple(dict.fromkeys((*known[clause_id].needs, *needs)))

    def decorate(fn: F) -> F:
        fn.__nnx_clause__ = ClauseTag(clause_id, all_needs)  # type: ignore[attr-defined]
        marked: F = getattr(pytest.mark, MARKER)(clause_id, needs=all_needs)(fn)
        _register(marked)
        return marked

    return decorate


def clause_of(fn: Any) -> ClauseTag | None:
    """The clause a property was tagged with, or ``None``."""
    return getattr(fn, "__nnx_clause__", None)


PROPERTY_MODULES = (
    "nnx_conformance.spec.properties.graph",
    "nnx_conformance.spec.properties.state",
    "nnx_conformance.spec.properties.rng",
    "nnx_conformance.spec.properties.layers",
    "nnx_conformance.spec.properties.errors",
    "nnx_conformance.spec.properties.sharding",
    "nnx_conformance.spec.properties.sequence",
)
"""Every module that defines properties; ``spec/test_<area>.py`` collects ``<area>``'s from the registry."""

_REGISTRY: dict[str, Callable[..., Any]] = {}
"""Property name -> function, filled by :func:`clause` as the property modules are imported."""


def _register(fn: Callable[..., Any]) -> None:
    name = getattr(fn, "__name__", None)
    if not isinstance(name, str) or not name.startswith("test_"):
        raise ValueError(f"@clause(...) decorates {fn!r}: a property's name must start with 'test_'")
    other = _REGISTRY.get(name)
    if other is not None and other.__module__ != fn.__module__:
        # Names are what expectations files and reports refer to: they must be unique across the spec.
        raise ValueError(
            f"property {name!r} is defined in both {other.__module__} and {fn.__module__}; rename one"
        )
    _REGISTRY[name] = fn


def registered() -> dict[str, Callable[..., Any]]:
    """Every property of the spec, by name (importing every property module)."""
    import importlib

    for module in PROPERTY_MODULES:
        importlib.import_module(module)
    return dict(_REGISTRY)


def properties() -> dict[str, list[Callable[..., Any]]]:
    """Clause id -> the property functions that check it, in definition order."""
    by_clause: dict[str, list[Callable[..., Any]]] = {cid: [] for cid in spec_clauses()}
    for fn in registered().values():
        tag = clause_of(fn)
        assert tag is not None  # only @clause registers
        by_clause.setdefault(tag.id, []).append(fn)
    return by_clause


def area(name: str) -> dict[str, Callable[..., Any]]:
    """The properties of one area (``"graph"`` -> ``properties/graph.py``), for ``spec/test_<area>.py``.

    The test modules take their properties from the registry, never through ``import *``: a property
    missing from an ``__all__`` once went uncollected without anything noticing.
    """
    module = f"nnx_conformance.spec.properties.{name}"
    if module not in PROPERTY_MODULES:
        raise ValueError(f"no property module {module!r}; known: {', '.join(PROPERTY_MODULES)}")
    return {n: fn for n, fn in registered().items() if fn.__module__ == module}
