"""Module graphs and their functional API: partition, merge, update.

A model is an ordinary Python object graph: ``Module`` instances whose attributes are other Modules,
:class:`Variable` cells, or *static* values (hashable configuration such as sizes and rates). The graph may
share objects (one Module or Variable reachable by several paths) and may contain cycles. JAX transforms
need pytrees, so the graph is split in two:

* a :class:`State` of the Variables (the part that changes, and crosses transforms as a pytree), and
* a :class:`ModuleDef`: everything else, hashable, so it can be a ``jax.jit`` static argument.

**Canonical paths.** A pre-order DFS from the root visits attributes in sorted name order and never
re-enters an object it has already visited (objects are identified by ``id``). The path by which it
*first* reaches a Module or Variable is that object's canonical path; every other path to it is an alias
and is recorded in the ModuleDef as a reference. Because that DFS visits paths in lexicographic order, the
State comes out already sorted, and canonical order is sorted order.

**Representation.** The DFS gives every object a number, and a ModuleDef is a handful of flat tuples
indexed by those numbers (per-node type, sorted attribute names, and one integer reference per
attribute), never a nested structure. So hashing, comparing and merging a def are iterative and linear,
a 100,000-deep chain of modules is as easy as a wide one, and merge reduces to "allocate the objects, then
fill each ``__dict__`` from a lookup table". References are encoded so that no renumbering pass is ever
needed:

* ``r >= 0`` is a *slot* in the def's template: a static value, or (for the slots listed in
  ``node_slots``) a placeholder for a Module;
* ``r < 0`` is a Variable, ``~r`` being its index in the state.

At merge time the table is ``template with modules filled in`` followed by the new Variables in reverse,
so ``table[r]`` resolves both kinds with Python's own negative indexing.

**Paths are materialised lazily.** A module's path tuple is built only when the module holds a Variable
(the state needs it), as one C-level copy of the DFS stack's list of edge names. Building every module's
path eagerly would cost O(depth) per module even for those holding nothing, O(depth^2) on a chain; this way
the work is bounded by the size of the state's own keys.
"""

from __future__ import annotations

import gc
import reprlib
from collections.abc import Callable, Mapping
from operator import attrgetter
from typing import Any, Generic, TypeVar

import jax
import jax.numpy as jnp

from .errors import NNXError, StateMismatchError, UnhashableStaticError, format_path
from .state import State
from .variable import Path, Variable, _clone

__all__ = ["Module", "ModuleDef"]

M = TypeVar("M", bound="Module")

_new = object.__new__
_get_collection = attrgetter("collection")


class Module:
    """Base class of every node in a module graph.

    Subclasses set attributes in ``__init__`` as usual: Modules and Variables become graph edges, anything
    else is a static value that must be hashable. The methods below are the whole API; their names are
    reserved (never use them as attribute names).
    """

    def partition(self: M) -> tuple[State, ModuleDef[M]]:
        """Split the graph into ``(state, moduledef)``.

        The state holds *new* Variable objects (snapshots holding the same value objects), one per distinct
        Variable, keyed by canonical path; the def holds everything else. ``moduledef.merge(state)``
        rebuilds an equivalent, independent graph. Raises :class:`UnhashableStaticError` if a static
        attribute is not hashable.
        """
        return _partition(self)

    def update_state(self, state: Mapping[Path, Variable[Any]]) -> None:
        """Write ``state``'s values (and shardings) into this graph's existing Variables, in place.

        Each entry's path must be the canonical path of a Variable of the same collection; Variables are
        located by path and mutated, not replaced, so sharing is kept. ``state`` may name a subset of the
        Variables. A value must keep the shape and dtype of the value it replaces wherever both are known
        (arrays, JAX tracers and Python numbers; a Python number is 0-d and weakly typed, so ``1.0`` may be
        written over a ``float32`` array but not over an ``int32`` one; dtypes are compared as JAX
        canonicalises them). Everything is validated first: on :class:`StateMismatchError`, naming the
        first offending path, nothing has changed.
        """
        _update_state(self, state)


class _Kind:
    """One of three markers for what an attribute value is (identity-compared in the hot loop)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_VAR = _Kind("variable")
_NODE = _Kind("module")
_NODE_BY_ID = _Kind("module with __eq__")
_STATIC = _Kind("static")

_VARIABLE_BY_IDENTITY: type | None = (
    Variable if Variable.__eq__ is object.__eq__ and Variable.__hash__ is object.__hash__ else None
)
"""``Variable`` if its instances compare and hash by identity (they do: see its docstring), else ``None``."""

# type -> kind. One dict lookup per attribute instead of an isinstance chain; filled on first sight of a
# type. (Types are few; this holds them strongly, like any class-level registry.)
_KINDS: dict[type, _Kind] = {}


def _classify(tp: type) -> _Kind:
    if issubclass(tp, Variable):
        kind = _VAR
    elif issubclass(tp, Module):
        # A module type that compares by identity is its own key in the walk's ``seen`` table; one that
        # defines __eq__/__hash__ is keyed by id() so that equal-but-distinct modules stay distinct.
        kind = _NODE if tp.__eq__ is object.__eq__ and tp.__hash__ is object.__hash__ else _NODE_BY_ID
    else:
        kind = _STATIC
    _KINDS[tp] = kind
    return kind


def _walk(root: Module, snapshot: bool) -> tuple[list[tuple[Any, ...]], list[Any], dict[Path, Any]]:
    """The canonical pre-order DFS, iterative, shared by partition and update_state.

    Each stack frame resumes a parent's attribute iterator after a child's subtree is done, so objects are
    reached in exactly the canonical order and a child's number is known when its parent records the edge.
    This loop is the cost of partition, so it is written for CPython: locals only, one identity test for
    the common exact-``Variable`` case, ``setdefault`` to test-and-claim an id in one dict operation, and
    per-node records built as plain tuples.

    A module's path is built only when it holds a Variable, as ``tuple(edges)`` (see the module docstring).

    Returns ``(records, template, variables)``: one ``(type, slot, sorted names, refs)`` record per module
    in pre-order, the template (static values, ``None`` at module slots), and ``{canonical path: Variable}``
    in canonical order, holding snapshots if ``snapshot`` else the graph's own Variables.
    """
    kind_of = _KINDS.get
    var_kind, static_kind, node_kind = _VAR, _STATIC, _NODE
    var_cls = Variable
    var_by_identity = _VARIABLE_BY_IDENTITY
    new = _new
    root_kind = _KINDS.get(type(root)) or _classify(type(root))
    seen: dict[Any, int] = {(root if root_kind is _NODE else id(root)): 0}
    claim = seen.setdefault
    d = vars(root)
    names = tuple(sorted(d))
    refs: list[int] = []
    records: list[tuple[Any, ...]] = [(type(root), 0, names, refs)]
    template: list[Any] = [None]
    add_static = template.append
    variables: dict[Path, Any] = {}
    next_var = -1  # Variables are numbered -1, -2, ...: ``~ref`` is the index in the state
    npath: Path | None = ()  # the current module's path, built on first need
    it = iter(names)
    stack: list[tuple[Any, ...]] = []  # parents' (dict, iterator, refs, path or None)
    push, pop = stack.append, stack.pop
    edges: list[str] = []  # names of the edges from the root to the current module
    push_edge, pop_edge = edges.append, edges.pop
    while True:
        add_ref = refs.append
        for name in it:
            value = d[name]
            tp = type(value)
            kind = var_kind if tp is var_cls else (kind_of(tp) or _classify(tp))
            if kind is var_kind:
                # An object that compares by identity is its own key in ``seen``: no id() call and no
                # int object per entry. (Variable subclasses may define __eq__: keyed by id().)
                ref = claim(value if tp is var_by_identity else id(value), next_var)
                if ref is next_var:  # first visit: this is the Variable's canonical path
                    next_var -= 1
                    if npath is None:
                        npath = tuple(edges)
                    if not snapshot:
                        var = value
                    elif tp is var_cls:
                        var = new(var_cls)
                        var.collection = value.collection
                        var.value = value.value
                        var.sharding = value.sharding
                    else:
                        var = _clone(value)
                    variables[npath + (name,)] = var  # noqa: RUF005 (concatenation is faster here)
                add_ref(ref)
            elif kind is static_kind:
                add_ref(len(template))
                add_static(value)
            else:
                slot = len(template)
                ref = claim(value if kind is node_kind else id(value), slot)
                add_ref(ref)
                if ref is not slot:  # shared module or back edge: a reference, not a new node
                    continue
                add_static(None)
                push((d, it, refs, npath))
                push_edge(name)
                npath = None
                d = vars(value)
                names = tuple(sorted(d))
                refs = []
                records.append((tp, slot, names, refs))
                it = iter(names)
                break
        else:
            if not stack:
                break
            d, it, refs, npath = pop()
            pop_edge()
    return records, template, variables


class _GCPaused:
    """Pause the cyclic garbage collector while a graph is walked or built.

    partition and merge allocate a few objects per attribute, all kept alive, so every collection the
    allocations trigger finds nothing to free but still traverses the young objects (and the full heap
    now and then): measured, it made partition of a 10,000-deep chain ~4x slower. The collector is
    re-enabled on exit only if it was enabled on entry, so nesting and callers that disabled it
    themselves are respected. (``gc`` state is process-wide: another thread allocating meanwhile sees its
    collections postponed, never skipped.)
    """

    __slots__ = ("_was_enabled",)

    def __enter__(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was_enabled:
            gc.enable()


def _partition(root: M) -> tuple[State, ModuleDef[M]]:
    with _GCPaused():
        records, template, variables = _walk(root, snapshot=True)
        types, node_slots, names, refs = zip(*records)
        try:
            moduledef: ModuleDef[M] = ModuleDef._create(
                types,
                names,
                tuple(map(tuple, refs)),
                node_slots,
                tuple(template),
                tuple(map(_get_collection, variables.values())),
                tuple(variables),
            )
        except _StaticError as err:
            raise _static_error(err, names, refs, node_slots, template) from None
    return State._from_sorted(variables), moduledef


def _static_error(
    err: _StaticError,
    names: tuple[tuple[str, ...], ...],
    refs: tuple[list[int], ...],
    node_slots: tuple[int, ...],
    template: list[Any],
) -> NNXError:
    """The user-facing error for a bad static value, naming the attribute's canonical path."""
    node, pos = _locate_slot(refs, err.slot)
    path = (*_node_path(names, refs, node_slots, node), names[node][pos])
    value = template[err.slot]
    if err.nested is not None:
        return NNXError(
            f"attribute {format_path(path)} is a static {type(value).__name__} containing a "
            f"{type(err.nested).__name__}; Modules and Variables inside containers are not part of the "
            "graph (they would be silently frozen into the ModuleDef): assign each one to its own "
            "attribute",
            path,
        )
    return UnhashableStaticError(
        f"attribute {format_path(path)} holds an unhashable {type(value).__name__} "
        f"({reprlib.repr(value)}); attributes that are neither Modules nor Variables are static and go "
        "into the ModuleDef, which must be hashable: use a tuple instead of a list, or wrap arrays and "
        "other state in a Variable",
        path,
    )


def _node_path(
    names: tuple[tuple[str, ...], ...], refs: Any, node_slots: tuple[int, ...], target: int
) -> Path:
    """Canonical path of module ``target``, recovered from a def's tables (error messages only).

    Replays the DFS over the records: since modules are numbered in pre-order, an edge is a tree edge
    exactly when it leads to the next unvisited number.
    """
    node_of_slot = {slot: i for i, slot in enumerate(node_slots)}
    path: list[str] = []
    visited = 1
    stack = [(0, iter(range(len(names[0]))))]
    while stack and target != 0:
        node, positions = stack[-1]
        for pos in positions:
            child = node_of_slot.get(refs[node][pos])
            if child == visited:
                visited += 1
                path.append(names[node][pos])
                if child == target:
                    return tuple(path)
                stack.append((child, iter(range(len(names[child])))))
                break
        else:
            stack.pop()
            if path:
                path.pop()
    return tuple(path)


def _locate_slot(refs: tuple[list[int], ...], slot: int) -> tuple[int, int]:
    """(node, attribute position) of the edge that holds template ``slot`` (error path only)."""
    for node, node_refs in enumerate(refs):
        if slot in node_refs:
            return node, node_refs.index(slot)
    raise AssertionError(f"slot {slot} is referenced by no node")  # pragma: no cover


class _StaticError(Exception):
    """Internal: a static value at template ``slot`` is unhashable, or contains a Module/Variable."""

    def __init__(self, slot: int, nested: Any = None) -> None:
        super().__init__(slot)
        self.slot = slot
        self.nested = nested


def _typed(value: Any) -> Any:
    """A comparison key for a static container that keeps element types: ``(1,)``, ``(1.0,)`` differ."""
    tp = type(value)
    if isinstance(value, tuple):
        return (tp, tuple(map(_typed, value)))
    if isinstance(value, frozenset):
        return (tp, frozenset(map(_typed, value)))
    if isinstance(value, (Module, Variable)):
        raise _NestedGraphObject(value)
    return (tp, value)


class _NestedGraphObject(Exception):
    def __init__(self, obj: Any) -> None:
        super().__init__()
        self.obj = obj


def _static_key(template: tuple[Any, ...]) -> tuple[Any, ...]:
    """What makes two templates equal: the values, *and* their types (``1``, ``1.0``, ``True`` differ).

    Plain values are compared as ``(types, values)``, two C-level tuples; tuple/frozenset values also get a
    recursive typed key, so ``(1,)`` and ``(1.0,)`` differ too.
    """
    types = tuple(map(type, template))
    deep: tuple[Any, ...] = ()
    if any(issubclass(tp, (tuple, frozenset)) for tp in set(types)):
        items = []
        for slot, value in enumerate(template):
            if isinstance(value, (tuple, frozenset)):
                try:
                    items.append((slot, _typed(value)))
                except _NestedGraphObject as err:
                    raise _StaticError(slot, err.obj) from None
        deep = tuple(items)
    return (types, template, deep)


class ModuleDef(Generic[M]):
    """The static half of a partitioned module graph: immutable, hashable, comparable.

    Two defs are equal iff their graphs have the same structure: node types, attribute names, static
    values *with their types*, the sharing/cycle pattern, and each Variable's collection (never the
    Variables' values or shardings, which live in the State). The hash is computed once, at partition time;
    equal defs hit the same ``jax.jit(..., static_argnums=...)`` cache entry.
    """

    __slots__ = (
        "__weakref__",
        "_collections",
        "_hash",
        "_key",
        "_names",
        "_node_slots",
        "_refs",
        "_template",
        "_types",
        "_var_paths",
    )

    _types: tuple[type, ...]
    _names: tuple[tuple[str, ...], ...]
    _refs: tuple[tuple[int, ...], ...]
    _node_slots: tuple[int, ...]
    _template: tuple[Any, ...]
    _collections: tuple[str, ...]
    _var_paths: tuple[Path, ...]
    _key: tuple[Any, ...]
    _hash: int

    def __init__(self) -> None:
        raise TypeError("ModuleDef is created by Module.partition(), not directly")

    @classmethod
    def _create(
        cls,
        types: tuple[type, ...],
        names: tuple[tuple[str, ...], ...],
        refs: tuple[tuple[int, ...], ...],
        node_slots: tuple[int, ...],
        template: tuple[Any, ...],
        collections: tuple[str, ...],
        var_paths: tuple[Path, ...],
    ) -> ModuleDef[Any]:
        # var_paths is derived from names/refs, so it is left out of the key.
        key = (types, names, refs, node_slots, collections, _static_key(template))
        try:
            key_hash = hash(key)
        except TypeError:
            for slot, value in enumerate(template):
                try:
                    hash(value)
                except TypeError:
                    raise _StaticError(slot) from None
            raise  # pragma: no cover - the key is made only of the template and hashable tuples
        self = _new(cls)
        setattr_ = object.__setattr__
        setattr_(self, "_types", types)
        setattr_(self, "_names", names)
        setattr_(self, "_refs", refs)
        setattr_(self, "_node_slots", node_slots)
        setattr_(self, "_template", template)
        setattr_(self, "_collections", collections)
        setattr_(self, "_var_paths", var_paths)
        setattr_(self, "_key", key)
        setattr_(self, "_hash", key_hash)
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        # Immutable slots defeat the default copy/pickle protocol; rebuild through the one constructor.
        fields = (self._types, self._names, self._refs, self._node_slots, self._template)
        return (ModuleDef._create, (*fields, self._collections, self._var_paths))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("ModuleDef is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("ModuleDef is immutable")

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, ModuleDef):
            return NotImplemented
        return self._hash == other._hash and self._key == other._key

    # -- rebuilding --------------------------------------------------------------------------------------
    def merge(self, state: Mapping[Path, Variable[Any]]) -> M:
        """A new module graph with this structure and ``state``'s values.

        ``state`` must hold exactly this def's canonical paths, each a Variable of the recorded collection;
        otherwise :class:`StateMismatchError` names the first offending path and nothing is built. Sharing
        and cycles are restored by identity; every Module and Variable is new (the values are the state's
        value objects), so the result never aliases ``state``'s Variables.

        Values are not checked: a def records no shapes or dtypes (values travel in the state, so one def
        serves a state and its ``jax.vmap``-stacked or ``jax.eval_shape`` versions alike), so merge cannot
        know what a value should be. ``update_state``, which has the module's current values, does check.
        A plain mapping is accepted and put in canonical order first (its keys are checked as ``State``'s).
        """
        if not isinstance(state, State):
            if not isinstance(state, Mapping):
                raise TypeError(f"ModuleDef.merge takes a State, got {type(state).__name__}")
            state = State(state)
        data = state._data
        if tuple(data) != self._var_paths:
            self._raise_path_mismatch(data)
        with _GCPaused():
            return self._build(list(data.values()))

    def _build(self, values: list[Any]) -> M:
        """Allocate the modules, copy the Variables, fill each ``__dict__`` from the lookup table.

        The state's entries are validated in the same single pass that copies them (each Variable is read
        once, which matters once the graph no longer fits in the CPU caches); anything but an exact
        ``Variable`` of the recorded collection takes the slow path, :meth:`_check_leaves`, which raises
        for the first offending entry in canonical order before anything is returned.
        """
        objs: list[Any] = list(map(_new, self._types))
        table = list(self._template)
        for slot, obj in zip(self._node_slots, objs):
            table[slot] = obj
        # The new Variables follow, in reverse (see the module docstring).
        var_cls, new = Variable, _new
        add = table.append
        checked = False
        for value, collection in zip(reversed(values), reversed(self._collections)):
            if type(value) is var_cls and value.collection == collection:
                var = new(var_cls)
                var.collection = collection
                var.value = value.value
                var.sharding = value.sharding
                add(var)
            else:
                if not checked:
                    self._check_leaves(values)  # raises, or the entry is a valid Variable subclass
                    checked = True
                add(_clone(value))
        get = table.__getitem__
        for obj, names, refs in zip(objs, self._names, self._refs):
            obj.__dict__.update(zip(names, map(get, refs)))
        return objs[0]

    def apply(
        self, state: Mapping[Path, Variable[Any]]
    ) -> Callable[..., tuple[Any, tuple[State, ModuleDef[M]]]]:
        """``apply(state)(*args, **kwargs) -> (out, (new_state, new_def))``: merge, call, partition.

        The functional form of calling a module, for use inside ``jax.jit``/``jax.lax.scan`` bodies:
        whatever the call mutates (batch statistics, say) comes back in ``new_state``.
        """

        def _apply(*args: Any, **kwargs: Any) -> tuple[Any, tuple[State, ModuleDef[M]]]:
            module = self.merge(state)
            out = module(*args, **kwargs)  # type: ignore[operator]
            return out, module.partition()

        return _apply

    def _raise_path_mismatch(self, data: dict[Path, Any]) -> None:
        expected = set(self._var_paths)
        missing = [p for p in self._var_paths if p not in data]
        extra = [p for p in data if p not in expected]
        problems = []
        if missing:
            problems.append("missing " + ", ".join(map(format_path, missing[:3])))
        if extra:
            problems.append("unexpected " + ", ".join(map(format_path, extra[:3])))
        if not problems:  # the right paths in another order (only a State built around its checks)
            first = next(p for p, q in zip(data, self._var_paths) if p != q)
            problems.append(f"paths out of canonical order from {format_path(first)}")
        else:
            first = min(missing[:1] + extra[:1])
        raise StateMismatchError(
            f"state does not match the ModuleDef of {self._types[0].__name__}: " + "; ".join(problems),
            first,
        )

    def _check_leaves(self, values: list[Any]) -> None:
        """The slow path of merge's leaf check: find the offending leaf, or learn a Variable subclass."""
        for path, value, collection in zip(self._var_paths, values, self._collections):
            if not isinstance(value, Variable):
                raise StateMismatchError(
                    f"state entry {format_path(path)} is a {type(value).__name__}, not a Variable", path
                )
            if value.collection != collection:
                raise StateMismatchError(
                    f"state entry {format_path(path)} has collection {value.collection!r}, but the "
                    f"ModuleDef expects {collection!r}",
                    path,
                )
        _VARIABLE_TYPES.update(map(type, values))

    # -- display -------------------------------------------------------------------------------------------
    _REPR_NODES = 12

    def __repr__(self) -> str:
        """One line per node (the first few), references as ``#n`` (module) and ``<collection>`` (Variable)."""
        shown = min(len(self._types), self._REPR_NODES)
        node_of_slot = {slot: i for i, slot in enumerate(self._node_slots)}
        short = reprlib.Repr()
        short.maxstring = short.maxother = 24
        lines = []
        for i in range(shown):
            attrs = []
            for name, ref in zip(self._names[i], self._refs[i]):
                if ref < 0:
                    attrs.append(f"{name}=${~ref}<{self._collections[~ref]}>")
                elif ref in node_of_slot:
                    attrs.append(f"{name}=#{node_of_slot[ref]}")
                else:
                    attrs.append(f"{name}={short.repr(self._template[ref])}")
            lines.append(f"  #{i} {self._types[i].__name__}({', '.join(attrs)})")
        if len(self._types) > shown:
            lines.append(f"  ... {len(self._types) - shown} more nodes")
        head = (
            f"ModuleDef[{self._types[0].__name__}]({len(self._types)} nodes, "
            f"{len(self._collections)} variables"
        )
        return head + "\n" + "\n".join(lines) + "\n)"


_VARIABLE_TYPES: set[type] = {Variable}
"""Classes the merge fast path accepts without a per-leaf isinstance (grown on first sight of a subclass)."""


def _update_state(root: Module, state: Mapping[Path, Variable[Any]]) -> None:
    if not isinstance(state, Mapping):
        raise TypeError(f"update_state takes a State, got {type(state).__name__}")
    with _GCPaused():
        index = _walk(root, snapshot=False)[2]
    if isinstance(state, State) and tuple(state._data) == tuple(index):
        # Fast path, the common case of writing back a full state: paths line up one to one, so the
        # checks are two C-level comparisons (anything odd falls through to the per-entry checks).
        targets = list(index.values())
        news = list(state._data.values())
        if set(map(type, news)) <= _VARIABLE_TYPES and tuple(map(_get_collection, news)) == tuple(
            map(_get_collection, targets)
        ):
            for path, target, new in zip(index, targets, news):
                _check_value(path, target.value, new.value)
            _assign(targets, news)
            return
    targets, news = [], []
    for path, new in state.items():
        if type(path) is not tuple:
            raise TypeError(f"state keys are tuples of attribute names such as ('a', 'b'), got {path!r}")
        target = index.get(path)
        if target is None:
            raise StateMismatchError(
                f"update_state: {format_path(path)} is not the canonical path of a Variable of this "
                f"{type(root).__name__}",
                path,
            )
        if not isinstance(new, Variable):
            raise StateMismatchError(
                f"update_state: state entry {format_path(path)} is a {type(new).__name__}, not a Variable",
                path,
            )
        if new.collection != target.collection:
            raise StateMismatchError(
                f"update_state: state entry {format_path(path)} has collection {new.collection!r}, but "
                f"the module's Variable there is {target.collection!r}",
                path,
            )
        _check_value(path, target.value, new.value)
        targets.append(target)
        news.append(new)
    _assign(targets, news)


def _check_value(path: Path, old: Any, new: Any) -> None:
    """Refuse writing ``new`` over ``old`` when their shapes or dtypes differ (see :func:`_value_problem`).

    Inlined first test: the same object, or arrays of equal shape and dtype (the common case, a few
    attribute reads); anything else gets the full rule.
    """
    if old is new:
        return
    try:
        if old.shape == new.shape and old.dtype == new.dtype:
            return
    except AttributeError:
        pass
    problem = _value_problem(old, new)
    if problem is not None:
        raise StateMismatchError(
            f"update_state: state entry {format_path(path)} holds {problem}; update writes values in "
            "place, so the shape and dtype must stay (convert with .astype(...) or reshape first; to change "
            "them, assign a new Variable to the attribute)",
            path,
        )


_KIND_RANK = {"bool": 0, "int": 1, "float": 2, "complex": 3}


def _signature(value: Any) -> tuple[tuple[int, ...], Any, str | None, bool, str] | None:
    """``(shape, canonical dtype, kind, weak, description)`` of an array or Python number, else ``None``.

    Arrays are anything with a tuple ``shape`` and a ``dtype`` (numpy and JAX arrays, numpy scalars, JAX
    tracers, ``jax.ShapeDtypeStruct``); JAX values carry ``weak_type``. Python ``int``/``float``/``complex``
    are 0-d and weakly typed (JAX gives them the dtype of what they meet); a Python ``bool`` is a strong
    0-d ``bool``, as in JAX. dtypes are canonicalised as JAX does (``float64`` is ``float32`` unless
    ``jax_enable_x64`` is set), so a numpy ``float64`` Variable accepts the ``float32`` a jitted step gives.
    """
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:
        weak = bool(getattr(value, "weak_type", False))
        description = f"a value of shape {shape} and {'weakly typed ' if weak else ''}dtype {{}}"
    elif isinstance(value, bool):
        shape, dtype, weak, description = (), bool, False, "a Python bool"
    elif isinstance(value, (int, float, complex)):
        shape, dtype, weak = (), jnp.result_type(type(value)), True
        description = f"a Python {type(value).__name__}"
    else:
        return None
    try:
        extended = jax.dtypes.issubdtype(dtype, jax.dtypes.extended)  # typed PRNG keys: kept as they are
        canonical = dtype if extended else jax.dtypes.canonicalize_dtype(dtype)
    except Exception:  # not a dtype JAX understands: no rule applies
        return None
    kind = next((k for k, base in _KIND_BASES if jax.dtypes.issubdtype(canonical, base)), None)
    return shape, canonical, kind, weak, description.format(canonical)


_KIND_BASES: tuple[tuple[str, Any], ...] = (
    ("bool", jnp.bool_),
    ("int", jnp.integer),
    ("float", jnp.floating),
    ("complex", jnp.complexfloating),
)


def _fits(weak_kind: str | None, other_kind: str | None) -> bool:
    """A weakly typed value of ``weak_kind`` takes the dtype of a value of ``other_kind`` without changing
    kind upward: a Python int fits an int, float or complex dtype; a Python float a float or complex one."""
    if weak_kind is None or other_kind is None:
        return False
    return _KIND_RANK[weak_kind] <= _KIND_RANK[other_kind] and other_kind != "bool"


def _value_problem(old: Any, new: Any) -> str | None:
    """Why ``new`` cannot be written over ``old`` in place, or ``None`` if it can (or nobody can tell).

    The rule, applied only where both values have a known shape and dtype (see :func:`_signature`;
    anything else is held as given, as always):

    * shapes must be equal (a Python number is 0-d);
    * two strongly typed values must have the same canonical dtype;
    * a weakly typed value (a Python number, or a JAX value with ``weak_type``) must fit the other's kind
      (``bool < int < float < complex``): a Python float written over a ``float32`` or ``bfloat16`` array is
      fine, over an ``int32`` one it is not; a ``float32`` array written over a Variable that held the
      placeholder ``0.0`` is fine, an ``int32`` one is not. When both are weak, the new one must fit the
      old one's kind.

    Traced values (inside ``jax.jit``/``vmap``/``scan``) have a known shape and dtype, and are checked the
    same way; under ``vmap`` a traced value has its per-example shape, which is what a Variable created
    inside the vmapped function holds.
    """
    old_sig, new_sig = _signature(old), _signature(new)
    if old_sig is None or new_sig is None:
        return None
    old_shape, old_dtype, old_kind, old_weak, old_text = old_sig
    new_shape, new_dtype, new_kind, new_weak, new_text = new_sig
    if old_shape != new_shape:
        ok = False
    elif new_weak:
        ok = new_dtype == old_dtype or _fits(new_kind, old_kind)
    elif old_weak:
        ok = new_dtype == old_dtype or _fits(old_kind, new_kind)
    else:
        ok = new_dtype == old_dtype
    if ok:
        return None
    return f"{new_text}, but the module's Variable there holds {old_text}"


def _assign(targets: list[Variable[Any]], news: list[Variable[Any]]) -> None:
    """The mutation step of update_state, run only after every entry was validated."""
    for target, new in zip(targets, news):
        target.value = new.value
        target.sharding = new.sharding
