"""Entry points that :func:`~nnx_conformance.spec.isolation.run_isolated` runs in a child interpreter.

A child is needed where a check can break the interpreter running it (a recursive walk of a 10,000-deep
chain can overflow the C stack: a crash, not an exception) or needs another one (``PYTHONHASHSEED`` is
fixed at start-up). Each entry point takes the adapter (rebuilt in the child from its import spec) and
JSON arguments, and returns JSON data; refer to one with :func:`entry_point`, never with a hand-written
``"pkg.module:func"`` string, so that moving it cannot leave a stale name behind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.spec.properties._judge import pytree_leaves
from nnx_conformance.spec.properties._mutations import fresh_name
from nnx_conformance.strategies import (
    COLLECTIONS,
    Blueprint,
    NodeRef,
    NodeSpec,
    Static,
    VarRef,
    VarSpec,
    build,
    canonical,
    chain,
    name_pool,
    read,
)


def entry_point(fn: Callable[..., Any]) -> str:
    """``"pkg.module:func"`` of a module-level function, as
    :func:`~nnx_conformance.spec.isolation.run_isolated` takes it."""
    if "<locals>" in fn.__qualname__:
        raise ValueError(f"{fn.__qualname__} is not at module level: a child cannot import it")
    return f"{fn.__module__}:{fn.__qualname__}"


def hash_seed_blueprints(capabilities: Capabilities) -> list[Blueprint]:
    """A fixed pair of graphs whose names, hashed into any set or dict, land in seed-dependent order.

    One wide root (every name of the pool, so a set of them iterates in a hash-seed-dependent order) with
    Variables in three collections, a nested module with a static and -- where claimed -- a shared
    Variable, a shared module and a cycle; and one flat node assigned in reverse name order.
    """
    pool = list(name_pool(capabilities))
    value = np.arange(2, dtype=np.float32)
    variables = tuple(VarSpec.of(COLLECTIONS[k % len(COLLECTIONS)], value + k) for k in range(len(pool) + 2))
    sub, leaf = fresh_name(capabilities, pool, "sub"), fresh_name(capabilities, pool, "leaf")
    root_attrs: list[tuple[str, Any]] = [(name, VarRef(k)) for k, name in enumerate(pool)]
    root_attrs += [(sub, NodeRef(1)), (leaf, NodeRef(2))]
    child_attrs: list[tuple[str, Any]] = [(pool[0], VarRef(len(pool))), (pool[-1], Static(3))]
    if capabilities.shared_variables:
        child_attrs.append((pool[1 % len(pool)], VarRef(0)))
    if capabilities.cycles:
        child_attrs.append((pool[2 % len(pool)], NodeRef(0)))
    if capabilities.shared_modules:
        child_attrs.append((pool[3 % len(pool)], NodeRef(2)))
    nodes = (
        NodeSpec("A", tuple(root_attrs)),
        NodeSpec("B", tuple(dict(child_attrs).items())),
        NodeSpec("C", ((pool[0], VarRef(len(pool) + 1)),)),
    )
    flat = NodeSpec("A", tuple((name, VarRef(k)) for k, name in reversed(list(enumerate(pool)))))
    return [Blueprint(nodes, variables).validate(), Blueprint((flat,), variables[: len(pool)]).validate()]


def hash_seed_fingerprint(impl: Any) -> list[dict[str, Any]]:
    """State paths, pytree key paths and leaf values of :func:`hash_seed_blueprints`, as JSON data.

    Runs in a child interpreter under a chosen ``PYTHONHASHSEED`` (see
    :func:`~.graph.test_state_order_ignores_hash_seed`), and in the parent for comparison.
    """
    out = []
    for bp in hash_seed_blueprints(impl.capabilities):
        state, _ = impl.partition(build(bp, impl).root)
        keys, leaves = pytree_leaves(state)
        out.append(
            {
                "paths": [list(p) for p, _ in impl.state_items(state)],
                "keys": keys,
                "leaves": [[str(np.asarray(x).dtype), np.asarray(x).tolist()] for x in leaves],
            }
        )
    return out


def deep_roundtrip(impl: Any, depth: int) -> str:
    """Partition, merge and re-partition a ``depth``-deep chain; ``"ok"`` or what went wrong.

    Runs in a child interpreter: a recursive implementation may overflow the C stack, which kills the
    process instead of raising.
    """
    bp = chain(depth, leaf_only=True)
    root = build(bp, impl).root
    state, graphdef = impl.partition(root)
    want = [("sub",) * depth + ("w",)]
    got = [tuple(p) for p, _ in impl.state_items(state)]
    if got != want:
        shown = [f"{len(p)} names, ending {p[-3:]!r}" for p in got]
        return f"partition: the state has paths [{', '.join(shown)}], expected one path of {depth + 1} names"
    merged = impl.merge(graphdef, state)
    if read(merged, impl) != canonical(bp):
        return "merge: the merged chain is not isomorphic to the original"
    state2, graphdef2 = impl.partition(merged)
    if [tuple(p) for p, _ in impl.state_items(state2)] != want:
        return "re-partition: the merged chain partitions to other paths"
    if graphdef2 != graphdef:
        return "re-partition: the merged chain's definition differs from the original's"
    return "ok"


def deep_attempt(impl: Any, depth: int) -> str:
    """Partition and merge a ``depth``-deep chain; any exception propagates (that is the point)."""
    bp = chain(depth, leaf_only=True)
    state, graphdef = impl.partition(build(bp, impl).root)
    impl.merge(graphdef, state)
    return "ok"


def beyond_depth(max_depth: int) -> int:
    """How deep the beyond-the-limit chain goes: far enough past the claim to overflow a recursive walk."""
    return min(max(10 * max_depth, max_depth + 2_000), 50_000)
