"""The canonical walk, written once and shared by the oracle, :func:`canonical` and :func:`read`.

The spec defines the canonical path of an object as the path by which a pre-order depth-first walk from
the root, visiting attributes in sorted name order and never re-entering a visited object, first reaches
it. The oracle (on blueprints) and ``read`` (on an implementation's live objects) must agree on that walk
exactly, so there is one walk, parameterised by how to list attributes, classify values and identify
objects. It is iterative -- an explicit stack of attribute iterators -- so a 10,000-deep chain costs no
Python recursion, and linear in the size of the graph.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Hashable, Iterable
from operator import itemgetter
from typing import Any, Generic, TypeVar

from nnx_conformance.strategies._internal.blueprint import NodeRef, Ref, Static, VarRef

N = TypeVar("N")

_by_name = itemgetter(0)


class Kind(enum.Enum):
    MODULE = enum.auto()
    VARIABLE = enum.auto()
    STATIC = enum.auto()


@dataclasses.dataclass
class Walk(Generic[N]):
    """Everything the walk saw, numbered in discovery order (= canonical order)."""

    modules: list[N]
    """Module objects; ``modules[0]`` is the root."""
    variables: list[Any]
    """Variable objects, in the order the walk first reached them."""
    attrs: list[list[tuple[str, Ref]]]
    """Per module, its attributes sorted by name, with refs in discovery numbering."""
    module_parent: list[tuple[int, str] | None]
    """The edge ``(module, name)`` that discovered each module (``None`` for the root)."""
    variable_parent: list[tuple[int, str]]
    """The edge that discovered each Variable."""
    back_edges: list[tuple[int, str, int]]
    """``(src, name, dst)`` edges into a module on the current walk path (or itself): the cycles."""


def walk(
    root: N,
    attrs: Callable[[N], Iterable[tuple[str, Any]]],
    kind: Callable[[Any], Kind],
    key: Callable[[Any], Hashable] = id,
    static: Callable[[Any], Static] = Static,
) -> Walk[N]:
    """Walk the graph under ``root``; ``key`` identifies objects (``id`` for live objects)."""
    result: Walk[N] = Walk([root], [], [[]], [None], [], [])
    module_index: dict[Hashable, int] = {key(root): 0}
    variable_index: dict[Hashable, int] = {}
    on_path = {0}
    stack = [(0, iter(sorted(attrs(root), key=_by_name)))]
    while stack:
        src, pending = stack[-1]
        out = result.attrs[src]
        for name, value in pending:
            what = kind(value)
            if what is Kind.MODULE:
                k = key(value)
                dst = module_index.get(k)
                if dst is None:
                    dst = module_index[k] = len(result.modules)
                    result.modules.append(value)
                    result.attrs.append([])
                    result.module_parent.append((src, name))
                    out.append((name, NodeRef(dst)))
                    on_path.add(dst)
                    stack.append((dst, iter(sorted(attrs(value), key=_by_name))))
                    break  # descend: pre-order, the rest of ``pending`` resumes afterwards
                if dst in on_path:
                    result.back_edges.append((src, name, dst))
                out.append((name, NodeRef(dst)))
            elif what is Kind.VARIABLE:
                k = key(value)
                dst = variable_index.get(k)
                if dst is None:
                    dst = variable_index[k] = len(result.variables)
                    result.variables.append(value)
                    result.variable_parent.append((src, name))
                out.append((name, VarRef(dst)))
            else:
                out.append((name, static(value)))
        else:
            stack.pop()
            on_path.discard(src)
    return result
