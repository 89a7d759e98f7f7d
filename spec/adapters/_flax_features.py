"""``FlaxFeatures``: what the installed flax.nnx can do, found by probing it once at import.

One adapter serves flax 0.10 to 0.12 by asking these questions instead of parsing a version string: a
backport, a fork or a nightly answers for itself. Each field's docstring says which releases answer which
way (checked on 0.10.7, 0.11.2 and 0.12.8; the verdicts per release are in ``docs/flax_releases.md``).
Its own module because both :mod:`.flax` and :mod:`._flax_rng` branch on it.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
from flax import nnx

__all__ = ["FEATURES", "FlaxFeatures"]


@dataclasses.dataclass(frozen=True)
class FlaxFeatures:
    """What the installed flax can do, found by probing it (never by parsing its version string).

    One adapter serves flax 0.10 to 0.12 by asking these questions; the docstring of each field says which
    releases answer which way (checked on 0.10.7, 0.11.2 and 0.12.8, see ``docs/flax_releases.md``).
    """

    graph_keyword: bool
    """``nnx.split``/``nnx.jit``/``nnx.vmap``/``nnx.scan`` take ``graph=`` (and transforms
    ``graph_updates=``): the graph/tree mode switch of 0.12. Before it every call is graph mode."""
    split_rngs_graph_keyword: bool
    """``nnx.split_rngs`` takes ``graph=`` too (0.12)."""
    variable_leaves: bool
    """A ``State``'s leaves are the module's ``nnx.Variable`` objects (0.11+); before, ``VariableState``
    snapshots, which ``merge``/``update`` require and ``Variable.to_state()`` makes."""
    get_value: bool
    """``Variable.get_value()`` exists (0.12, where ``.value`` warns); before, ``.value``."""
    sharding_key: str
    """The metadata name flax's own ``nnx.get_partition_spec`` reads a sharding annotation from:
    ``out_sharding`` (0.12), ``sharding_names`` (0.11), ``sharding`` (0.10)."""
    eager_sharding_keyword: bool
    """``nnx.Variable`` takes ``eager_sharding=`` (0.12): an annotated Variable is then created with
    ``eager_sharding=False``, since eager sharding demands a mesh at construction."""
    metadata_by_name: bool
    """``Variable.get_metadata(name, default)`` (0.12); before, ``get_metadata()`` returns the dict."""
    linear_kernel_metadata: bool
    """``nnx.Linear`` takes ``kernel_metadata=`` (0.12); before, a kernel's metadata (its sharding) comes
    with its initialiser, ``kernel_init=nnx.with_metadata(init, ...)``."""
    rngs_split: bool
    """``nnx.Rngs.split(n)`` exists (0.12); before, ``Rngs.fork(split=n)`` splits every stream. Probed on
    the class: on an instance, an unknown attribute is a *stream* of that name (``rngs.split`` would be
    the ``default`` stream, and calling it with ``n`` a ``TypeError``)."""

    @classmethod
    def detect(cls) -> FlaxFeatures:
        def takes(fn: Callable[..., Any], keyword: str) -> bool:
            try:
                return keyword in inspect.signature(fn).parameters
            except (TypeError, ValueError):  # pragma: no cover - a builtin without a signature
                return False

        eager = takes(nnx.Variable.__init__, "eager_sharding")
        return cls(
            graph_keyword=takes(nnx.split, "graph") and takes(nnx.jit, "graph"),
            split_rngs_graph_keyword=takes(nnx.split_rngs, "graph"),
            variable_leaves=_state_leaves_are_variables(),
            get_value=callable(getattr(nnx.Variable, "get_value", None)),
            sharding_key=_sharding_key(eager),
            eager_sharding_keyword=eager,
            metadata_by_name=takes(nnx.Variable.get_metadata, "name")
            or len(inspect.signature(nnx.Variable.get_metadata).parameters) > 1,
            linear_kernel_metadata=takes(nnx.Linear.__init__, "kernel_metadata"),
            rngs_split=callable(getattr(nnx.Rngs, "split", None)),
        )


class _LeafProbe(nnx.Module):
    """One Param, to see what ``nnx.split`` puts in a State."""

    def __init__(self) -> None:
        self.w = nnx.Param(jnp.zeros((1,), jnp.float32))


def _state_leaves_are_variables() -> bool:
    _, state = nnx.split(_LeafProbe())
    (leaf,) = [v for _, v in nnx.to_flat_state(state)]
    return isinstance(leaf, nnx.Variable)


def _sharding_key(eager_keyword: bool) -> str:
    """The first metadata name whose value ``nnx.get_partition_spec`` turns into the partition spec."""
    extra: dict[str, Any] = {"eager_sharding": False} if eager_keyword else {}
    for key in ("out_sharding", "sharding_names", "sharding"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 0.12 renames the older names with a DeprecationWarning
            try:
                metadata: dict[str, Any] = {key: ("x",), **extra}
                probe = nnx.Param(jnp.zeros((1,), jnp.float32), **metadata)
                spec = nnx.get_partition_spec(probe)
            except Exception:  # this flax does not read that name (or chokes on it): try the next
                continue
            spec = getattr(spec, "value", spec)  # a Variable holding the spec (0.12 warns on .value)
        if tuple(spec) == ("x",):
            return key
    raise ImportError(
        "cannot find the Variable metadata name this flax reads sharding annotations from (tried "
        "out_sharding, sharding_names, sharding); the flax adapter supports flax 0.10 to 0.12"
    )


FEATURES = FlaxFeatures.detect()
"""The installed flax's features, detected once at import."""
