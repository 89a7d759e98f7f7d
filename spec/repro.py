"""Reproductions: one runnable script per failure, for the implementation under test.

When a spec property fails, the run prints (and with ``--nnx-repro-dir`` writes) a short Python script that
rebuilds the counterexample -- a module graph, a state, an RNG program, a layer call -- and ends in the
check that failed: an ``assert`` carrying the message the property failed with. Run it with ``python`` and
it exits non-zero for as long as the bug is there.

How a failure becomes a script:

* While a property runs, a *recording* wrapper around its adapter (:mod:`._recording`) writes down every
  operation the property performs at top level (``partition``, ``merge``, ``make_rng``, a layer call...),
  with its arguments as script expressions: earlier results by name, new values as literals. Graphs are
  recorded as one :class:`Graph` step (the blueprint), and the property's checks as :class:`Check` steps
  whose condition is an expression (:class:`Expr`) the property evaluates itself, through the adapter, to
  reach its verdict -- so the script's final ``assert`` is the very condition that failed.
* The result is a :class:`Scenario`: the steps up to the failure, the failing step and the message.
* :func:`reproduce` turns it into a script. An adapter may render it in its own library's code through the
  optional ``render(scenario) -> str | None`` method (:class:`~nnx_conformance.spec.adapter.Renders`): the
  built-in adapters render plain ``flax.nnx``, core and seed code. Otherwise, or where ``render`` returns
  ``None``, the script drives the implementation through its adapter (:class:`~._render.ScriptRenderer`).
  A property whose checks run inside traced functions or a child interpreter is reproduced by calling the
  property's own body on the failing arguments (``prop.hypothesis.inner_test(impl=a, seed=...)``).

Renderers: subclass ``repro.ScriptRenderer`` (or ``repro.LibraryRenderer``, which already writes modules as
classes and attributes with Python syntax) and override the pieces your library spells differently (see
``spec/adapters/_render_flax.py``); raise :class:`Unsupported` for a step you cannot express, and the run
falls back to the adapter-terms script.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Any, Literal

__all__ = [
    "OBSERVATIONS",
    "At",
    "Call",
    "Check",
    "Code",
    "Entry",
    "Expr",
    "Graph",
    "Let",
    "Lit",
    "Observe",
    "Py",
    "Ref",
    "Refusal",
    "Reproduction",
    "Scenario",
    "Seq",
    "Step",
    "Unknown",
    "Unsupported",
    "file_name",
    "reproduce",
    "safe_name",
]

Path = tuple[str, ...]


class Unsupported(Exception):
    """Raised by a renderer for a step or expression it cannot express; the caller falls back."""


# ---------------------------------------------------------------------------------------------------------
# Expressions: values the script computes (and the property evaluates through the adapter)
# ---------------------------------------------------------------------------------------------------------


class Expr:
    """A value in the script: a named object, a literal, or an observation of one."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, eq=False)
class Ref(Expr):
    """The object a step bound to the script variable ``name``."""

    name: str


@dataclasses.dataclass(frozen=True, eq=False)
class Lit(Expr):
    """A literal: ``None``, bool, int, float, str, tuples and lists of them, a numpy array or scalar, or a
    path predicate filter (``PathPrefix``...: renderers spell it as a lambda)."""

    value: Any


@dataclasses.dataclass(frozen=True, eq=False)
class At(Expr):
    """The object reached from ``base`` through the attributes ``path`` (``root.a.b``)."""

    base: Expr
    path: Path


@dataclasses.dataclass(frozen=True, eq=False)
class Entry(Expr):
    """The entry (Variable) of the state ``state`` at ``path``."""

    state: Expr
    path: Path


OBSERVATIONS = (
    "value",  # a Variable's value (as a numpy array)
    "collection",  # a Variable's collection name
    "sharding",  # a Variable's sharding annotation: a tuple, or None
    "type_name",  # a module's type name
    "attr_names",  # a module's graph attribute names, sorted
    "paths",  # a state's paths (tuples of str), in the implementation's order
    "hash",  # hash(x)
    "key_data",  # a key's raw data as a numpy uint32 array
    "leaves",  # jax.tree_util.tree_leaves(x), each as a numpy array
    "tree_keys",  # jax.tree_util.keystr of every leaf's key path
    "is_module",
    "is_variable",
)
"""What :class:`Observe` can look at; each renderer spells every one."""


@dataclasses.dataclass(frozen=True, eq=False)
class Observe(Expr):
    """An observation ``what`` (one of :data:`OBSERVATIONS`) of the object ``of``."""

    what: str
    of: Expr

    def __post_init__(self) -> None:
        if self.what not in OBSERVATIONS:
            raise ValueError(f"unknown observation {self.what!r}; one of {OBSERVATIONS}")


@dataclasses.dataclass(frozen=True, eq=False)
class Py(Expr):
    """A Python expression over other expressions: ``template`` with ``{0}``, ``{1}``... for ``args``.

    Library-neutral: it may use ``np``, ``jax``, ``jnp`` and the script helpers ``same_array(a, b)`` and
    ``names_path(message, path)``, nothing of the implementation (that goes through ``args``).
    """

    template: str
    args: tuple[Expr, ...] = ()


@dataclasses.dataclass(frozen=True, eq=False)
class Seq(Expr):
    """A list (or tuple) of expressions: ``[(('a',), v0), (('b',), v1)]`` as ``make_state`` takes it."""

    items: tuple[Expr, ...]
    kind: Literal["list", "tuple"] = "list"


@dataclasses.dataclass(frozen=True, eq=False)
class Unknown(Expr):
    """An object the recording could not name (made outside any recorded step): not reproducible."""

    description: str


# ---------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------


class Step:
    """One statement (or block) of the script."""

    __slots__ = ()


@dataclasses.dataclass(frozen=True, eq=False)
class Graph(Step):
    """Build the module graph of ``blueprint`` (a :class:`~nnx_conformance.strategies.Blueprint`).

    ``nodes[i]`` names node ``i``'s module (``nodes[0]`` is the root); ``variables[j]`` names Variable
    ``j`` when more than one attribute holds it (shared), else ``None`` (created where it is assigned).
    """

    blueprint: Any
    nodes: tuple[str, ...]
    variables: tuple[str | None, ...]
    raised: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Call(Step):
    """One adapter operation: ``op`` is a protocol method (``"partition"``, ``"make_rng"``...) or a layers
    method (``"layers.linear"``, ``"layers.call"``). ``outputs`` names what it returned (two names for
    ``partition``: state, then definition). ``raised`` is ``"Type: message"`` if it raised."""

    op: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, Expr], ...] = ()
    outputs: tuple[str, ...] = ()
    raised: str | None = None
    same_as: tuple[tuple[str, str], ...] = ()
    """``(output, earlier name)`` for an output that is an object the script already held."""


@dataclasses.dataclass(frozen=True, eq=False)
class Let(Step):
    """``output = <source>``: a library-neutral expression (``jax.jit(lambda s: s)({0})``) over ``args``."""

    output: str
    source: str
    args: tuple[Expr, ...] = ()
    raised: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Code(Step):
    """Statements (``source`` with ``{0}``... for ``args``) that bind ``outputs``. ``adapter_terms``: the
    source calls the adapter ``a`` (only the adapter-terms script can hold it)."""

    source: str
    args: tuple[Expr, ...] = ()
    outputs: tuple[str, ...] = ()
    adapter_terms: bool = False
    raised: str | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Check(Step):
    """``assert <cond>, message``."""

    cond: Expr
    message: str = ""


@dataclasses.dataclass(frozen=True, eq=False)
class Refusal(Step):
    """``call`` must raise an error naming one of ``paths``.

    Before the failure it renders as ``try: call / except Exception: pass``. As the failure it ends the
    script: ``accepted`` is the message if the call returns, ``unnamed`` the message's start (the error's
    text follows) if the error names none of the paths.
    """

    call: Call
    paths: tuple[Path, ...]
    accepted: str = ""
    unnamed: str = ""


# ---------------------------------------------------------------------------------------------------------
# Scenario and reproduction
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Scenario:
    """A failing property's counterexample: the steps that build it, the failing step and its message.

    ``failure`` is a :class:`Check` or :class:`Refusal`, or a step whose ``raised`` is set (the
    implementation raised on legal input: the script ends with that step, which raises by itself).
    """

    implementation: str
    """The adapter's ``name``."""
    adapter: str | None
    """The adapter's import spec ``pkg.module:Attr`` (for adapter-terms scripts), if it has one."""
    clause: str | None
    test: str | None
    steps: tuple[Step, ...]
    failure: Step
    message: str

    def names(self) -> set[str]:
        """Every script variable some step binds."""
        out: set[str] = set()
        for step in (*self.steps, self.failure):
            out.update(bound(step))
        return out


def bound(step: Step) -> tuple[str, ...]:
    """The script variables ``step`` binds."""
    if isinstance(step, Graph):
        return (*step.nodes, *(v for v in step.variables if v))
    if isinstance(step, Call | Code):
        return step.outputs
    if isinstance(step, Let):
        return (step.output,)
    if isinstance(step, Refusal):
        return step.call.outputs
    return ()


Kind = Literal["library", "adapter", "property", "partial"]


@dataclasses.dataclass(frozen=True)
class Reproduction:
    """A rendered reproduction.

    ``kind``: ``library`` (the adapter rendered it in its library's own code), ``adapter`` (through the
    adapter protocol), ``property`` (the property's body called on the failing arguments), ``partial``
    (the recording could not express the failure: the script says so and is not a reproduction).
    """

    script: str
    kind: Kind
    target: str
    """What the script is written in: ``flax.nnx``, ``nnx_conformance.core``, ``adapter``..."""
    reason: str = ""
    """For ``property`` and ``partial``: why the steps could not be rendered."""

    @property
    def complete(self) -> bool:
        return self.kind != "partial"


def reproduce(
    scenario: Scenario | None,
    adapter: Any,
    *,
    property_call: tuple[str, dict[str, Any], bool] | None = None,
    incomplete: str = "",
    clause: str | None = None,
    own_script: Callable[[str], str] | None = None,
) -> Reproduction:
    """The script for ``scenario`` on ``adapter`` (the raw adapter, or a wrapper of it).

    Tries, in order: the adapter's own ``render(scenario)``; the adapter-terms script; the script the
    property wrote itself (``own_script(adapter_spec)``, a state machine's steps); the property called
    on its failing arguments (``property_call``: ``("pkg.module:function", kwargs, is_hypothesis_test)``,
    kwargs literal);
    else a ``partial`` script that says why (``incomplete``) and is no reproduction.
    """
    from nnx_conformance.spec import _render

    raw = _render.raw_adapter(adapter)
    reasons: list[str] = [incomplete] if incomplete else []
    if scenario is not None and not incomplete:
        problem = _render.missing(scenario)
        if problem:
            reasons.append(problem)
        else:
            render = getattr(raw, "render", None)
            if callable(render):
                try:
                    script = render(scenario)
                except Unsupported:
                    script = None
                if isinstance(script, str) and script.strip():
                    target = str(getattr(render, "target", "") or getattr(raw, "name", "library"))
                    return Reproduction(script, "library", target)
            try:
                return Reproduction(_render.ScriptRenderer(scenario).script(), "adapter", "adapter")
            except Unsupported as err:
                reasons.append(str(err))
    adapter_spec = scenario.adapter if scenario is not None else _render.adapter_spec_of(raw)
    if own_script is not None and adapter_spec is not None:
        return Reproduction(own_script(adapter_spec), "adapter", "adapter", "; ".join(reasons))
    if property_call is not None and adapter_spec is not None:
        script = _render.property_script(
            property_call[0],
            property_call[1],
            adapter_spec,
            implementation=str(getattr(raw, "name", "")),
            clause=scenario.clause if scenario else clause,
            why="; ".join(reasons),
            hypothesis=property_call[2],
        )
        if script is not None:
            return Reproduction(script, "property", "property", "; ".join(reasons))
    return Reproduction(
        _render.partial_script(scenario, "; ".join(reasons) or "no recorded failure", clause=clause),
        "partial",
        "none",
        "; ".join(reasons),
    )


def __getattr__(name: str) -> Any:
    """``ScriptRenderer`` and ``LibraryRenderer``, the renderers' bases, from :mod:`._render` (which imports
    this module, so they are looked up on first use)."""
    if name in ("ScriptRenderer", "LibraryRenderer"):
        from nnx_conformance.spec import _render

        return getattr(_render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------------------

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """``text`` as one path component: runs of anything but letters, digits, ``_ . -`` become ``_``
    (``mylib_conformance:Adapter`` -> ``mylib_conformance_Adapter``), without leading or trailing ``_``
    or ``.`` (never empty, hidden, ``.`` or ``..``)."""
    cleaned = _UNSAFE.sub("_", text).strip("_.")
    return cleaned or "_"


def file_name(directory: FilePath, implementation: str, clause: str, test: str) -> FilePath:
    """``directory/<implementation>/<clause>__<test>.py``, each part made safe for a file system."""
    return directory / safe_name(implementation) / f"{safe_name(clause)}__{safe_name(test)}.py"


def write(directory: FilePath, implementation: str, clause: str, test: str, script: str) -> FilePath:
    """Write ``script`` at :func:`file_name` (creating folders); the path written."""
    path = file_name(directory, implementation, clause, test)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(script, encoding="utf-8")
    return path


def format_section(reproduction: Reproduction, written: FilePath | None = None) -> tuple[str, str]:
    """The failure report's section: ``(title, body)``."""
    where = {
        "library": f"in {reproduction.target}",
        "adapter": "through the adapter",
        "property": "the property on the failing arguments",
        "partial": "incomplete",
    }[reproduction.kind]
    title = f"reproduction ({where}): python repro.py"
    body = reproduction.script.rstrip()
    if written is not None:
        body += f"\n# written to {written}"
    return title, body
