"""Mutants the ``sharding.*`` clauses must catch.

A sharding annotation is metadata no single-device computation reads, so each of these mutants passes every
other clause: values, paths, definitions and keys are all right. Each breaks one link of the chain from
"the user wrote an annotation" to "the array sits on the devices it names":

* the annotation is kept by partition, merge and filter but dropped by the state's pytree unflatten
  (:class:`StatePytreeDropsSharding`), so it is lost in ``tree_map``/``jit``/``vmap``/``scan``;
* ``update`` rebuilds the incoming Variables from their values alone (:class:`UpdateDropsSharding`);
* ``Linear`` accepts ``sharding=`` and ignores it (:class:`LinearIgnoresSharding`);
* ``merge`` moves every value to one device (:class:`MergeGathersToOneDevice`): invisible on one device,
  which is why ``sharding.placement`` also runs on eight forced CPU devices.

All are adapters over the reference core that subclass or wrap, never patch, its classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax

from mutants import mutant
from nnx_conformance.core import State, Variable
from nnx_conformance.core.layers import Linear
from nnx_conformance.core.rng import Context
from nnx_conformance.spec.adapter import Sharding
from nnx_conformance.spec.adapters.core import CoreAdapter, CoreLayers

__all__ = [
    "LinearIgnoresSharding",
    "MergeGathersToOneDevice",
    "StatePytreeDropsSharding",
    "UpdateDropsSharding",
]


class _LossyState(State):
    """A core ``State`` whose pytree keeps paths and collections as aux data but not shardings.

    Flattening yields the Variables' values; unflattening builds fresh Variables from
    ``(collection, value)``, the annotation forgotten -- the bug of an implementation that treats sharding
    as a property of the live object rather than as part of the pytree's static structure.
    """

    __slots__ = ()


def _lossy_flatten(state: _LossyState) -> tuple[list[Any], tuple[tuple[Any, ...], tuple[str, ...]]]:
    paths = tuple(state.keys())
    return [var.value for var in state.values()], (paths, tuple(var.collection for var in state.values()))


def _lossy_unflatten(aux: tuple[tuple[Any, ...], tuple[str, ...]], values: Sequence[Any]) -> _LossyState:
    paths, collections = aux
    data = {p: Variable(c, v) for p, c, v in zip(paths, collections, values)}
    return _LossyState._from_sorted(data)


jax.tree_util.register_pytree_node(_LossyState, _lossy_flatten, _lossy_unflatten)


@mutant(catches="sharding.metadata")
class StatePytreeDropsSharding(CoreAdapter):
    """The state's pytree unflatten forgets each Variable's sharding annotation (rebuilds it from collection
    and value only), so partition, merge, filter, union and update keep it but ``jax.tree_util.tree_map``,
    ``jit``, ``vmap`` and ``scan`` return states without it; sharding.metadata must catch it."""

    def partition(self, module: Any) -> tuple[State, Any]:
        state, graphdef = super().partition(module)
        return _LossyState._from_sorted(dict(state.items())), graphdef


@mutant(catches="sharding.metadata")
class UpdateDropsSharding(CoreAdapter):
    """``update`` writes each incoming entry as a fresh Variable made from its collection and value, so the
    updated module's Variables lose their sharding annotation while their values are right;
    sharding.metadata must catch it."""

    def update(self, module: Any, state: Any) -> None:
        bare = State({path: Variable(var.collection, var.value) for path, var in state.items()})
        super().update(module, bare)


class _IgnoringLayers(CoreLayers):
    def linear(self, din: int, dout: int, ctx: Context, sharding: Sharding | None = None) -> Linear:
        del sharding  # accepted for the signature, then dropped: the bug
        return Linear(din, dout, ctx=ctx)


@mutant(catches="sharding.placement")
class LinearIgnoresSharding(CoreAdapter):
    """``Linear(din, dout, sharding=...)`` accepts the annotation and drops it, so its kernel is placed
    replicated whatever the user asked for; sharding.placement must catch it (on any number of devices: the
    kernel's annotation itself is checked)."""

    layers = _IgnoringLayers()


@mutant(catches="sharding.placement", by="test_placement_on_forced_cpu_devices")
class MergeGathersToOneDevice(CoreAdapter):
    """``merge`` copies every value to the first device before planting it (as an implementation that
    "makes sure values are on device" with ``jax.device_put(x, jax.devices()[0])`` would), so a placed
    state merges into a module whose arrays all sit on one device; annotations and results stay right, so
    only a multi-device mesh shows it: sharding.placement must catch it on the forced 8-device run."""

    def merge(self, graphdef: Any, state: Any) -> Any:
        device = jax.devices()[0]
        moved = State(
            {
                path: Variable(var.collection, jax.device_put(var.value, device), sharding=var.sharding)
                for path, var in state.items()
            }
        )
        return super().merge(graphdef, moved)


class _Unregistered(Variable):
    """A Variable class whose *subclasses* skip the core's automatic pytree registration (the core
    registers every Variable subclass with the right layout; this one is registered by hand below)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super(Variable, cls).__init_subclass__(**kwargs)


class _ShardlessVariable(_Unregistered):
    """A Variable whose pytree aux data carries the collection but not the sharding annotation."""


def _shardless_flatten(var: _ShardlessVariable) -> tuple[tuple[Any], str]:
    return (var.value,), var.collection


def _shardless_unflatten(collection: str, children: Sequence[Any]) -> _ShardlessVariable:
    (value,) = children
    return _ShardlessVariable(collection, value)


jax.tree_util.register_pytree_node(_ShardlessVariable, _shardless_flatten, _shardless_unflatten)


@mutant(catches="sharding.metadata")
class VariablePytreeDropsSharding(CoreAdapter):
    """The *Variable's* pytree keeps its collection as aux data but not its sharding annotation, so every
    Variable rebuilt by ``tree_map``, ``jit``, ``vmap`` or ``scan`` comes back unannotated (the State's own
    pytree is right). sharding.metadata must catch it."""

    def new_variable(self, collection: str, value: Any, sharding: Sharding | None = None) -> Variable[Any]:
        return _ShardlessVariable(collection, value, sharding=sharding)
