"""``with_structure()``: force a shared Variable, a shared module or a cycle into drawn graphs.

:func:`~.graphs.graphs` never draws a feature the capabilities disclaim, as it must for every clause that
judges a claimed behaviour. ``errors.unsupported-structure`` needs the opposite: a graph that *has* the
disclaimed feature, to check that the implementation refuses it cleanly. ``with_structure`` takes any
strategy of blueprints (typically ``graphs(capabilities, ...)``) and adds one attribute edge that creates
the structure, so it composes (``with_structure(with_structure(g, "cycles"), "shared_variables")``) and
keeps everything else the base strategy draws.

Shrinking: the added edge is a handful of index draws, each shrinking to 0 (the root, the first
candidate, the first free name), after the base graph's own draws. With the base graph shrunk to one
module, the forced structure shrinks to ``root.a = root`` (a cycle), ``root.a = v; root.b = v`` (a shared
Variable) and ``root.a = m; root.b = m`` (a shared module).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.strategies._internal._draws import index, node
from nnx_conformance.strategies._internal.blueprint import Blueprint, NodeRef, NodeSpec, Ref, VarRef, VarSpec
from nnx_conformance.strategies._internal.names import DEFAULT_CAPABILITIES, allowed, name_pool

__all__ = ["STRUCTURES", "with_structure"]

STRUCTURES: tuple[str, ...] = ("cycles", "shared_modules", "shared_variables")
"""What :func:`with_structure` can force, spelled as the :class:`~nnx_conformance.spec.adapter.Capabilities`
field that claims it, so a property can pass the name of the capability an implementation disclaims."""


@st.composite
def with_structure(
    draw: st.DrawFn,
    base: st.SearchStrategy[Blueprint],
    structure: str,
    *,
    capabilities: Capabilities = DEFAULT_CAPABILITIES,
) -> Blueprint:
    """A blueprint from ``base`` with one more attribute edge, which makes the graph have ``structure``:

    * ``"cycles"``: a back edge from a module to itself or to a module it is reachable from;
    * ``"shared_variables"``: a second reference to an existing Variable (a new ``params`` Variable is
      added first when the graph has none);
    * ``"shared_modules"``: a second reference to a non-root module from a module it does not reach, so
      no cycle is made (a new empty module is added first when no such pair exists).

    The new attribute's name is one the node does not use yet, taken from ``name_pool(capabilities)``
    (so reserved names and separators follow the capabilities), else ``s0``, ``s1``, ...
    """
    if structure not in STRUCTURES:
        raise InvalidArgument(f"structure={structure!r}; expected one of {', '.join(map(repr, STRUCTURES))}")
    bp = draw(base)
    nodes = [list(n.attrs) for n in bp.nodes]
    types = [n.type_name for n in bp.nodes]
    variables = list(bp.variables)
    pool = name_pool(capabilities)

    def attach(src: int, ref: Ref) -> None:
        used = {name for name, _ in nodes[src]}
        free = [n for n in pool if n not in used]
        if free:
            name = free[index(draw, len(free))]
        else:
            name = next(
                f"s{k}"
                for k in range(len(used) + 1)
                if f"s{k}" not in used and allowed(f"s{k}", capabilities)
            )
        nodes[src].append((name, ref))

    if structure == "cycles":
        src = node(draw, len(nodes))
        # Any module that reaches ``src`` (itself first: the simplest cycle is a self-loop) closes a cycle.
        reaching = [src, *(i for i in range(len(nodes)) if i != src and src in _reachable(nodes, i))]
        attach(src, NodeRef(reaching[index(draw, len(reaching))]))
    elif structure == "shared_variables":
        if not variables:
            variables.append(VarSpec.of("params", np.float32(10 * len(variables))))
            attach(node(draw, len(nodes)), VarRef(0))
        var = VarRef(index(draw, len(variables)))
        attach(node(draw, len(nodes)), var)
    else:
        # A second reference to ``dst`` from a module ``dst`` does not reach (so no cycle is made).
        pairs = []
        for dst in range(1, len(nodes)):
            below = _reachable(nodes, dst)
            pairs += [(dst, src) for src in range(len(nodes)) if src not in below]
        if pairs:
            dst, src = pairs[index(draw, len(pairs))]
        else:  # one module, or every module reaches every other: share a new empty one
            types.append(types[0])
            nodes.append([])
            dst = len(nodes) - 1
            attach(node(draw, dst), NodeRef(dst))
            src = node(draw, dst)
        attach(src, NodeRef(dst))
    specs = tuple(NodeSpec(t, tuple(attrs)) for t, attrs in zip(types, nodes))
    return Blueprint(specs, tuple(variables)).validate()


def _reachable(nodes: list[list[tuple[str, Ref]]], start: int) -> set[int]:
    """The modules reachable from ``start`` (itself included) along module attributes."""
    seen, todo = {start}, [start]
    while todo:
        for _, ref in nodes[todo.pop()]:
            if isinstance(ref, NodeRef) and ref.index not in seen:
                seen.add(ref.index)
                todo.append(ref.index)
    return seen
