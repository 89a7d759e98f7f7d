"""Adapter ``flax``: ``flax.nnx`` in *graph mode*, pinned; flax 0.10 to 0.12 (checked on 0.10.7, 0.11.2 and
0.12.8, each with the jax of its time: ``docs/flax_releases.md``).

One adapter for every release: where their APIs differ, :data:`FEATURES` (probed once at import, never a
version string: ``spec/adapters/_flax_features.py``) picks the spelling, and :func:`expectations_file` the
known-deviations file. What follows describes 0.12; the older spellings are in ``FlaxFeatures``' fields.

Graph mode is what NNX's shared-reference semantics live in, and it is what this adapter tests. flax 0.12
has two switches, ``flax.config.nnx_graph_mode`` (default ``True``) and ``flax.config.nnx_graph_updates``
(default ``True``); ``nnx.set_graph_mode`` / ``nnx.set_graph_updates`` override them per context. A future
release may flip the defaults to tree mode (shared Variables raise there), so every call below passes
``graph=True`` explicitly (``nnx.split``, ``nnx.jit``/``nnx.vmap`` with ``graph_updates=True`` too) and
nothing here depends on the global flags.

How the protocol maps onto flax:

* modules: ``new_module(type_name)`` is a cached ``nnx.Module`` subclass per name. ``attrs`` lists
  ``vars(m)`` minus the per-instance bookkeeping every ``nnx.Module`` carries (``_pytree__state``,
  ``_pytree__nodes``, found by probing an empty module rather than hard-coded).
* collections are ``nnx.Variable`` subclasses: ``"params"`` is ``nnx.Param``, ``"batch_stats"`` is
  ``nnx.BatchStat``, any other name a cached subclass named after it; :meth:`FlaxAdapter.variable_collection`
  maps back. A collection filter is the Variable *type* (``nnx.OfType``, i.e. ``isinstance``): flax's own
  string filters match a ``tag`` attribute, not a collection.
* sharding is the ``out_sharding`` Variable metadata (``sharding`` and ``sharding_names`` are deprecated
  aliases that flax renames). Variables carrying it are created with ``eager_sharding=False``: with the
  default eager sharding, flax insists on a mesh at construction time; the annotation itself is the same.
* "the variable" of a flax state is the ``nnx.Variable`` leaf of the ``nnx.State``. Since flax 0.11
  (``VariableState`` is gone) those leaves are the module's *own* Variable objects, not snapshots.
* ``partition`` is ``nnx.split(m, graph=True)`` with the pair swapped to ``(state, graphdef)``; ``merge`` is
  ``nnx.merge(graphdef, state)`` (default ``copy=False``); ``update`` is ``nnx.update``; ``union`` is
  ``nnx.merge_state`` (later states win on a shared path, like ``dict.update``); ``filter`` is
  ``nnx.filter_state`` with one ``nnx.Any`` of the filters (passing several filters to flax returns one
  state *per filter*, not their union).
* RNG: ``nnx.Rngs(seed)`` (the ``default`` stream); a draw is ``rngs()``; ``fork`` is ``Rngs.fork()`` (no
  ``split=``, deprecated), which draws one key from each parent stream and seeds a new stream with it.
  Contexts from keys, named streams (``rng_streams``) and ``split`` (``rng_split``) are
  :class:`~._flax_rng.FlaxRngStreams`'s.

Depth: flax's graph flatten/unflatten are recursive (1 frame per nesting level to split, 2 to merge).
See ``_MAX_DEPTH``.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path as _FilePath
from typing import Any, ClassVar

import flax
import jax
import jax.numpy as jnp
from flax import nnx

from nnx_conformance.spec.adapter import Capabilities, Filter, Path, Sharding
from nnx_conformance.spec.adapters._flax_features import FEATURES, FlaxFeatures
from nnx_conformance.spec.adapters._flax_rng import FlaxRngStreams

__all__ = ["FEATURES", "FlaxAdapter", "FlaxBlock", "FlaxFeatures", "FlaxLayers", "FlaxScanMLP"]


_MAX_DEPTH = 400
"""Chain depth claimed for ``graph.deep``.

flax's graph traversals are recursive: ``nnx.split`` and ``nnx.update`` use one interpreter frame per
nesting level, ``nnx.merge`` two (``_graph_unflatten`` plus its nested ``_get_children``). Measured on
flax 0.12.8 / CPython 3.11 by binary search over chains ending in one Variable:

* fresh interpreter, default recursion limit 1000 (how the suite's isolated ``graph.deep`` child runs):
  split 988, update 987, merge 491 levels; one more level raises ``RecursionError`` (no crash);
* inside a Hypothesis test (Hypothesis raises the limit to about 2046 while a test runs): split 1982,
  merge 988.

So the real limit is ``(sys.getrecursionlimit() - caller frames) / 2``, not a flax setting. 400 is what
merge handles from any reasonable caller under the default limit.
"""

_DEFAULT_KERNEL_INIT: Any = nnx.initializers.lecun_normal()
"""``nnx.Linear``'s default kernel initialiser, wrapped with sharding metadata where ``kernel_metadata=`` is
missing."""

_EXPECTATIONS_DIR = _FilePath(__file__).resolve().parent.parent / "expectations"


def expectations_file(features: FlaxFeatures = FEATURES) -> str:
    """The known-deviations file for the flax that has ``features``: the verdicts that differ between
    releases follow a feature, so the file is chosen by it (never by the version string).

    ``VariableState`` snapshots as State leaves (0.10) make ``nnx.merge`` build new Variables, so
    ``graph.isolation`` passes there: ``flax-0.10.txt``. Variable leaves (0.11, 0.12) share them:
    ``flax.txt``. Measured per release in ``docs/flax_releases.md``.
    """
    name = "flax.txt" if features.variable_leaves else "flax-0.10.txt"
    return str(_EXPECTATIONS_DIR / name)


_ALIASES: dict[str, type[nnx.Variable[Any]]] = {"params": nnx.Param, "batch_stats": nnx.BatchStat}
_VARIABLE_TYPES: dict[str, type[nnx.Variable[Any]]] = dict(_ALIASES)
_COLLECTIONS: dict[type[nnx.Variable[Any]], str] = {cls: name for name, cls in _ALIASES.items()}
_MODULE_TYPES: dict[str, type[nnx.Module]] = {}


_VARIABLE_STATE: Any = None if FEATURES.variable_leaves else getattr(nnx, "VariableState", None)
"""``nnx.VariableState`` where a State's leaves are snapshots (before 0.11), else ``None``."""


def _as_leaf(var: Any) -> Any:
    """A State leaf for ``var``: itself, or (before 0.11) its ``VariableState``."""
    if _VARIABLE_STATE is not None and isinstance(var, nnx.Variable):
        return var.to_state()
    return var


def _in_this_module(namespace: dict[str, Any]) -> None:
    namespace["__module__"] = __name__


def _variable_type(collection: str) -> type[nnx.Variable[Any]]:
    """The Variable subclass standing for ``collection`` (created once per name, process-wide)."""
    cls = _VARIABLE_TYPES.get(collection)
    if cls is None:
        cls = types.new_class(collection, (nnx.Variable,), exec_body=_in_this_module)
        _VARIABLE_TYPES[collection] = cls
        _COLLECTIONS[cls] = collection
    return cls


def _transform_mode(graph: bool) -> dict[str, Any]:
    """Keyword arguments pinning a lifted transform (``nnx.jit``/``vmap``/``scan``) to a mode: graph mode
    with graph updates (Variable writes, ``Rngs`` counters and structure changes propagate out), or tree
    mode, where only Variable updates propagate and ``graph_updates`` has no meaning."""
    if not FEATURES.graph_keyword:  # before 0.12 there is only graph mode, with graph updates
        return {}
    return {"graph": True, "graph_updates": True} if graph else {"graph": False, "graph_updates": False}


def _split_rngs_mode(graph: bool) -> dict[str, Any]:
    """``nnx.split_rngs``'s mode keywords, as :func:`_transform_mode` (none before 0.12)."""
    if not FEATURES.split_rngs_graph_keyword:
        return {}
    return {"graph": graph, "graph_updates": graph}


def sharding_metadata(sharding: Sharding) -> dict[str, Any]:
    """Variable metadata annotating ``sharding``, under this flax's name (:attr:`FlaxFeatures.sharding_key`)."""
    metadata: dict[str, Any] = {FEATURES.sharding_key: tuple(sharding)}
    if FEATURES.eager_sharding_keyword:
        metadata["eager_sharding"] = False
    return metadata


def _on_protocol_paths(predicate: Callable[[Path, Any], bool]) -> Callable[[tuple[Any, ...], Any], bool]:
    """A protocol predicate (paths of ``str``) as a flax one (paths of keys, ``int`` in flax's own
    containers), given paths spelled as :meth:`FlaxAdapter.state_items` spells them."""
    return lambda path, variable: predicate(tuple(str(key) for key in path), variable)


def _module_type(type_name: str) -> type[nnx.Module]:
    cls = _MODULE_TYPES.get(type_name)
    if cls is None:
        cls = types.new_class(type_name, (nnx.Module,), exec_body=_in_this_module)
        _MODULE_TYPES[type_name] = cls
    return cls


class _Probe(nnx.Module):
    """An empty module: whatever its ``__dict__`` holds is flax bookkeeping, not graph attributes."""


_INTERNAL_ATTRS = frozenset(vars(_Probe()))
_RESERVED = frozenset(dir(nnx.Module)) | _INTERNAL_ATTRS


class FlaxBlock(nnx.Module):
    """The seed's Block in flax: Linear -> BatchNorm -> gelu -> Dropout(0.1), randomness at call time."""

    def __init__(self, din: int, dout: int, *, rngs: nnx.Rngs) -> None:
        self.linear = nnx.Linear(din, dout, rngs=rngs)
        self.bn = nnx.BatchNorm(dout, momentum=0.95, rngs=rngs)
        self.dropout = nnx.Dropout(0.1)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs) -> jax.Array:
        x = self.linear(x)
        x = self.bn(x, use_running_average=not train)
        x = jax.nn.gelu(x)
        return self.dropout(x, deterministic=not train, rngs=rngs)


class FlaxScanMLP(nnx.Module):
    """The seed's ScanMLP in flax idiom: ``nnx.vmap`` init over split keys, ``nnx.scan`` over the stack.

    ``n_layers - 1`` blocks, as in the seed, so stacked shapes can be compared one to one. The transforms
    run in graph mode (``graph=True, graph_updates=True``); :class:`~.flax_tree.FlaxTreeScanMLP` sets the
    class attribute ``graph_mode`` to ``False`` for tree mode. A class attribute, not an instance one: an
    instance attribute would be a static of the module's definition.
    """

    graph_mode: ClassVar[bool] = True

    def __init__(self, hidden_size: int, n_layers: int, *, rngs: nnx.Rngs) -> None:
        self.n_layers = n_layers
        graph = type(self).graph_mode

        @nnx.split_rngs(splits=n_layers - 1, **_split_rngs_mode(graph))
        @nnx.vmap(in_axes=0, out_axes=0, **_transform_mode(graph))
        def make(rngs: nnx.Rngs) -> FlaxBlock:
            return FlaxBlock(hidden_size, hidden_size, rngs=rngs)

        self.layers = make(rngs)
        self.linear = nnx.Linear(hidden_size, hidden_size, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rngs: nnx.Rngs) -> jax.Array:
        graph = type(self).graph_mode

        @nnx.split_rngs(splits=self.n_layers - 1, **_split_rngs_mode(graph))
        @nnx.scan(in_axes=(nnx.Carry, 0, 0), out_axes=nnx.Carry, **_transform_mode(graph))
        def step(x: jax.Array, block: FlaxBlock, rngs: nnx.Rngs) -> jax.Array:
            return block(x, train=train, rngs=rngs)

        x = step(x, self.layers, rngs)
        return self.linear(x)


class FlaxLayers:
    """``nnx.Linear``/``nnx.BatchNorm``/``nnx.Dropout`` configured to mirror the seed's layers.

    Differences that remain (and that no clause depends on): flax's Linear names its parameters
    ``kernel``/``bias`` and initialises the kernel with LeCun normal (the seed: ``w``/``b``, uniform).
    BatchNorm uses ``momentum=0.95`` like the seed's ``mu``. Dropout is built without ``rngs`` so that, as
    in the seed, it holds no RNG state and draws from the context given at call time.
    """

    def linear(self, din: int, dout: int, ctx: nnx.Rngs, sharding: Sharding | None = None) -> nnx.Linear:
        """A sharding annotation goes on the kernel, as metadata (:attr:`FlaxFeatures.linear_kernel_metadata`)."""
        if sharding is None:
            return nnx.Linear(din, dout, rngs=ctx)
        if FEATURES.linear_kernel_metadata:
            return nnx.Linear(din, dout, rngs=ctx, kernel_metadata=sharding_metadata(sharding))
        init = nnx.with_metadata(_DEFAULT_KERNEL_INIT, **sharding_metadata(sharding))
        return nnx.Linear(din, dout, rngs=ctx, kernel_init=init)

    def batch_norm(self, din: int, ctx: nnx.Rngs, momentum: float = 0.95) -> nnx.BatchNorm:
        return nnx.BatchNorm(din, momentum=momentum, rngs=ctx)

    def dropout(self, rate: float, ctx: nnx.Rngs) -> nnx.Dropout:
        """``ctx`` is unused at construction (see the class docstring)."""
        del ctx
        return nnx.Dropout(rate)

    def block(self, din: int, dout: int, ctx: nnx.Rngs) -> FlaxBlock:
        return FlaxBlock(din, dout, rngs=ctx)

    scan_mlp_type: ClassVar[type[FlaxScanMLP]] = FlaxScanMLP

    def scan_mlp(self, hidden: int, n_layers: int, ctx: nnx.Rngs) -> FlaxScanMLP:
        """The optional protocol method (``Capabilities.scan_mlp``): ``nnx.vmap`` init, ``nnx.scan`` call."""
        return self.scan_mlp_type(hidden, n_layers, rngs=ctx)

    def call(self, module: Any, x: Any, *, train: bool, ctx: nnx.Rngs) -> Any:
        if isinstance(module, nnx.Linear):
            return module(x)
        if isinstance(module, nnx.BatchNorm):
            return module(x, use_running_average=not train)
        if isinstance(module, nnx.Dropout):
            return module(x, deterministic=not train, rngs=ctx)
        if isinstance(module, FlaxBlock | FlaxScanMLP):
            return module(x, train=train, rngs=ctx)
        raise TypeError(f"not a layer of this adapter: {type(module).__name__}")


class FlaxAdapter(FlaxRngStreams):
    """The protocol over ``flax.nnx`` in graph mode; the module docstring gives the mapping. Contexts from
    keys, named streams and split come from :class:`~._flax_rng.FlaxRngStreams` (first base, so its
    ``new_context`` is the one used)."""

    name = "flax"
    version: ClassVar[str] = f"flax {flax.__version__}, jax {jax.__version__}"
    """Named in reports: verdicts differ by release (``docs/flax_releases.md``)."""
    capabilities = Capabilities(
        cycles=True,  # graph mode: split/merge resolve back-references (NodeRef), self-loops included
        shared_modules=True,
        shared_variables=True,  # stored once, under the first path in sorted DFS order
        separator_in_names=True,  # State is nested by attribute, so "a/b" never meets a.b
        hashable_def=True,  # GraphDef is a hashable dataclass (provided the statics are hashable)
        max_depth=_MAX_DEPTH,
        rng=True,
        layers=True,
        sharding=True,
        scan_mlp=True,
        rng_streams=True,  # FlaxRngStreams: ctx[name](), nnx.Rngs(ctx[name])
        rng_split=True,  # FlaxRngStreams: ctx.split(n)
        reserved_names=_RESERVED,
    )

    expectations: ClassVar[str | None] = expectations_file()
    """This flax's known deviations (:func:`expectations_file`)."""

    def __init__(self) -> None:
        self.layers = FlaxLayers()

    # -- building and reading graphs -------------------------------------------------------------------
    def new_module(self, type_name: str) -> nnx.Module:
        return _module_type(type_name)()

    def set_attr(self, module: Any, name: str, value: Any) -> None:
        """``setattr``; before 0.11 a State's ``VariableState`` snapshot is held as the Variable it
        describes (``to_variable()``, a new object), the only way flax lets a module hold it."""
        if _VARIABLE_STATE is not None and isinstance(value, _VARIABLE_STATE):
            value = value.to_variable()
        setattr(module, name, value)

    def del_attr(self, module: Any, name: str) -> None:
        """The optional protocol method (``Capabilities.delete_attrs``): ``del module.<name>``."""
        delattr(module, name)

    def attrs(self, module: Any) -> Iterable[tuple[str, Any]]:
        return [(name, value) for name, value in vars(module).items() if name not in _INTERNAL_ATTRS]

    def is_module(self, obj: Any) -> bool:
        return isinstance(obj, nnx.Module)

    def type_name(self, module: Any) -> str:
        return type(module).__name__

    def new_variable(
        self, collection: str, value: Any, sharding: Sharding | None = None
    ) -> nnx.Variable[Any]:
        cls = _variable_type(collection)
        if sharding is None:
            return cls(value)
        return cls(value, **sharding_metadata(sharding))

    def is_variable(self, obj: Any) -> bool:
        """An ``nnx.Variable``, or (before 0.11) the ``VariableState`` snapshot a State holds."""
        return isinstance(obj, nnx.Variable) or (
            _VARIABLE_STATE is not None and isinstance(obj, _VARIABLE_STATE)
        )

    def variable_collection(self, var: Any) -> str:
        """Our name for the type; a flax Variable type we did not create is named by its class name."""
        cls = var.type if _VARIABLE_STATE is not None and isinstance(var, _VARIABLE_STATE) else type(var)
        return _COLLECTIONS.get(cls, cls.__name__)

    def variable_value(self, var: Any) -> Any:
        """``get_value()`` where it exists (``.value`` is deprecated in flax 0.12: it warns), else ``.value``."""
        if FEATURES.get_value and isinstance(var, nnx.Variable):
            return var.get_value()
        return var.value

    def variable_sharding(self, var: Any) -> Sharding | None:
        """The annotation under :attr:`FlaxFeatures.sharding_key`."""
        if FEATURES.metadata_by_name and isinstance(var, nnx.Variable):
            sharding = var.get_metadata(FEATURES.sharding_key, None)
        else:
            sharding = var.get_metadata().get(FEATURES.sharding_key)
        return None if sharding is None else tuple(sharding)

    # -- the functional API ----------------------------------------------------------------------------
    def partition(self, module: Any) -> tuple[nnx.State, nnx.GraphDef[Any]]:
        mode = {"graph": self.graph_mode} if FEATURES.graph_keyword else {}  # before 0.12: graph mode only
        graphdef, state = nnx.split(module, **mode)
        return state, graphdef

    def merge(self, graphdef: Any, state: Any) -> Any:
        return nnx.merge(graphdef, state)

    def update(self, module: Any, state: Any) -> None:
        nnx.update(module, state)

    def state_items(self, state: Any) -> list[tuple[Path, Any]]:
        """``nnx.to_flat_state``: sorted by path tuple, which is the canonical order.

        Attribute keys are already ``str``; the ``str()`` only matters for the ``int`` keys of flax's own
        containers (``nnx.List``), which the protocol's paths spell as digits.
        """
        return [(tuple(str(key) for key in path), leaf) for path, leaf in nnx.to_flat_state(state)]

    def make_state(self, items: Sequence[tuple[Path, Any]]) -> nnx.State:
        """``nnx.from_flat_state``; before 0.11 a Variable becomes the ``VariableState`` a State holds."""
        return nnx.from_flat_state([(tuple(path), _as_leaf(var)) for path, var in items])

    def filter(self, state: Any, *filters: Filter) -> nnx.State:
        predicates = [_variable_type(f) if isinstance(f, str) else _on_protocol_paths(f) for f in filters]
        return nnx.filter_state(state, nnx.Any(*predicates))

    def union(self, *states: Any) -> nnx.State:
        if not states:
            return nnx.State({})
        return nnx.merge_state(*states)

    # -- randomness (new_context, make_rng_stream, from_stream, split: FlaxRngStreams) ---------------------
    def make_rng(self, ctx: Any) -> jax.Array:
        return ctx()

    def fork(self, ctx: Any) -> nnx.Rngs:
        return ctx.fork()

    def key_data(self, key: Any) -> jax.Array:
        key = jnp.asarray(key)
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(key)
        return key.astype(jnp.uint32)

    graph_mode: ClassVar[bool] = True
    """The mode every ``nnx`` call of this adapter is pinned to (:class:`~.flax_tree.FlaxTreeAdapter`: ``False``)."""

    def jit(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        return nnx.jit(fn, **{**_transform_mode(self.graph_mode), **kwargs})

    def vmap(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        return nnx.vmap(fn, **{**_transform_mode(self.graph_mode), **kwargs})

    # -- reproductions (optional protocol method, see spec/adapter.py: Renders) --------------------------
    def render(self, scenario: Any) -> str | None:
        """A failure's reproduction in plain ``flax.nnx`` (graph mode), importing nothing of the suite;
        ``None`` for a subclass."""
        if type(self) is not FlaxAdapter:
            return None
        from nnx_conformance.spec.adapters._render_flax import FlaxRenderer

        return FlaxRenderer(scenario).script()
