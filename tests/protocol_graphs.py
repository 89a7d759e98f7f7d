"""Small hand-built graphs made through the adapter protocol, shared by the per-adapter tests.

They go through ``new_module`` / ``new_variable`` / ``set_attr`` only, so the same graph means the same
thing on every implementation, and a test that compares the seed, the core and flax compares like with
like. (Not a test module: pytest collects ``test_*.py`` only; ``tests/conftest.py`` makes it importable.)
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from nnx_conformance.spec.adapter import Adapter, Path, Sharding


def var(impl: Adapter, value: Any, collection: str = "params", sharding: Sharding | None = None) -> Any:
    """A float32 Variable of ``collection`` holding ``value``."""
    return impl.new_variable(collection, jnp.asarray(value, jnp.float32), sharding=sharding)


def tree(impl: Adapter) -> Any:
    """root{a: A{w}, b: B{w, bs}, n: 3}: two collections, a static, a sharding annotation, no sharing."""
    root, a, b = impl.new_module("Root"), impl.new_module("A"), impl.new_module("B")
    impl.set_attr(root, "a", a)
    impl.set_attr(root, "b", b)
    impl.set_attr(root, "n", 3)
    impl.set_attr(a, "w", var(impl, [1.0, 2.0]))
    impl.set_attr(b, "w", var(impl, [3.0]))
    impl.set_attr(b, "bs", var(impl, [0.5], "batch_stats", sharding=("x",)))
    return root


def shared_variable_graph(impl: Adapter) -> Any:
    """root{c: C{v}, v}: one Variable reachable by two paths."""
    root, child = impl.new_module("Root"), impl.new_module("C")
    v = var(impl, [1.0])
    impl.set_attr(root, "c", child)
    impl.set_attr(root, "v", v)
    impl.set_attr(child, "v", v)
    return root


def values(impl: Adapter, state: Any) -> dict[Path, list[Any]]:
    """A state's values as nested lists, by path: comparable with ``==`` across implementations."""
    return {path: np.asarray(impl.variable_value(v)).tolist() for path, v in impl.state_items(state)}


def attr(impl: Adapter, module: Any, name: str) -> Any:
    """Attribute ``name`` of ``module`` as the adapter reads it."""
    return dict(impl.attrs(module))[name]
