"""A blueprint as a short script that rebuilds its graph through an implementation's adapter.

Failure reports print this, so that a shrunk counterexample is something to paste and run rather than a
nest of indices. Every statement goes through the adapter (``a.new_module``, ``a.set_attr``...), so the
same snippet works for any implementation; comments mark the edges that make the graph interesting.
"""

from __future__ import annotations

import sys

import numpy as np

from nnx_conformance.strategies._internal.blueprint import Blueprint, NodeRef, VarRef, VarSpec
from nnx_conformance.strategies._internal.oracle import EdgeKind, oracle

__all__ = ["snippet", "summary"]

DEFAULT_ADAPTER = "nnx_conformance.spec.adapters.core:CoreAdapter"


def _target(adapter: str) -> tuple[str, str]:
    """``(module, attribute)`` of an adapter named by its import string ``pkg.module:Attr``.

    Short names (``"core"``) are the registry's business (:mod:`nnx_conformance.spec.registry`); the
    strategies depend on nothing of the spec but the adapter protocol, so callers resolve them first.
    """
    module, sep, attr = adapter.partition(":")
    if not sep or not module or not attr:
        raise ValueError(
            f"snippet() needs the adapter as an import string 'pkg.module:Attr', got {adapter!r} "
            "(a registered short name resolves with nnx_conformance.spec.registry.resolve(name).target)"
        )
    return module, attr


def _make_adapter(module: str, attr: str) -> str:
    """``Attr()`` for an adapter class or factory, ``Attr`` for a ready instance (as the registry loads it).

    Decided without importing anything: an instance can only be known if its module is already loaded,
    which it is whenever the snippet describes a graph the current process built.
    """
    obj = getattr(sys.modules.get(module), attr, None)
    is_instance = obj is not None and not isinstance(obj, type) and hasattr(obj, "new_module")
    return attr if is_instance else f"{attr}()"


def _array(var: VarSpec) -> str:
    dtype = f"np.{var.dtype}" if hasattr(np, var.dtype) else f"np.dtype({var.dtype!r})"
    return f"np.array({var.array().tolist()!r}, {dtype})"


def _new_variable(var: VarSpec) -> str:
    sharding = "" if var.sharding is None else f", {var.sharding!r}"
    return f"a.new_variable({var.collection!r}, {_array(var)}{sharding})"


def _count(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def summary(bp: Blueprint) -> str:
    """``3 modules, 2 Variables; shared: 1 module, 1 Variable; 1 cycle edge``: what a blueprint holds.

    Only counts (and names nothing of any implementation); a blueprint that does not validate is
    summarised by its sizes alone.
    """
    text = f"{_count(len(bp.nodes), 'module')}, {_count(len(bp.variables), 'Variable')}"
    try:
        o = oracle(bp)
    except Exception:  # a malformed blueprint still has a repr
        return text + " (malformed)"
    shared = [
        _count(n, what)
        for n, what in ((len(o.shared_nodes), "module"), (len(o.shared_variables), "Variable"))
        if n
    ]
    if shared:
        text += "; shared: " + ", ".join(shared)
    if o.cycles:
        text += f"; {_count(len(o.cycles), 'cycle edge')}"
    return text


def snippet(bp: Blueprint, adapter: str = DEFAULT_ADAPTER) -> str:
    """Python source that rebuilds ``bp`` with ``adapter``, the adapter's import string ``"pkg.module:Attr"``
    (as :func:`nnx_conformance.spec.isolation.adapter_spec` gives it; a short name such as ``"core"`` must
    be resolved by the caller: ``registry.resolve("core").target``).

    The graph's root ends up in the variable ``root``. Modules are ``root``, ``m1``, ``m2``...; a Variable
    gets a name (``v0``...) only when it is shared, otherwise it is created where it is assigned.
    """
    module, attr = _target(adapter)
    o = oracle(bp)
    kinds = {(e.src, e.name): e.kind for e in o.edges}
    users: dict[int, int] = {}
    for node in bp.nodes:
        for _, ref in node.attrs:
            if isinstance(ref, VarRef):
                users[ref.index] = users.get(ref.index, 0) + 1

    def module_name(i: int) -> str:
        return "root" if i == 0 else f"m{i}"

    summary = f"{len(bp.nodes)} module(s), {len(bp.variables)} Variable(s)"
    if o.shared_nodes or o.shared_variables:
        summary += f", shared: {len(o.shared_nodes)} module(s) {len(o.shared_variables)} Variable(s)"
    if o.cycles:
        summary += f", {len(o.cycles)} cycle edge(s)"
    lines = [
        f"# {summary}",
        "import numpy as np",
        f"from {module} import {attr}",
        "",
        f"a = {_make_adapter(module, attr)}",
    ]
    lines += [f"{module_name(i)} = a.new_module({node.type_name!r})" for i, node in enumerate(bp.nodes)]
    lines += [
        f"v{j} = {_new_variable(var)}  # shared" for j, var in enumerate(bp.variables) if users.get(j, 0) > 1
    ]
    for i, node in enumerate(bp.nodes):
        for name, ref in node.attrs:
            comment = ""
            if isinstance(ref, NodeRef):
                value = module_name(ref.index)
                kind = kinds.get((i, name))
                if kind is EdgeKind.CYCLE:
                    comment = "  # cycle"
                elif kind is EdgeKind.SHARED:
                    comment = "  # shared"
            elif isinstance(ref, VarRef):
                var = bp.variables[ref.index]
                value = f"v{ref.index}" if users[ref.index] > 1 else _new_variable(var)
            else:
                value = repr(ref.value)
            lines.append(f"a.set_attr({module_name(i)}, {name!r}, {value}){comment}")
    return "\n".join(lines) + "\n"
