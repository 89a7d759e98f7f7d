"""Adapter ``seed``: the seed's Tiny NNX (:mod:`._tiny_nnx`), driven through the protocol, defects included.

The seed is the suite's negative control. Its adapter therefore *claims every capability* (the notebook
disclaims nothing: it has cycles, sharing, an RNG context, layers and sharding annotations), so that each
clause runs against it and its defects show up as failures, not as skips. The adapter adds no fix of its
own; where the protocol asks for something the seed has no API for, the adapter composes the seed's own
operations the way a seed user would, and says so below:

* :meth:`SeedAdapter.filter` -- the seed filters by *one* collection name. Several filters are the
  notebook's union idiom ``State({**s.filter(a), **s.filter(b)})`` over single filters; a predicate filter
  is a dict comprehension over ``"a/b".split("/")`` paths. So a multi-filter result is ordered filter by
  filter, not in the state's order.
* :meth:`SeedAdapter.union` -- ``State({**a, **b})`` as in the notebook: on a shared path the later state
  silently wins, whatever the two Variables hold.
* :meth:`SeedAdapter.state_items` splits the ``"a/b"`` keys at ``"/"``. An attribute literally named
  ``"a/b"`` thus reads back as the path ``("a", "b")``, and, if ``a.b`` also exists, only one of the two
  Variables is present at all: that is where the separator defect becomes observable.
* :meth:`SeedAdapter.jit` / :meth:`SeedAdapter.vmap` are plain ``jax.jit`` / ``jax.vmap``: the seed has no
  lifted transforms. Its :class:`~._tiny_nnx.Context` and :class:`~._tiny_nnx.State` are pytrees and cross
  them; modules do not (they must be partitioned first, as in the notebook).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nnx_conformance.spec.adapter import Capabilities, Filter, Path, Sharding
from nnx_conformance.spec.adapters import _tiny_nnx as tn

__all__ = ["SeedAdapter", "SeedLayers", "is_key"]

_MODULE_TYPES: dict[str, type[tn.Module]] = {}
"""One ``Module`` subclass per ``type_name``, process-wide, so "same name, same type" holds across adapters."""


def _module_type(type_name: str) -> type[tn.Module]:
    cls = _MODULE_TYPES.get(type_name)
    if cls is None:
        cls = type(type_name, (tn.Module,), {"__module__": __name__})
        _MODULE_TYPES[type_name] = cls
    return cls


def is_key(seed: Any) -> bool:
    """Whether ``new_context``'s argument is a key (typed, or raw uint32 words on a last axis), not an
    integer seed (a scalar); by dtype and rank, so it works on tracers."""
    dtype = getattr(seed, "dtype", None)
    if dtype is None:
        return False
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return bool(dtype == jnp.uint32 and getattr(seed, "ndim", 0) >= 1)


def key_data(key: Any) -> jax.Array:
    """Raw ``uint32`` words of a key: typed keys are unwrapped, legacy ``PRNGKey`` arrays pass through."""
    key = jnp.asarray(key)
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.key_data(key)
    return key.astype(jnp.uint32)


class SeedLayers:
    """The seed's Linear, BatchNorm, Dropout, Block and ScanMLP (the optional ``scan_mlp``)."""

    def linear(self, din: int, dout: int, ctx: tn.Context, sharding: Sharding | None = None) -> tn.Linear:
        """The seed's ``Linear`` has no sharding argument; a requested annotation is put on ``w``."""
        layer = tn.Linear(din, dout, ctx=ctx)
        if sharding is not None:
            layer.w.sharding = sharding
        return layer

    def batch_norm(self, din: int, ctx: tn.Context, momentum: float = 0.95) -> tn.BatchNorm:
        """``ctx`` is unused: the seed's BatchNorm draws no randomness. ``momentum`` is its ``mu``."""
        del ctx
        return tn.BatchNorm(din, mu=momentum)

    def dropout(self, rate: float, ctx: tn.Context) -> tn.Dropout:
        """``ctx`` is unused at construction: the seed's Dropout takes its context at call time."""
        del ctx
        return tn.Dropout(rate)

    def block(self, din: int, dout: int, ctx: tn.Context) -> tn.Block:
        return tn.Block(din, dout, ctx=ctx)

    def scan_mlp(self, hidden: int, n_layers: int, ctx: tn.Context) -> tn.ScanMLP:
        """The optional protocol method (``Capabilities.scan_mlp``): the notebook's ScanMLP, as written."""
        return tn.ScanMLP(hidden, n_layers, ctx=ctx)

    def call(self, module: Any, x: Any, *, train: bool, ctx: tn.Context) -> Any:
        """Each seed layer has its own call signature; dispatch on the layer type."""
        if isinstance(module, tn.Linear):
            return module(x)
        if isinstance(module, tn.BatchNorm):
            return module(x, train=train)
        if isinstance(module, tn.Dropout | tn.Block | tn.ScanMLP):
            return module(x, train=train, ctx=ctx)
        raise TypeError(f"not a seed layer: {type(module).__name__}")


class SeedAdapter:
    """The protocol over :mod:`._tiny_nnx`; see the module docstring for the composed operations."""

    name = "seed"
    capabilities = Capabilities(
        cycles=True,
        shared_modules=True,
        shared_variables=True,
        separator_in_names=True,
        hashable_def=True,
        max_depth=10_000,
        rng=True,
        layers=True,
        sharding=True,
        scan_mlp=True,
        # ``partition`` and ``update_state`` are called on instances (``ModuleDef.merge`` calls
        # ``module.update_state``), so an attribute of that name shadows them. The two helper names are the
        # notebook's static methods on ``Module``.
        reserved_names=frozenset({"partition", "update_state", "_partition_recursive", "_set_value_at_path"}),
    )
    """Everything claimed, ``hashable_def`` and ``max_depth`` included: these are the seed's *bugs*
    (unhashable ``ModuleDef``; recursion dies near 500 levels), which the suite must report, not skip."""

    def __init__(self) -> None:
        self.layers = SeedLayers()

    # -- building and reading graphs -------------------------------------------------------------------
    def new_module(self, type_name: str) -> tn.Module:
        return _module_type(type_name)()

    def set_attr(self, module: Any, name: str, value: Any) -> None:
        setattr(module, name, value)

    def del_attr(self, module: Any, name: str) -> None:
        """The optional protocol method (``Capabilities.delete_attrs``): ``del module.<name>``."""
        delattr(module, name)

    def attrs(self, module: Any) -> Iterable[tuple[str, Any]]:
        """A seed module keeps nothing but graph attributes in its ``__dict__``."""
        return list(vars(module).items())

    def is_module(self, obj: Any) -> bool:
        return isinstance(obj, tn.Module)

    def type_name(self, module: Any) -> str:
        return type(module).__name__

    def new_variable(self, collection: str, value: Any, sharding: Sharding | None = None) -> tn.Variable[Any]:
        return tn.Variable(collection, value, sharding=sharding)

    def is_variable(self, obj: Any) -> bool:
        return isinstance(obj, tn.Variable)

    def variable_collection(self, var: Any) -> str:
        return var.collection

    def variable_value(self, var: Any) -> Any:
        return var.value

    def variable_sharding(self, var: Any) -> Sharding | None:
        return var.sharding

    # -- the functional API ----------------------------------------------------------------------------
    def partition(self, module: Any) -> tuple[tn.State, tn.ModuleDef[Any]]:
        return module.partition()

    def merge(self, graphdef: Any, state: Any) -> tn.Module:
        return graphdef.merge(state)

    def update(self, module: Any, state: Any) -> None:
        module.update_state(state)

    def state_items(self, state: Any) -> list[tuple[Path, Any]]:
        return [(tuple(key.split("/")), var) for key, var in state.items()]

    def make_state(self, items: Sequence[tuple[Path, Any]]) -> tn.State:
        """Joins each path with ``"/"``: two paths that join equal collapse to the last one, as in the seed."""
        return tn.State({"/".join(path): var for path, var in items})

    def filter(self, state: Any, *filters: Filter) -> tn.State:
        result = tn.State()
        for f in filters:
            result = tn.State({**result, **self._filter_one(state, f)})
        return result

    @staticmethod
    def _filter_one(state: tn.State, f: Filter) -> tn.State:
        if isinstance(f, str):
            return state.filter(f)
        return tn.State({key: var for key, var in state.items() if f(tuple(key.split("/")), var)})

    def union(self, *states: Any) -> tn.State:
        merged: dict[str, tn.Variable[Any]] = {}
        for state in states:
            merged = {**merged, **state}
        return tn.State(merged)

    # -- randomness ------------------------------------------------------------------------------------
    def new_context(self, seed: Any) -> tn.Context:
        """The notebook seeds with ``random.PRNGKey``: a raw ``uint32[2]`` threefry key, not a typed key. A
        key (typed, or raw uint32 data) is taken as is, as the notebook's ScanMLP writes ``Context(key)``."""
        return tn.Context(seed if is_key(seed) else jax.random.PRNGKey(seed))

    def make_rng(self, ctx: Any) -> jax.Array:
        return ctx.make_rng()

    def fork(self, ctx: Any) -> tn.Context:
        return ctx.fork()

    def key_data(self, key: Any) -> jax.Array:
        return key_data(key)

    def jit(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        return jax.jit(fn, **kwargs)

    def vmap(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        return jax.vmap(fn, **kwargs)

    # -- reproductions (optional protocol method, see spec/adapter.py: Renders) --------------------------
    def render(self, scenario: Any) -> str | None:
        """A failure's reproduction in the seed's own code; ``None`` for a subclass."""
        if type(self) is not SeedAdapter:
            return None
        from nnx_conformance.spec.adapters._render_seed import SeedRenderer

        return SeedRenderer(scenario).script()
