"""Properties for the ``sharding.*`` clauses: annotations that survive, and that actually place state.

A Variable's sharding annotation (one mesh-axis name or ``None`` per array axis) is how an NNX model's
state is laid out across a device mesh with JAX's own SPMD machinery (``NamedSharding``). It is *metadata*:
nothing in a single-device computation reads it, so an implementation can lose it -- in a pytree
unflatten, a filter that rebuilds Variables, an update that swaps them -- and every other clause still
passes. The two properties below make that loss visible.

* ``sharding.metadata`` (:func:`test_sharding_survives_every_operation`): draws module graphs whose
  Variables carry annotations and reads each Variable's annotation back after partition, merge, filter,
  union, update, ``tree_map``, ``jit``, ``vmap`` and ``scan`` (inside the traced body too: there, aux data
  is all a transform sees). In the core the annotation is pytree aux data; flax keeps it as Variable
  metadata; both must come out of each operation unchanged.
* ``sharding.placement`` (:func:`test_placement_on_forced_cpu_devices`,
  :func:`test_placement_on_real_devices`): builds Linear layers (and a small hand-made graph) with
  annotations, places the state with ``jax.device_put`` and one ``NamedSharding`` per Variable, merges it,
  and checks the arrays sit where the annotations say and that a jitted apply equals the unsharded one.

Multi-device without hardware: XLA can split the host CPU into N devices
(``--xla_force_host_platform_device_count``), but only before JAX initialises its backend, so the forced
run happens in a child interpreter (:func:`~nnx_conformance.spec.isolation.run_isolated`) on a 2x4 mesh.
The same check also runs in-process on whatever devices are really present (a single CPU gives a 1x1
mesh, where every placement is trivially right but merging and the jitted apply still have to work). The
child runs a fixed handful of cases, not ``@given`` examples: each interpreter start costs seconds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Path, Sharding
from nnx_conformance.spec.clauses import clause
from nnx_conformance.spec.isolation import run_isolated
from nnx_conformance.spec.properties._helpers import E, budget, build, code, fail, fmt_path, let, show
from nnx_conformance.strategies import MESH_AXES as _STRATEGY_AXES

__all__ = [
    "FORCED_DEVICES",
    "MESH_AXES",
    "test_placement_on_forced_cpu_devices",
    "test_placement_on_real_devices",
    "test_sharding_survives_every_operation",
]

MESH_AXES: tuple[str, ...] = _STRATEGY_AXES
"""The mesh-axis names annotations use: the strategies' (``data``, ``model``), so drawn annotations fit the
meshes built here."""

FORCED_DEVICES = 8
FORCED_MESH = (2, 4)
"""``data`` x ``model`` for the forced-device run: two distinct axis sizes, so a transposed or dropped
annotation changes which device holds which shard."""

_PLACEMENT = "nnx_conformance.spec.properties.sharding:_placement_check"


# ---------------------------------------------------------------------------------------------------------
# sharding.metadata
# ---------------------------------------------------------------------------------------------------------


def _shardings(impl: Any, state: Any) -> dict[Path, Sharding | None]:
    """Path -> annotation of every entry of an implementation's state."""
    return {path: impl.variable_sharding(var) for path, var in impl.state_items(state)}


class _Expected:
    """What each Variable's annotation must be, looked up by any path that reaches it.

    Only annotations are judged here: a path the state holds that reaches no Variable of the blueprint, or
    an entry missing from a state, is another clause's failure (``graph.canonical-paths``,
    ``state.filter-partition``), and counting it twice would blur the report.
    """

    def __init__(self, by_path: dict[Path, Sharding | None], canonical: Sequence[Path]) -> None:
        self.by_path = by_path
        self.canonical = list(canonical)

    def mismatches(self, got: dict[Path, Sharding | None]) -> list[str]:
        lines = []
        for path, annotation in got.items():
            if path in self.by_path and _norm(annotation) != _norm(self.by_path[path]):
                lines.append(f"  {fmt_path(path)}: sharding {annotation!r}, expected {self.by_path[path]!r}")
        return lines

    def check(self, impl: Any, where: str, got: dict[Path, Sharding | None], source: Any) -> None:
        """``got`` (path -> annotation) read from ``source``: a state (``("state", s)``), a module
        (``("module", m)``) or a list of such dicts recorded inside a traced body (``("seen", list)``)."""
        lines = self.mismatches(got)
        if not lines:
            return
        path = next(p for p, a in got.items() if p in self.by_path and _norm(a) != _norm(self.by_path[p]))
        kind, obj = source
        if kind == "state":
            observed = E.sharding(E.entry(obj, path))
        elif kind == "module":
            observed = E.sharding(E.at(obj, path))
        else:
            observed = E.py("{0}[-1][{1}]", obj, E.lit(path))
        fail(
            impl,
            E.eq(observed, E.lit(self.by_path[path])),
            f"sharding annotation lost or changed {where}, first at {fmt_path(path)}:\n"
            + "\n".join(lines)
            + "\n(a Variable's sharding must come out of every operation exactly as it went in)",
        )


def _norm(annotation: Any) -> Any:
    """Compare annotations as tuples: an implementation may store a list; ``None`` stays ``None``."""
    return None if annotation is None else tuple(annotation)


def _expected_from(bp: Any) -> _Expected:
    """Annotation per path from the blueprint (the oracle's view): every alias path of a shared Variable
    maps to its one annotation, so an implementation that lists a Variable under each of its paths is
    judged on the annotation, not on the listing."""
    from nnx_conformance.strategies import VarRef, oracle

    orc = oracle(bp)
    by_path: dict[Path, Sharding | None] = {}
    for ref, paths in orc.aliases.items():
        if isinstance(ref, VarRef):
            for path in paths:
                by_path[path] = bp.variables[ref.index].sharding
    for path, index in orc.expected_items:
        by_path[path] = bp.variables[index].sharding
    return _Expected(by_path, [path for path, _ in orc.expected_items])


def _walk(impl: Any, root: Any, path: Path) -> Any:
    """The object at ``path`` below ``root``, following attributes through the adapter."""
    obj = root
    for name in path:
        obj = dict(impl.attrs(obj))[name]
    return obj


def _module_shardings(impl: Any, root: Any, paths: Iterable[Path]) -> dict[Path, Sharding | None]:
    """Annotation of the Variable at each path of a live module graph."""
    return {path: impl.variable_sharding(_walk(impl, root, path)) for path in paths}


def _traced(
    fn: Callable[[Any], Any], impl: Any, seen: list[dict[Path, Sharding | None]]
) -> Callable[..., Any]:
    """Wrap a transform body so it records the annotations it sees on its (traced) state argument."""

    def body(*args: Any) -> Any:
        seen.append(_shardings(impl, args[-1]))
        return fn(*args)

    return body


def _annotated(bp: Any) -> bool:
    """Keep graphs where some Variable carries an annotation: without one there is nothing to lose."""
    return any(var.sharding is not None for var in bp.variables)


@clause("sharding.metadata")
@budget(0.2)
@given(data=st.data())
def test_sharding_survives_every_operation(impl, data):
    """Each Variable's annotation, read back after every operation the clause lists, is the one it was
    built with. Inside ``jit``/``vmap``/``scan`` bodies the state is rebuilt from aux data alone, so an
    annotation kept anywhere but in the pytree's static part is lost there first."""
    from nnx_conformance.strategies import graphs

    # Identifier names only: a separator collision ('a/b' next to a.b) loses whole Variables, which
    # graph.path-names reports; here it would only hide whether the *annotations* survive.
    caps = dataclasses.replace(impl.capabilities, separator_in_names=False)
    bp = data.draw(graphs(caps).filter(_annotated), label="graph")
    show(impl, bp)
    expected = _expected_from(bp)
    root = build(bp, impl).root

    def of_state(where: str, state: Any) -> None:
        expected.check(impl, where, _shardings(impl, state), ("state", state))

    def of_module(where: str, module: Any) -> None:
        expected.check(impl, where, _module_shardings(impl, module, expected.canonical), ("module", module))

    state, graphdef = impl.partition(root)
    of_state("by partition", state)

    merged = impl.merge(graphdef, state)
    of_module("by merge (read from the merged module)", merged)

    items = impl.state_items(state)
    collections = sorted({impl.variable_collection(var) for _, var in items})
    parts = [impl.filter(state, c) for c in collections]
    for name, part in zip(collections, parts):
        of_state(f"by filter({name!r})", part)
    of_state("by filter(predicate)", impl.filter(state, _OddDepth()))
    if parts:
        of_state("by union of the per-collection filtered parts", impl.union(*reversed(parts)))

    impl.update(merged, state)
    of_module("by update (read from the updated module)", merged)
    if parts:
        impl.update(merged, parts[0])
        of_module(f"by update from filter({collections[0]!r})", merged)

    of_state("by jax.tree_util.tree_map", let("mapped", _identity, state, source=_MAP))

    if not items:
        return  # no leaf: jit/vmap/scan have nothing to carry, nothing to lose
    seen, out = code(_JIT, lambda s: _run_jit(impl, s), state, outputs=("seen", "out"), adapter_terms=True)
    expected.check(impl, "inside a jax.jit body (tracing)", seen[-1], ("seen", seen))
    of_state("by jax.jit (its output)", out)

    stacked = let("stacked", _stack_twice, state, source=_STACK)
    of_state("by jax.tree_util.tree_map stacking two copies", stacked)
    seen, out = code(_VMAP, lambda s: _run_vmap(impl, s), stacked, outputs=("seen_vmap", "out_vmap"), adapter_terms=True)
    expected.check(impl, "inside a jax.vmap body", seen[-1], ("seen", seen))
    of_state("by jax.vmap (its output)", out)

    seen_carry, seen_xs, carry, ys = code(
        _SCAN, lambda s, x: _run_scan(impl, s, x), state, stacked, outputs=("seen_carry", "seen_xs", "carry", "ys"), adapter_terms=True
    )
    expected.check(impl, "inside a jax.lax.scan body (the carry)", seen_carry[-1], ("seen", seen_carry))
    expected.check(impl, "inside a jax.lax.scan body (a slice of xs)", seen_xs[-1], ("seen", seen_xs))
    of_state("by jax.lax.scan (the final carry)", carry)
    of_state("by jax.lax.scan (the stacked ys)", ys)


@dataclasses.dataclass(frozen=True)
class _OddDepth:
    """Entries whose path has an odd number of names (a predicate filter a reproduction can spell)."""

    def __call__(self, path: Path, variable: Any) -> bool:
        return len(path) % 2 == 1

    def repro_source(self, path: str) -> str:
        return f"len({path}) % 2 == 1"


def _identity(state: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: x, state)


def _stack_twice(state: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), state)


_MAP = "jax.tree_util.tree_map(lambda x: x, {0})"
_STACK = "jax.tree_util.tree_map(lambda x: jnp.stack([x, x]), {0})"
_SEEN = (
    "def shardings(state):  # path -> annotation of every entry, as the body sees them\n"
    "    return {tuple(p): (None if a.variable_sharding(v) is None else tuple(a.variable_sharding(v)))\n"
    "            for p, v in a.state_items(state)}\n"
)
_JIT = _SEEN + """

seen = []


def body(s):
    seen.append(shardings(s))
    return s


out = jax.jit(body)({0})"""
_VMAP = _SEEN + """

seen_vmap = []


def body(s):
    seen_vmap.append(shardings(s))
    return s


out_vmap = jax.vmap(body)({0})"""
_SCAN = _SEEN + """

seen_carry, seen_xs = [], []


def step(carry, x):
    seen_carry.append(shardings(carry))
    seen_xs.append(shardings(x))
    return carry, x


carry, ys = jax.lax.scan(step, {0}, {1})"""


def _run_jit(impl: Any, state: Any) -> tuple[list[Any], Any]:
    seen: list[dict[Path, Sharding | None]] = []
    out = jax.jit(_traced(lambda s: s, impl, seen))(state)
    return seen, out


def _run_vmap(impl: Any, stacked: Any) -> tuple[list[Any], Any]:
    seen: list[dict[Path, Sharding | None]] = []
    out = jax.vmap(_traced(lambda s: s, impl, seen))(stacked)
    return seen, out


def _run_scan(impl: Any, state: Any, stacked: Any) -> tuple[Any, Any, Any, Any]:
    seen_carry: list[dict[Path, Sharding | None]] = []
    seen_xs: list[dict[Path, Sharding | None]] = []

    def step(carry: Any, x: Any) -> tuple[Any, Any]:
        seen_carry.append(_shardings(impl, carry))
        seen_xs.append(_shardings(impl, x))
        return carry, x

    carry, ys = jax.lax.scan(step, state, stacked)
    return seen_carry, seen_xs, carry, ys


# ---------------------------------------------------------------------------------------------------------
# sharding.placement
# ---------------------------------------------------------------------------------------------------------

LINEAR_ANNOTATIONS: tuple[Sharding | None, ...] = (
    (None, "model"),  # the usual tensor-parallel kernel: output features split over 'model'
    ("model", "data"),  # both axes, 'model' first: a reordered or reversed tuple lands elsewhere
    None,  # no annotation: fully replicated
)
"""The kernel annotations each placement run tries on ``Linear(din, dout)``: three, because every case
costs a few XLA compiles in the child (a sharded jit, the eager ops on sharded arrays)."""


def _mesh_shape(n_devices: int) -> tuple[int, int]:
    """``(data, model)`` sizes using every device: ``model`` gets up to 4 (2x4 for 8 devices, 1x1 for 1)."""
    model = math.gcd(n_devices, 4)
    return n_devices // model, model


def _named(mesh: Any, annotation: Sharding | None) -> Any:
    from jax.sharding import NamedSharding, PartitionSpec

    return NamedSharding(mesh, PartitionSpec() if annotation is None else PartitionSpec(*annotation))


def _where(value: Any) -> str:
    sharding = getattr(value, "sharding", None)
    if sharding is None:
        return f"a {type(value).__module__}.{type(value).__name__} (not a jax.Array: it is on no device)"
    spec = getattr(sharding, "spec", None)
    return f"{type(sharding).__name__}({spec})" if spec is not None else repr(sharding)


def _check_placed(
    impl: Any,
    mesh: Any,
    entries: Iterable[tuple[Path, Any]],
    expected: dict[Path, Sharding | None],
    stage: str,
) -> list[str]:
    """Each Variable keeps its annotation and its value sits on the devices the annotation names."""
    failures = []
    for path, var in entries:
        if path not in expected:
            continue
        want = expected[path]
        got = impl.variable_sharding(var)
        if _norm(got) != _norm(want):
            failures.append(f"{stage}: {fmt_path(path)} annotation {got!r}, expected {want!r}")
        value = impl.variable_value(var)
        target = _named(mesh, want)
        sharding = getattr(value, "sharding", None)
        if sharding is None or not sharding.is_equivalent_to(target, np.ndim(value)):
            failures.append(
                f"{stage}: {fmt_path(path)} value is placed as {_where(value)}, expected "
                f"NamedSharding({target.spec}) over mesh {dict(mesh.shape)}"
            )
    return failures


def _place(impl: Any, mesh: Any, state: Any) -> Any:
    """Put each Variable's value on the devices its annotation names (``None``: replicated).

    The user's idiom comes first: one ``NamedSharding`` per Variable, a tree prefix of the state, then
    ``jax.device_put(state, shardings)``, which rebuilds the state through the implementation's own pytree.
    That needs the Variables to be nodes of the state's pytree (they are in the core, flax and the seed).
    A state whose pytree goes straight to the values is legal too; it is placed entry by entry instead,
    with new Variables carrying the placed values and the same annotations (``make_state``).
    """
    if all(impl.is_variable(leaf) for leaf in jax.tree_util.tree_leaves(state, is_leaf=impl.is_variable)):
        shardings = jax.tree_util.tree_map(
            lambda var: _named(mesh, impl.variable_sharding(var)), state, is_leaf=impl.is_variable
        )
        return jax.device_put(state, shardings)
    placed = []
    for path, var in impl.state_items(state):
        annotation = impl.variable_sharding(var)
        value = jax.device_put(impl.variable_value(var), _named(mesh, annotation))
        placed.append((path, impl.new_variable(impl.variable_collection(var), value, annotation)))
    return impl.make_state(placed)


def _placement_case(
    impl: Any,
    mesh: Any,
    state: Any,
    graphdef: Any,
    requested: dict[Path, Sharding | None],
    apply: _Apply | None = None,
    x: Any = None,
) -> list[str]:
    """Place one state, merge it, and (given ``apply``) compare applies; returns failure lines.

    ``requested`` is the annotation each listed Variable was created with; the state must still hold it
    before anything is placed, or the placement below would faithfully follow the wrong annotation.
    """
    failures = []
    held = _shardings(impl, state)
    for path, annotation in requested.items():
        if path not in held:
            failures.append(f"the state has no entry {fmt_path(path)} (paths: {sorted(held)})")
        elif _norm(held[path]) != _norm(annotation):
            failures.append(
                f"{fmt_path(path)} was created with sharding {annotation!r} but the state holds "
                f"{held[path]!r}"
            )
    try:
        placed = _place(impl, mesh, state)
    except Exception as err:
        return [*failures, f"jax.device_put(state, shardings) failed: {type(err).__name__}: {err}"]
    failures += _check_placed(impl, mesh, impl.state_items(placed), held, "placed state")
    try:
        module = impl.merge(graphdef, placed)
    except Exception as err:
        return [*failures, f"merging the placed state failed: {type(err).__name__}: {err}"]
    failures += _check_placed(impl, mesh, ((p, _walk(impl, module, p)) for p in held), held, "merged module")
    if apply is None:
        return failures
    reference = np.asarray(apply(state, x))  # eager and unsharded: the default device, nothing compiled
    for how, run in (
        ("jitted apply on the placed state", lambda: jax.jit(apply)(placed, x)),
        ("eager call of the merged module", lambda: apply.call_module(module, x)),
    ):
        try:
            out = np.asarray(run())
        except Exception as err:
            failures.append(f"{how} failed: {type(err).__name__}: {err}")
            continue
        if out.shape != reference.shape or not np.allclose(out, reference, rtol=1e-5, atol=1e-5):
            worst = float(np.max(np.abs(out - reference))) if out.shape == reference.shape else math.nan
            failures.append(
                f"{how} differs from the unsharded eager apply (shape {out.shape} vs "
                f"{reference.shape}, max |diff| {worst:.3g})"
            )
    return failures


def _linear_case(
    impl: Any, mesh: Any, din: int, dout: int, annotation: Sharding | None, seed: int
) -> list[str]:
    """``Linear(din, dout, sharding=annotation)``: the annotation must land on the ``(din, dout)`` kernel
    (whatever the implementation names it), then the state is placed, merged and applied."""
    ctx = impl.new_context(seed)
    layer = impl.layers.linear(din, dout, ctx, sharding=annotation)
    state, graphdef = impl.partition(layer)
    kernels = [p for p, var in impl.state_items(state) if np.shape(impl.variable_value(var)) == (din, dout)]
    if len(kernels) != 1:
        return [f"expected one ({din}, {dout}) kernel Variable in the Linear's state, found {kernels}"]
    (kernel,) = kernels
    if annotation is None:  # asked for nothing: an all-None tuple is as replicated as no annotation
        got = _norm(impl.variable_sharding(_state_entry(impl, state, kernel)))
        requested = {kernel: got if got is not None and not any(got) else None}
    else:
        requested = {kernel: annotation}
    x = jnp.asarray(np.random.default_rng(seed).normal(size=(3, din)), jnp.float32)
    return _placement_case(impl, mesh, state, graphdef, requested, _Apply(impl, graphdef, ctx), x)


def _state_entry(impl: Any, state: Any, path: Path) -> Any:
    """The Variable at ``path`` of an implementation's state."""
    return dict(impl.state_items(state))[path]


class _Apply:
    """``(state, x) -> merge(graphdef, state)(x)`` for ``jax.jit``; the definition is closed over, so it
    need not be hashable (``graph.def-equality`` judges that, not this clause)."""

    def __init__(self, impl: Any, graphdef: Any, ctx: Any) -> None:
        self.impl, self.graphdef, self.ctx = impl, graphdef, ctx

    def call_module(self, module: Any, x: Any) -> Any:
        return self.impl.layers.call(module, x, train=False, ctx=self.ctx)

    def __call__(self, state: Any, x: Any) -> Any:
        return self.call_module(self.impl.merge(self.graphdef, state), x)


def _annotated_graph(impl: Any, size: int) -> tuple[Any, dict[Path, Sharding | None]]:
    """A small hand-made graph beyond layers: nested, several collections and dtypes, a scalar, an
    unannotated Variable and (if claimed) one Variable shared by two paths. ``size`` divides every mesh axis."""
    root, sub = impl.new_module("PlacementRoot"), impl.new_module("PlacementSub")
    impl.set_attr(root, "sub", sub)
    specs: dict[str, tuple[Any, str, Any, Sharding | None]] = {
        "emb": (
            root,
            "params",
            np.arange(2 * size * size, dtype=np.float32).reshape(2 * size, size),
            ("model", "data"),
        ),
        "count": (root, "counts", np.arange(size, dtype=np.int32), ("data",)),
        "scale": (root, "params", np.float32(1.5), ()),
        "free": (sub, "batch_stats", np.ones((3, size), np.float32), None),
        "mean": (sub, "batch_stats", np.zeros((size, 2 * size), np.float32), (None, "model")),
    }
    for name, (owner, collection, value, annotation) in specs.items():
        impl.set_attr(owner, name, impl.new_variable(collection, value, annotation))
    if impl.capabilities.shared_variables:
        impl.set_attr(sub, "tied", dict(impl.attrs(root))["emb"])
    return root, {
        (name,) if owner is root else ("sub", name): annotation
        for name, (owner, _, _, annotation) in specs.items()
    }


def _placement_check(impl: Any, mode: str) -> dict[str, Any]:
    """The ``sharding.placement`` cases on one mesh; JSON in and out, so it can run in a child process.

    ``mode="forced"`` expects :data:`FORCED_DEVICES` host CPU devices (the child was started with
    ``--xla_force_host_platform_device_count``) and returns ``{"skip": reason}`` if it did not get them;
    ``mode="real"`` uses every device of the default backend. Returns the backend, device count, mesh shape,
    cases run and failure lines.
    """
    from jax.sharding import Mesh

    backend, devices = jax.default_backend(), jax.devices()
    info: dict[str, Any] = {"backend": backend, "devices": len(devices)}
    if mode == "forced":
        if backend != "cpu" or len(devices) != FORCED_DEVICES:
            return {
                **info,
                "skip": f"could not force {FORCED_DEVICES} host CPU devices: the child interpreter saw "
                f"{len(devices)} {backend} device(s) with XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}",
            }
        shape = FORCED_MESH
    else:
        shape = _mesh_shape(len(devices))
    mesh = Mesh(np.asarray(devices).reshape(shape), MESH_AXES)
    unit = math.lcm(*shape)
    din = unit * math.ceil(4 / unit)  # divisible by both axis sizes, at least 4 (4 on a 2x4 or 1x1 mesh)
    dout = 2 * din
    cases: list[tuple[str, Callable[[], list[str]]]] = [
        (
            f"Linear({din}, {dout}, sharding={annotation!r})",
            functools.partial(_linear_case, impl, mesh, din, dout, annotation, seed),
        )
        for seed, annotation in enumerate(LINEAR_ANNOTATIONS)
    ]
    cases.append(("annotated graph", lambda: _graph_case(impl, mesh, unit * 2)))
    failures: list[str] = []
    for label, run in cases:
        try:
            lines = run()
        except Exception as err:
            lines = [f"raised {type(err).__name__}: {err}"]
        failures += [f"{label} on mesh {dict(mesh.shape)}: {line}" for line in lines]
    return {**info, "mesh": list(shape), "cases": len(cases), "failures": failures}


def _graph_case(impl: Any, mesh: Any, size: int) -> list[str]:
    root, requested = _annotated_graph(impl, size)
    state, graphdef = impl.partition(root)
    return _placement_case(impl, mesh, state, graphdef, requested)


def _report(result: dict[str, Any], where: str) -> None:
    failures = result.get("failures", [])
    assert not failures, (
        f"sharding.placement on {where} ({result['devices']} {result['backend']} device(s), mesh "
        f"data x model = {result['mesh']}): {len(failures)} problem(s):\n  " + "\n  ".join(failures)
    )


@clause("sharding.placement")
def test_placement_on_forced_cpu_devices(impl):
    """Placement on a 2x4 mesh of 8 host CPU devices forced in a child interpreter: the only way to see a
    multi-device layout without multi-device hardware (the flag must be set before JAX starts)."""
    flags = " ".join(
        f
        for f in (os.environ.get("XLA_FLAGS", ""), f"--xla_force_host_platform_device_count={FORCED_DEVICES}")
        if f
    )
    result = run_isolated(impl, _PLACEMENT, "forced", env={"XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"})
    assert not result.crashed, f"the forced-device placement check crashed: {result.describe()}"
    assert result.error is None, f"the forced-device placement check raised: {result.error}"
    value = result.value
    if "skip" in value:
        pytest.skip(value["skip"])
    _report(value, f"{FORCED_DEVICES} forced CPU devices")


@clause("sharding.placement")
def test_placement_on_real_devices(impl):
    """The same placement cases on the devices this process really has (a 1x1 mesh on one CPU), so GPU
    and TPU runs place onto their accelerators."""
    _report(_placement_check(impl, "real"), f"the real {jax.default_backend()} devices")
