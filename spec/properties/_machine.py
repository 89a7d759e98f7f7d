"""Running a Hypothesis state machine inside a spec property, and the script it prints when it fails.

The ``sequence.*`` properties are ordinary ``@given(data=st.data())`` properties ``test_...(impl, data)``
whose body runs one :class:`~hypothesis.stateful.RuleBasedStateMachine` program (:class:`MachineRunner`). Being
ordinary properties, they take the suite's budget (``--nnx-max-examples``, profiles, :func:`._helpers.budget`)
and run unchanged in the meta-tests' harness (``tests/mutants/harness.py``: seeds, no-shrink runs, example
counts), the kill matrix and the false-alarm run. One example is one program of up to ``steps`` steps.

How: :func:`hypothesis.stateful.get_state_machine_test` builds Hypothesis' own state-machine test; its
documented ``.hypothesis.inner_test`` is the step loop, a function of one ``st.data()`` object (before
Hypothesis 6.131 or so, of the machine factory and the data object: both forms are handled). Called with
the property's own ``data``, it draws rules and arguments from the property's choice sequence, so shrinking
removes and simplifies steps exactly as :func:`~hypothesis.stateful.run_state_machine_as_test` would, and on
the final (shrunk) example Hypothesis prints the steps (``state.add_attr(node=0, name='a', ...)``).
``tests/test_sequence.py`` pins this use of Hypothesis.

Each machine also keeps a :class:`Script`: every operation it performs, written as adapter calls
(``a = CoreAdapter()``, ``root = a.new_module('A')``, ``s1, g1 = a.partition(root)``...). When a step or an
invariant fails, the script so far plus the failing check is the reproduction of last resort: the plugin's
recording (:mod:`nnx_conformance.spec._recording`) sees every adapter call and every recorded check, and
renders those (in the library's own code where the adapter renders); where it cannot (a ``jit`` of a
machine helper, a check written as a plain ``assert``), the report carries this script instead
(``Recorder.own_script``). Outside the plugin it is attached with ``note()``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import numpy as np
from hypothesis import note, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test

from nnx_conformance.spec import _recording
from nnx_conformance.spec._render import ScriptRenderer
from nnx_conformance.spec.properties._helpers import JAX_SETTINGS, impl_spec

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["MachineRunner", "Script", "ScriptedMachine", "array_code", "scripted"]


class MachineRunner:
    """Runs programs of whichever machine it is handed, at most ``steps`` steps each, inside a property.

    Make one at import time (:func:`hypothesis.stateful.get_state_machine_test` calls ``@given``, which
    Hypothesis refuses inside a running test), then call :meth:`run` from the property body.
    """

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self._machine: type[RuleBasedStateMachine] | None = None
        # Hypothesis takes any factory returning a machine (its annotation says a class).
        self._test = get_state_machine_test(
            self._make,  # type: ignore[arg-type]
            settings=settings(JAX_SETTINGS, stateful_step_count=steps),
        )
        self._inner: Callable[..., None] = self._test.hypothesis.inner_test  # type: ignore[attr-defined]
        self._takes_factory = len(inspect.signature(self._inner).parameters) == 2

    def _make(self) -> RuleBasedStateMachine:
        assert self._machine is not None, "MachineRunner: run() sets the machine"
        return self._machine()

    def run(self, machine: type[RuleBasedStateMachine], data: st.DataObject) -> None:
        """Run one program of ``machine``, drawing its steps from the property's ``data``."""
        self._machine = machine
        try:
            if self._takes_factory:  # Hypothesis < 6.131 or so: run_state_machine(factory, data)
                self._inner(self._make, data)
            else:
                self._inner(data)
        finally:
            self._machine = None


def array_code(value: Any) -> str:
    """``np.array([...], np.float32)``: a value as code (the drawn values are small, exact numbers)."""
    array = np.asarray(value)
    dtype = f"np.{array.dtype.name}" if hasattr(np, array.dtype.name) else f"np.dtype({array.dtype.name!r})"
    return f"np.array({array.tolist()!r}, {dtype})"


class Script:
    """The operations a machine performed on an adapter, as a Python script.

    Objects get names the first time they are bound (``m3``, ``v2``, ``s1``...); the script keeps them alive,
    so an ``id`` is never reused for another object during one program.
    """

    def __init__(self, impl: Any) -> None:
        self.adapter = impl
        self._spec = impl_spec(impl)
        self._imports: dict[str, None] = {"import numpy as np": None}
        self.lines: list[str] = []
        self._names: dict[int, str] = {}
        self._alive: list[Any] = []
        self._counts: dict[str, int] = {}

    def need(self, line: str) -> None:
        """Add an import line (once)."""
        self._imports.setdefault(line, None)

    def fresh(self, prefix: str) -> str:
        n = self._counts.get(prefix, 0)
        self._counts[prefix] = n + 1
        return f"{prefix}{n}"

    def bind(self, obj: Any, prefix: str, name: str | None = None) -> str:
        """Name ``obj`` (a new name with ``prefix`` unless ``name`` is given); returns the name."""
        name = name or self.fresh(prefix)
        self._names[id(obj)] = name
        self._alive.append(obj)
        return name

    def name(self, obj: Any) -> str:
        """The name ``obj`` was bound to (``?`` for an object the script never named)."""
        return self._names.get(id(obj), "?")

    def say(self, *lines: str) -> None:
        self.lines.extend(lines)

    def render(self, failing: Iterable[str] = (), adapter: str | None = None) -> str:
        """The script, ending in ``failing``; for the adapter ``adapter`` (an import spec ``pkg.mod:Attr``)
        instead of the one the machine drove, if given (the kill matrix runs the same steps on the core)."""
        failing = list(failing)
        tail = ["", "# --- the failing check ---", *failing] if failing else []
        imports = [*self._imports, *_adapter_lines(adapter or self._spec)]
        return "\n".join([*imports[:-1], "", imports[-1], *self.lines, *tail]) + "\n"


def _adapter_lines(spec: str) -> list[str]:
    """``from pkg.mod import Attr`` and ``a = Attr()`` (``a = Attr`` where the spec names an adapter
    instance rather than a class)."""
    module, _, attr = spec.partition(":")
    return [f"from {module} import {attr}", f"a = {ScriptRenderer.make_adapter(module, attr)}"]


Lines = Callable[[], Iterable[str]]


class ScriptedMachine(RuleBasedStateMachine):
    """A machine with a :class:`Script` and a current check, reported together when a step fails.

    The script holds the operations that succeeded; :meth:`check` names, as code, what the step is doing or
    asserting now (an operation that may raise, or an ``assert``-like helper call), so that the reported
    script ends with the check that failed and running it fails there too.
    """

    script: Script
    checking: Lines | None = None

    def check(self, lines: Lines) -> None:
        """Say what is being checked now: a function giving the lines of code (called only on failure, so
        that a step does not pay for writing code nobody reads)."""
        self.checking = lines

    def on_failure(self) -> None:
        """Hook: called before the script is noted (machines record their graph for the kill matrix)."""

    def report_failure(self) -> None:
        self.on_failure()
        try:
            failing = list(self.checking()) if self.checking is not None else []
        except Exception as err:  # never hide the real failure behind a broken reproduction
            failing = [f"# (the failing check could not be written: {type(err).__name__}: {err})"]
        rec = _recording.current()
        if rec is not None and isinstance(self.script.adapter, _recording.Recording):
            # a recorded run: the plugin prints (and writes) the one reproduction of the failure
            rec.own_script = functools.partial(self.script.render, failing)
        else:
            note(f"# --- reproduction (the steps above, through the adapter) ---\n{self.script.render(failing)}")


def scripted(fn: F) -> F:
    """Wrap a rule or invariant of a :class:`ScriptedMachine`: on any exception, note the script first.

    Hypothesis prints ``note()`` text only for the final, shrunk program, so the script shown is the
    shortest one that fails.
    """

    @functools.wraps(fn)
    def wrapper(self: ScriptedMachine, *args: Any, **kwargs: Any) -> Any:
        self.checking = None
        try:
            return fn(self, *args, **kwargs)
        except BaseException:
            self.report_failure()
            raise

    return wrapper  # type: ignore[return-value]
