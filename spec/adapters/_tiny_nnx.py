"""The seed's "Tiny NNX", re-stated so that it runs on current JAX, *defects included*.

This module is the object of study of the ``seed`` adapter, not a library to use. It behaves as the
pedagogical notebook (``shared/seed/tiny_nnx.md``) behaves; it is written from the notebook's description
and keeps each observable behaviour, good or bad, on purpose. The only changes are the two that carry no
meaning on current JAX:

* ``jax.random.KeyArray`` (removed from JAX) is spelled ``jax.Array`` in annotations;
* ``jax.tree_map`` (removed) is ``jax.tree_util.tree_map`` wherever the notebook used it (only in prints).

Behaviours kept deliberately (the conformance suite must *detect* every one of them):

* :class:`State` is a ``dict`` keyed by ``"a/b"`` strings. An attribute whose name contains ``"/"`` collides
  with a nested path (``root.__dict__["a/b"]`` vs ``root.a.b``); the later write wins and one Variable is
  silently lost. Iteration, and pytree flattening, follow dict insertion order.
* Partition stores the caller's own Variable objects in the state, once per attribute path: a Variable
  reachable by two paths appears twice. ``update_state`` *replaces* Variable objects path by path, so after
  any functional update (``tree_map`` builds new Variables per leaf) the two paths hold different objects.
* :class:`ModuleDef` is a plain (non-frozen) dataclass: ``__eq__`` without ``__hash__``, hence unhashable and
  unusable as a ``jax.jit`` static argument.
* :class:`Context` derives keys by ``fold_in`` of the *first 4 bytes* of a blake2s hash of the count path, so
  distinct draws can get the same key: the root's draws #25,650 and #50,160 hash to the same 32-bit word.
* :class:`BatchNorm` computes batch statistics with ``keepdims=True``; after one training step the running
  mean/var drift from ``(din,)`` to ``(1, din)`` (to ``(n_layers - 1, 1, din)`` when stacked by ``ScanMLP``).
* Partition, merge and update are recursive Python functions, with the same number of interpreter frames
  per nesting level as the notebook (on CPython 3.11: partition 1, merge 2 because of the dict
  comprehension, update 1), so deep chains die with ``RecursionError`` at the same depths.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp
from jax import random

A = TypeVar("A")
M = TypeVar("M", bound="Module")
Sharding = tuple[str | None, ...]

__all__ = [
    "BatchNorm",
    "Block",
    "Context",
    "Dropout",
    "Linear",
    "Module",
    "ModuleDef",
    "ScanMLP",
    "State",
    "Variable",
]


# ---------------------------------------------------------------------------------------------------------
# Variables and State
# ---------------------------------------------------------------------------------------------------------


class Variable(Generic[A]):
    """A mutable cell tagged with a collection name and an optional sharding annotation."""

    def __init__(self, collection: str, value: A, *, sharding: Sharding | None = None) -> None:
        self.value = value
        self.collection = collection
        self.sharding = sharding

    def __repr__(self) -> str:
        return f"Variable(value={self.value}, collection={self.collection}, sharding={self.sharding})"


def _variable_flatten(var: Variable[Any]) -> tuple[tuple[Any], tuple[str, Sharding | None]]:
    return (var.value,), (var.collection, var.sharding)


def _variable_unflatten(aux: tuple[str, Sharding | None], children: Sequence[Any]) -> Variable[Any]:
    collection, sharding = aux
    return Variable(collection, children[0], sharding=sharding)


jax.tree_util.register_pytree_node(Variable, _variable_flatten, _variable_unflatten)


class State(dict[str, Variable[Any]]):
    """Flat mapping from ``"a/b"`` path strings to Variables, in insertion order."""

    def filter(self, collection: str) -> State:
        """The entries of one collection (the only filter the seed offers)."""
        return State({path: var for path, var in self.items() if var.collection == collection})

    def __repr__(self) -> str:
        body = ",\n  ".join(f"'{path}': {var}".replace("\n", "\n    ") for path, var in self.items())
        return f"State({{\n  {body}\n}})"


def _state_flatten(state: State) -> tuple[tuple[Variable[Any], ...], tuple[str, ...]]:
    # Insertion order, not sorted: two states with the same entries in different orders are different
    # pytrees (the notebook itself notes that paths "should be sorted").
    return tuple(state.values()), tuple(state.keys())


def _state_unflatten(paths: tuple[str, ...], children: Sequence[Variable[Any]]) -> State:
    return State(dict(zip(paths, children)))


jax.tree_util.register_pytree_node(State, _state_flatten, _state_unflatten)


# ---------------------------------------------------------------------------------------------------------
# Module definitions and modules
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ModuleDef(Generic[M]):
    """Static structure of a module graph.

    A shared (or cyclic) submodule is written once as a nested ``ModuleDef`` and afterwards as the ``int``
    index it received. Being a mutable ``eq=True`` dataclass, it is unhashable.
    """

    type: type[M]
    index: int
    submodules: dict[str, ModuleDef[Module] | int]
    static_fields: dict[str, Any]

    def apply(self, state: State) -> Callable[..., tuple[Any, tuple[State, ModuleDef[M]]]]:
        """A function that merges, calls the module, and returns ``(out, module.partition())``."""

        def call(*args: Any, **kwargs: Any) -> tuple[Any, tuple[State, ModuleDef[M]]]:
            module = self.merge(state)
            out = module(*args, **kwargs)  # type: ignore[operator]
            return out, module.partition()

        return call

    def merge(self, state: State) -> M:
        """Rebuild the graph skeleton, then plant ``state``'s Variable objects into it path by path."""
        module: M = _build(self, {})
        module.update_state(state)
        return module


def _build(definition: ModuleDef[Any] | int, built: dict[int, Module]) -> Any:
    """Instantiate ``definition`` (recursively), resolving ``int`` back-references through ``built``."""
    if isinstance(definition, int):
        return built[definition]
    assert definition.index not in built
    # Register the empty object before descending so that cycles resolve to it.
    module = object.__new__(definition.type)
    built[definition.index] = module
    # A comprehension on purpose: on CPython 3.11 it is a frame of its own, as in the notebook, so the
    # recursion limit is hit at the notebook's depth.
    children = {name: _build(sub, built) for name, sub in definition.submodules.items()}
    vars(module).update(definition.static_fields)
    vars(module).update(children)
    return module


def _by_name(item: tuple[str, Any]) -> str:
    return item[0]


class Module:
    """Base class: any attribute holding a Module is a submodule, a Variable is state, the rest is static."""

    def partition(self: M) -> tuple[State, ModuleDef[M]]:
        """``(state, moduledef)``: the state holds this graph's own Variable objects, once per path."""
        state = State()
        definition = _partition(self, {}, (), state)
        assert isinstance(definition, ModuleDef)
        return state, definition

    def update_state(self, state: State) -> None:
        """For each ``"a/b"`` key, *replace* the Variable at that attribute path by the state's object."""
        for path, var in state.items():
            _assign(self, path.split("/"), var)


def _partition(
    module: Module, seen: dict[int, int], prefix: tuple[str, ...], state: State
) -> ModuleDef[Any] | int:
    """Depth-first walk in sorted attribute order; a module met again becomes its ``int`` index.

    Variables are *not* deduplicated: every path that reaches one writes it under ``"/".join(path)``.
    """
    if id(module) in seen:
        return seen[id(module)]
    index = len(seen)
    seen[id(module)] = index
    submodules: dict[str, ModuleDef[Any] | int] = {}
    static_fields: dict[str, Any] = {}
    for name, value in sorted(vars(module).items(), key=_by_name):
        path = (*prefix, name)
        if isinstance(value, Module):
            submodules[name] = _partition(value, seen, path, state)
        elif isinstance(value, Variable):
            state["/".join(path)] = value
        else:
            static_fields[name] = value
    return ModuleDef(type=type(module), index=index, submodules=submodules, static_fields=static_fields)


def _assign(module: Module, parts: Sequence[str], var: Variable[Any]) -> None:
    """``setattr`` at the end of an attribute path, walking it by recursion (one frame per level)."""
    if len(parts) == 1:
        setattr(module, parts[0], var)
    else:
        _assign(getattr(module, parts[0]), parts[1:], var)


# ---------------------------------------------------------------------------------------------------------
# Randomness
# ---------------------------------------------------------------------------------------------------------


def _hash32(numbers: tuple[int, ...]) -> int:
    """The seed's "stable hash": first 4 bytes (big endian) of blake2s over the space-joined decimals."""
    digest = hashlib.blake2s(" ".join(str(n) for n in numbers).encode()).digest()
    return int.from_bytes(digest[:4], byteorder="big")


@dataclasses.dataclass
class Context:
    """RNG context: one key, a counter shared by ``make_rng`` and ``fork``, and the fork path so far.

    Every draw folds a 32-bit hash of ``count_path + (count,)`` into the *root* key (forks keep the same
    key and only extend ``count_path``), so all keys of a tree of contexts live in one 2**32 space.
    """

    key: jax.Array
    count: int = 0
    count_path: tuple[int, ...] = ()

    def fork(self) -> Context:
        """A child context for a JAX transform; consumes one count of the parent."""
        child_path = (*self.count_path, self.count)
        self.count += 1
        return Context(self.key, count_path=child_path)

    def make_rng(self) -> jax.Array:
        """The next key of this context."""
        data = _hash32((*self.count_path, self.count))
        self.count += 1
        return random.fold_in(self.key, data)


def _context_flatten(ctx: Context) -> tuple[tuple[jax.Array], tuple[int, tuple[int, ...]]]:
    # The counter is static aux data: a jit/vmap/scan body's draws never advance the caller's context.
    return (ctx.key,), (ctx.count, ctx.count_path)


def _context_unflatten(aux: tuple[int, tuple[int, ...]], children: Sequence[jax.Array]) -> Context:
    return Context(children[0], *aux)


jax.tree_util.register_pytree_node(Context, _context_flatten, _context_unflatten)


# ---------------------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------------------


class Linear(Module):
    """``x @ w + b``; ``w`` is uniform in [0, 1) (the seed's initialiser), ``b`` zeros."""

    def __init__(self, din: int, dout: int, *, ctx: Context) -> None:
        self.din = din
        self.dout = dout
        self.w = Variable("params", random.uniform(ctx.make_rng(), (din, dout)))
        self.b = Variable("params", jnp.zeros((dout,)))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.w.value + self.b.value


class BatchNorm(Module):
    """Batch normalisation with an EMA of the statistics; the stats keep a leading axis once trained."""

    def __init__(self, din: int, mu: float = 0.95) -> None:
        self.mu = mu
        self.scale = Variable("params", jnp.ones((din,)))
        self.bias = Variable("params", jnp.zeros((din,)))
        self.mean = Variable("batch_stats", jnp.zeros((din,)))
        self.var = Variable("batch_stats", jnp.ones((din,)))

    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        if train:
            axes = tuple(range(x.ndim - 1))
            # keepdims=True: the running stats below become (1, din) after the first step.
            mean = jnp.mean(x, axis=axes, keepdims=True)
            var = jnp.var(x, axis=axes, keepdims=True)
            self.mean.value = self.mu * self.mean.value + (1 - self.mu) * mean
            self.var.value = self.mu * self.var.value + (1 - self.mu) * var
        else:
            mean, var = self.mean.value, self.var.value
        return (x - mean) / jnp.sqrt(var + 1e-5) * self.scale.value + self.bias.value


class Dropout(Module):
    """Inverted dropout drawing its mask from the call's context."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        if train:
            keep = random.bernoulli(ctx.make_rng(), 1 - self.rate, x.shape)
            x = x * keep / (1 - self.rate)
        return x


class Block(Module):
    """Linear -> BatchNorm -> gelu -> Dropout(0.1)."""

    def __init__(self, din: int, dout: int, *, ctx: Context) -> None:
        self.linear = Linear(din, dout, ctx=ctx)
        self.bn = BatchNorm(dout)
        self.dropout = Dropout(0.1)

    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        x = self.linear(x)
        x = self.bn(x, train=train)
        x = jax.nn.gelu(x)
        return self.dropout(x, train=train, ctx=ctx)


class ScanMLP(Module):
    """``n_layers - 1`` Blocks stacked by ``vmap`` at init and run by ``lax.scan``, then one Linear.

    The seed's off-by-one is kept: ``n_layers=5`` stacks 4 blocks.
    """

    def __init__(self, hidden_size: int, n_layers: int, *, ctx: Context) -> None:
        self.n_layers = n_layers
        keys = random.split(ctx.make_rng(), n_layers - 1)
        captured: list[ModuleDef[Block]] = []

        def init_one(key: jax.Array) -> State:
            state, definition = Block(hidden_size, hidden_size, ctx=Context(key)).partition()
            captured[:] = [definition]
            return state

        stacked = jax.vmap(init_one)(keys)
        self.layers = captured[0].merge(stacked)
        self.linear = Linear(hidden_size, hidden_size, ctx=ctx)

    def __call__(self, x: jax.Array, *, train: bool, ctx: Context) -> jax.Array:
        keys = random.split(ctx.make_rng(), self.n_layers - 1)
        state, definition = self.layers.partition()

        def step(carry: jax.Array, inputs: tuple[jax.Array, State]) -> tuple[jax.Array, State]:
            key, layer_state = inputs
            y, (new_state, _) = definition.apply(layer_state)(carry, train=train, ctx=Context(key))
            return y, new_state

        x, state = jax.lax.scan(step, x, (keys, state))
        self.layers.update_state(state)
        return self.linear(x)
