"""Adapter for the reference core (``nnx_conformance.core``).

The core claims every capability: cycles, shared modules and Variables, any attribute name (paths are
tuples, so ``"a/b"`` is just a name), a hashable ModuleDef, 10,000-deep chains (it is iterative; deeper
chains work too), RNG contexts, layers and sharding metadata. Its only reserved names are the Module API
(public methods) and the few attribute names Python itself owns on every instance.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nnx_conformance.core import (
    BatchNorm,
    Block,
    Context,
    Dropout,
    Linear,
    Module,
    ModuleDef,
    ScanMLP,
    State,
    Variable,
)
from nnx_conformance.spec.adapter import Capabilities, Filter, Path, Sharding

__all__ = ["CoreAdapter", "CoreLayers", "is_key"]

_MODULE_API = frozenset(name for name in vars(Module) if not name.startswith("_"))
# Data descriptors every instance has: assigning these rebinds the object's class or dict.
_PYTHON_OWNED = frozenset({"__class__", "__dict__", "__weakref__"})

# Eager ``jax.random.key_data`` is an op-by-op dispatch (~40 us on CPU); jitted it is a few us, which
# matters when the suite unwraps tens of thousands of keys.
_key_data = jax.jit(jax.random.key_data)


def is_key(seed: Any) -> bool:
    """Whether ``new_context``'s argument is a key (typed, or raw uint32 words on a last axis), not a seed.

    Decided by dtype and rank alone, so it works on tracers: an integer seed is a scalar; raw key data of
    the default threefry keys is ``uint32[2]``."""
    dtype = getattr(seed, "dtype", None)
    if dtype is None:
        return False
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return True
    return bool(dtype == jnp.uint32 and getattr(seed, "ndim", 0) >= 1)


# One Module subclass per type name, shared by every adapter instance ("same name, same type").
_TYPES: dict[str, type[Module]] = {}


def _module_type(type_name: str) -> type[Module]:
    tp = _TYPES.get(type_name)
    if tp is None:
        tp = type(type_name, (Module,), {"__module__": __name__, "__qualname__": type_name})
        _TYPES[type_name] = tp
    return tp


class CoreLayers:
    """The core's layers behind the suite's uniform constructors and call."""

    def linear(self, din: int, dout: int, ctx: Context, sharding: Sharding | None = None) -> Linear:
        return Linear(din, dout, ctx=ctx, sharding=sharding)

    def batch_norm(self, din: int, ctx: Context, momentum: float = 0.95) -> BatchNorm:
        return BatchNorm(din, mu=momentum)

    def dropout(self, rate: float, ctx: Context) -> Dropout:
        return Dropout(rate)

    def block(self, din: int, dout: int, ctx: Context) -> Block:
        return Block(din, dout, ctx=ctx)

    def scan_mlp(self, hidden: int, n_layers: int, ctx: Context) -> ScanMLP:
        """The optional protocol method (``Capabilities.scan_mlp``): the core's own ScanMLP."""
        return ScanMLP(hidden, n_layers, ctx=ctx)

    def call(self, module: Any, x: Any, *, train: bool, ctx: Context) -> Any:
        if isinstance(module, Linear):
            return module(x)
        if isinstance(module, BatchNorm):
            return module(x, train=train)
        return module(x, train=train, ctx=ctx)


class CoreAdapter:
    """Drives ``nnx_conformance.core`` through the suite's :class:`~nnx_conformance.spec.adapter.Adapter`."""

    name = "core"
    capabilities = Capabilities(
        reserved_names=_MODULE_API | _PYTHON_OWNED, scan_mlp=True, rng_streams=True, rng_split=True
    )
    layers = CoreLayers()

    # -- building and reading graphs -------------------------------------------------------------------
    def new_module(self, type_name: str) -> Module:
        return _module_type(type_name)()

    def set_attr(self, module: Any, name: str, value: Any) -> None:
        setattr(module, name, value)

    def del_attr(self, module: Any, name: str) -> None:
        """The optional protocol method (``Capabilities.delete_attrs``): ``del module.<name>``."""
        delattr(module, name)

    def attrs(self, module: Any) -> Iterable[tuple[str, Any]]:
        return list(vars(module).items())

    def is_module(self, obj: Any) -> bool:
        return isinstance(obj, Module)

    def type_name(self, module: Any) -> str:
        return type(module).__name__

    def new_variable(self, collection: str, value: Any, sharding: Sharding | None = None) -> Variable[Any]:
        return Variable(collection, value, sharding=sharding)

    def is_variable(self, obj: Any) -> bool:
        return isinstance(obj, Variable)

    def variable_collection(self, var: Any) -> str:
        return var.collection

    def variable_value(self, var: Any) -> Any:
        return var.value

    def variable_sharding(self, var: Any) -> Sharding | None:
        return var.sharding

    # -- the functional API ----------------------------------------------------------------------------
    def partition(self, module: Any) -> tuple[State, ModuleDef[Any]]:
        return module.partition()

    def merge(self, graphdef: Any, state: Any) -> Any:
        return graphdef.merge(state)

    def update(self, module: Any, state: Any) -> None:
        module.update_state(state)

    def state_items(self, state: Any) -> list[tuple[Path, Any]]:
        return list(state.items())

    def make_state(self, items: Sequence[tuple[Path, Any]]) -> State:
        return State(items)

    def filter(self, state: Any, *filters: Filter) -> State:
        return state.filter(*filters)

    def union(self, *states: Any) -> State:
        return State.union(*states) if states else State()

    # -- randomness ------------------------------------------------------------------------------------
    def new_context(self, seed: Any) -> Context:
        """An integer seed becomes ``jax.random.key(seed)``; a key (typed, or raw uint32 data on the last
        axis) is the context's key as given (the core's ``Context`` takes both kinds)."""
        return Context(seed if is_key(seed) else jax.random.key(seed))

    def make_rng_stream(self, ctx: Any, name: str) -> Any:
        """The optional protocol method (``Capabilities.rng_streams``): ``ctx.make_rng(name)``."""
        return ctx.make_rng(name)

    def from_stream(self, ctx: Any, name: str) -> Context:
        """The optional protocol method (``Capabilities.rng_streams``): ``ctx.from_stream(name)``."""
        return ctx.from_stream(name)

    def split(self, ctx: Any, n: int) -> Context:
        """The optional protocol method (``Capabilities.rng_split``): ``ctx.split(n)``, a batched Context."""
        return ctx.split(n)

    def make_rng(self, ctx: Any) -> Any:
        return ctx.make_rng()

    def fork(self, ctx: Any) -> Context:
        return ctx.fork()

    def key_data(self, key: Any) -> Any:
        if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
            return key
        if isinstance(key, jax.core.Tracer):
            return jax.random.key_data(key)
        return _key_data(key)

    def jit(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        return jax.jit(fn, **kwargs)

    def vmap(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        return jax.vmap(fn, **kwargs)

    # -- reproductions (optional protocol method, see spec/adapter.py: Renders) --------------------------
    def render(self, scenario: Any) -> str | None:
        """A failure's reproduction in the core's own code; ``None`` for a subclass (it may change any
        behaviour, so only the adapter-terms script reproduces it)."""
        if type(self) is not CoreAdapter:
            return None
        from nnx_conformance.spec.adapters._render_core import CoreRenderer

        return CoreRenderer(scenario).script()
