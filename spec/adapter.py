"""The adapter protocol: the only door through which the suite touches an implementation.

The spec never imports an implementation's classes. It builds module graphs, partitions them, draws random
keys and calls layers through the dozen or so operations below, so that one property can judge the
reference core, the seed, flax.nnx or a third-party library alike. An adapter also *declares* what its
implementation claims to support (:class:`Capabilities`); the strategies never generate a feature an
implementation disclaims, and a clause that needs it is reported as skipped with the reason.

Conventions shared by every method:

* A *path* is a tuple of attribute names, ``("layers", "bn", "mean")``. Implementations that key their
  state differently (``"a/b"`` strings, tuple keys with integers) convert in :meth:`Adapter.state_items`.
* *state* and *graphdef* are opaque: whatever the implementation's own partition returns.
* A *filter* is a collection name (``"params"``) or a predicate ``f(path, variable) -> bool``.

Optional methods. An adapter may also define methods outside :class:`Adapter` (not required by
:func:`~nnx_conformance.spec.checked.validate`); the suite uses one only where the adapter has it *and*
claims the matching capability (:func:`can_delete_attrs`):

* ``del_attr(module, name) -> None`` -- remove attribute ``name`` from ``module`` (``delattr``), gated by
  :attr:`Capabilities.delete_attrs`. The ``sequence.graph`` clause deletes attributes with it.
* ``render(scenario) -> str | None`` -- a failing property's reproduction written in the library's own
  code (:class:`Renders`); no capability gates it, and without it the reproduction drives the adapter.
* ``make_rng_stream(ctx, name)`` and ``from_stream(ctx, name)`` -- named RNG streams
  (:class:`RngStreams`), gated by :attr:`Capabilities.rng_streams`.
* ``split(ctx, n)`` -- ``n`` contexts batched for ``vmap`` (:class:`RngSplit`), gated by
  :attr:`Capabilities.rng_split`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

Path = tuple[str, ...]
Sharding = tuple[str | None, ...]
Filter = str | Callable[[Path, Any], bool]

__all__ = [
    "Adapter",
    "Capabilities",
    "Filter",
    "LayersAdapter",
    "Path",
    "Renders",
    "RngSplit",
    "RngStreams",
    "ScanMLPLayers",
    "Sharding",
    "can_delete_attrs",
]


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What an implementation claims to support.

    A claim is a promise the suite holds the implementation to: declaring ``cycles=True`` means every
    cycle clause is run and must pass. Declaring ``False`` removes the feature from generated graphs and
    turns the clauses that cannot be checked without it into skips that name the missing capability.
    """

    cycles: bool = True
    """Reference cycles between modules (``root.a.up = root``, ``root.me = root``)."""
    shared_modules: bool = True
    """One module object reachable by several attribute paths."""
    shared_variables: bool = True
    """One Variable object reachable by several attribute paths."""
    separator_in_names: bool = True
    """Attribute names holding the display separator ``/`` (and other punctuation) are legal."""
    hashable_def: bool = True
    """The graph definition is hashable and usable as a ``jax.jit`` static argument."""
    max_depth: int = 10_000
    """Deepest chain of nested modules that partition/merge must handle (``graph.deep``)."""
    rng: bool = True
    """The implementation has an RNG context with ``make_rng`` and ``fork``."""
    layers: bool = True
    """The implementation has Linear, BatchNorm, Dropout and a scan-over-layers MLP (``layers.*``)."""
    sharding: bool = True
    """Variables carry a sharding annotation (a tuple of mesh-axis names or ``None`` per array axis)."""
    reserved_names: frozenset[str] = frozenset()
    """Attribute names the implementation's module API owns; strategies never assign them."""
    delete_attrs: bool = True
    """Attributes can be deleted from a module, through the adapter's optional ``del_attr(module, name)``
    (see the module docstring). An adapter without that method is treated as not claiming it."""
    scan_mlp: bool = False
    """``layers`` has the optional ``scan_mlp(hidden, n_layers, ctx)`` (:class:`ScanMLPLayers`), the
    implementation's own scan-over-layers MLP (``layers.scan-mlp``). Off by default, unlike the other
    claims, so that an adapter written before the method existed stays valid (the clause is reported as
    skipped); claiming it without the method, or without ``layers``, is a protocol error."""
    rng_streams: bool = False
    """Contexts have named streams: the adapter has the optional ``make_rng_stream(ctx, name)`` and
    ``from_stream(ctx, name)`` (:class:`RngStreams`; ``rng.streams``, ``rng.from-stream``). Off by default,
    like ``scan_mlp``, so an adapter written before the methods existed stays valid (the clauses skip)."""
    rng_split: bool = False
    """A context splits into ``n`` contexts batched for ``vmap``: the adapter has the optional
    ``split(ctx, n)`` (:class:`RngSplit`; ``rng.split``). Off by default, like ``scan_mlp``."""

    def missing(self, needs: Iterable[str]) -> list[str]:
        """The capabilities among ``needs`` that this implementation does not claim."""
        return [name for name in needs if not getattr(self, name)]


@runtime_checkable
class LayersAdapter(Protocol):
    """Layer constructors and a uniform call, for the ``layers.*`` clauses.

    ``ctx`` is whatever :meth:`Adapter.new_context` returns. Every layer works on float32 inputs whose last
    axis is the feature axis.

    One method is optional: ``scan_mlp(hidden, n_layers, ctx)``, the implementation's own ScanMLP
    (:class:`ScanMLPLayers`), which the suite uses only where :attr:`Capabilities.scan_mlp` claims it (off
    by default; claiming it without the method is a protocol error found by
    :func:`~nnx_conformance.spec.checked.validate`).
    """

    def linear(self, din: int, dout: int, ctx: Any, sharding: Sharding | None = None) -> Any:
        """A dense layer ``x @ w + b`` with ``w: (din, dout)`` and ``b: (dout,)``, both ``"params"``."""
        ...

    def batch_norm(self, din: int, ctx: Any, momentum: float = 0.95) -> Any:
        """BatchNorm with ``params`` scale/bias and ``batch_stats`` mean/var, all of shape ``(din,)``.

        ``momentum`` weighs the *old* running statistics: a training call sets
        ``new = momentum * old + (1 - momentum) * batch`` (the seed's ``mu`` and flax's ``momentum``;
        PyTorch's ``momentum`` is the opposite weight). The default, 0.95, is the seed's; the suite passes
        ``momentum=`` by keyword, and only where it checks that formula (``layers.semantics``).
        """
        ...

    def dropout(self, rate: float, ctx: Any) -> Any:
        """Dropout with drop probability ``rate``: in training, each entry is zeroed with probability
        ``rate`` and otherwise scaled by ``1 / (1 - rate)``; the identity when not training."""
        ...

    def block(self, din: int, dout: int, ctx: Any) -> Any:
        """Linear -> BatchNorm -> gelu -> Dropout(0.1), as in the seed."""
        ...

    def call(self, module: Any, x: Any, *, train: bool, ctx: Any) -> Any:
        """Call any of the layers above on ``x``; layers that take no ``train``/``ctx`` ignore them."""
        ...


@runtime_checkable
class ScanMLPLayers(LayersAdapter, Protocol):
    """A :class:`LayersAdapter` with the optional ``scan_mlp``, claimed by
    :attr:`Capabilities.scan_mlp` (``layers.scan-mlp``)."""

    def scan_mlp(self, hidden: int, n_layers: int, ctx: Any) -> Any:
        """The implementation's own ScanMLP, as the seed writes it: ``n_layers - 1`` Blocks of width
        ``hidden`` (as :meth:`block` builds them) initialised under ``vmap`` and held *stacked* as the
        attribute ``layers`` (every Variable with a leading axis of size ``n_layers - 1``), then a final
        Linear ``hidden -> hidden`` as the attribute ``linear``. :meth:`call` runs it: a ``scan`` of the
        Blocks over the stack, one random key per Block, then the Linear."""
        ...


@runtime_checkable
class Adapter(Protocol):
    """How the suite drives one NNX implementation. See the module docstring for the conventions."""

    name: str
    """Short name used in test ids and reports (``core``, ``seed``, ``flax``)."""
    capabilities: Capabilities
    layers: LayersAdapter | None
    """Layer constructors, or ``None`` when ``capabilities.layers`` is false."""

    # -- building and reading graphs -------------------------------------------------------------------
    def new_module(self, type_name: str) -> Any:
        """A fresh, empty module whose type is identified by ``type_name`` (same name, same type)."""
        ...

    def set_attr(self, module: Any, name: str, value: Any) -> None:
        """Assign a module, Variable or hashable static value to an attribute."""
        ...

    def attrs(self, module: Any) -> Iterable[tuple[str, Any]]:
        """Every graph attribute of ``module`` (submodules, Variables, statics), in any order."""
        ...

    def is_module(self, obj: Any) -> bool: ...

    def type_name(self, module: Any) -> str:
        """The ``type_name`` the module was created with."""
        ...

    def new_variable(self, collection: str, value: Any, sharding: Sharding | None = None) -> Any: ...

    def is_variable(self, obj: Any) -> bool: ...

    def variable_collection(self, var: Any) -> str: ...

    def variable_value(self, var: Any) -> Any: ...

    def variable_sharding(self, var: Any) -> Sharding | None: ...

    # -- the functional API ----------------------------------------------------------------------------
    def partition(self, module: Any) -> tuple[Any, Any]:
        """``(state, graphdef)`` of the module."""
        ...

    def merge(self, graphdef: Any, state: Any) -> Any:
        """A new module graph from a definition and a state."""
        ...

    def update(self, module: Any, state: Any) -> None:
        """Set, in place, the values of the module's Variables named by ``state``."""
        ...

    def state_items(self, state: Any) -> list[tuple[Path, Any]]:
        """``(path, variable)`` pairs in the implementation's own iteration order."""
        ...

    def make_state(self, items: Sequence[tuple[Path, Any]]) -> Any:
        """A state holding exactly ``items`` (used to build mismatching states and to re-order)."""
        ...

    def filter(self, state: Any, *filters: Filter) -> Any:
        """The sub-state whose entries match *any* of ``filters``."""
        ...

    def union(self, *states: Any) -> Any:
        """One state holding every entry of ``states``."""
        ...

    # -- randomness ------------------------------------------------------------------------------------
    def new_context(self, seed: Any) -> Any:
        """A root RNG context seeded with ``seed``: an integer seed, or a key.

        ``seed`` is one of

        * an integer seed: a Python ``int`` or an integer *scalar* array;
        * a typed key (``jax.random.key(...)``, dtype ``key<...>``, shape ``()``), such as one
          :meth:`make_rng` drew or one row of ``jax.random.split`` of it, as the seed's ScanMLP writes
          ``Context(key)``;
        * raw key data: a ``uint32`` array whose *last axis* holds the key's words (``jax.random.PRNGKey``,
          :meth:`key_data` of a key; shape ``(2,)`` for the default threefry keys), which flax spells
          ``nnx.Rngs(jax.random.wrap_key_data(data))``.

        Any of them may be a tracer: the ``rng.transforms`` and ``layers.*`` properties make contexts
        *inside* ``vmap``/``jit``/``scan``. Equal seeds must give equal contexts either way.

        A context made from a key is a new root, and must be a function of the key's full data alone: a
        typed key and its raw data give contexts that draw the same key data, and keys that differ in any
        bit give contexts that draw different keys (``rng.reproducible``). No key such a context, or a
        fork of it, draws may equal the key it was made from or any other key drawn in the program that
        drew that key (``rng.unique``, ``rng.fork-independence``): a key is consumed by seeding a context
        with it, as by any other use.
        """
        ...

    def make_rng(self, ctx: Any) -> Any:
        """Draw one key from ``ctx`` (advancing it)."""
        ...

    def fork(self, ctx: Any) -> Any:
        """A child context whose stream is independent of its parent's (advancing the parent)."""
        ...

    def key_data(self, key: Any) -> Any:
        """The full raw data of a key as a uint32 array (typed keys are unwrapped)."""
        ...

    def jit(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        """The implementation's jit, able to carry its contexts and modules (``jax.jit`` for pytrees)."""
        ...

    def vmap(self, fn: Callable[..., Any], **kwargs: Any) -> Callable[..., Any]:
        """The implementation's vmap, able to carry its contexts and modules."""
        ...


@runtime_checkable
class RngStreams(Protocol):
    """Optional: named RNG streams, claimed by :attr:`Capabilities.rng_streams` (``rng.streams``,
    ``rng.from-stream``). ``name`` is a ``str``; ``"default"`` names the stream :meth:`Adapter.make_rng`
    draws from. A context has a stream for every name (an implementation may create one on first use, or,
    as flax does for a name it was not given, draw such names from ``"default"``)."""

    def make_rng_stream(self, ctx: Any, name: str) -> Any:
        """Draw one key from ``ctx``'s stream ``name`` (advancing it)."""
        ...

    def from_stream(self, ctx: Any, name: str) -> Any:
        """A new context whose default stream is rebuilt from ``ctx``'s stream ``name``, as flax writes
        ``nnx.Rngs(rngs[name])``. It must never draw a key that stream drew before the rebuild, nor one it
        draws after (``rng.from-stream``); whether ``ctx`` advances is the implementation's choice."""
        ...


@runtime_checkable
class RngSplit(Protocol):
    """Optional: splitting a context, claimed by :attr:`Capabilities.rng_split` (``rng.split``)."""

    def split(self, ctx: Any, n: int) -> Any:
        """``n`` child contexts of ``ctx`` as *one batched context* (every array of its state with a leading
        axis of size ``n``), to be mapped over with :meth:`Adapter.vmap` (``in_axes=0``), as flax's
        ``Rngs.split(n)`` returns and as the seed's ScanMLP maps ``Context(key)`` over split keys. A batch,
        not a list, because that is what lifted transforms consume. The children draw keys distinct from
        each other's and from every key ``ctx`` drew before the split or draws after it."""
        ...


@runtime_checkable
class Renders(Protocol):
    """Optional: an adapter that writes failure reproductions in its library's own code.

    When a property fails, the suite records what it did as a ``nnx_conformance.spec.repro.Scenario`` (a
    graph or state built, the operations performed on it, the failing check) and asks the adapter, if it has
    ``render``, for the script: ``render(scenario)`` returns Python source that rebuilds the counterexample
    with the library's own API and ends in ``assert <the failing condition>, <the message>``, or ``None``
    (or raises ``nnx_conformance.spec.repro.Unsupported``) to let the suite write the adapter-terms script.
    Subclass ``nnx_conformance.spec.repro.LibraryRenderer`` to override only what the library spells
    differently (``spec/adapters/_render_flax.py`` is a complete example). Not part of :class:`Adapter`: it
    is never required.
    """

    def render(self, scenario: Any) -> str | None: ...


def can_delete_attrs(adapter: Any) -> bool:
    """Whether the suite may delete attributes through ``adapter``: it claims
    :attr:`Capabilities.delete_attrs` and has the optional ``del_attr(module, name)`` method."""
    return bool(adapter.capabilities.delete_attrs) and callable(getattr(adapter, "del_attr", None))
