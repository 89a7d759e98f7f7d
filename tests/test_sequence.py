"""The ``sequence.*`` machinery: state machines inside properties, capabilities, reproduction scripts.

The clauses themselves run in the spec (``spec/test_sequence.py``) and their power in
``tests/test_mutants.py`` (the ``sequence`` mutants); here we pin what those rely on:

* :class:`~nnx_conformance.spec.properties._machine.MachineRunner` runs a Hypothesis state machine from a
  property's own ``st.data()`` (Hypothesis' ``get_state_machine_test(...).hypothesis.inner_test``): programs
  have ``stateful_step_count`` steps, the same seed replays the same program, a failure shrinks to its
  shortest program;
* the graph machine never makes a graph the adapter disclaims (cycles, sharing, punctuated or reserved
  names) and deletes attributes only through ``del_attr`` with ``Capabilities.delete_attrs``;
* a failure's note is a script that replays the shrunk program through the adapter and fails at the same
  check (for each ``sequence`` mutant).
"""

from __future__ import annotations

from typing import Any

import jax
import mutants
import pytest
from hypothesis import Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, rule
from mutants.harness import leaf_exceptions, run_property

from nnx_conformance.spec import _recording
from nnx_conformance.spec.adapter import Capabilities, can_delete_attrs
from nnx_conformance.spec.adapters.core import CoreAdapter
from nnx_conformance.spec.properties import sequence
from nnx_conformance.spec.properties._helpers import impl_spec
from nnx_conformance.spec.properties._machine import MachineRunner, ScriptedMachine
from nnx_conformance.strategies import allowed, oracle, read

# ---------------------------------------------------------------------------------------------------------
# MachineRunner
# ---------------------------------------------------------------------------------------------------------

_runs: list[list[str]] = []


class _Counter(ScriptedMachine):
    """Counts up and down; fails once the count reaches ``limit`` (``None``: never)."""

    limit: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self.n = 0
        _runs.append([])

    @rule()
    def up(self) -> None:
        _runs[-1].append("up")
        self.n += 1

    @rule()
    def down(self) -> None:
        _runs[-1].append("down")
        self.n -= 1

    @invariant()
    def below_the_limit(self) -> None:
        assert self.limit is None or self.n < self.limit, f"the count reached {self.limit}"


class _Never(_Counter):
    limit = None


class _Three(_Counter):
    limit = 3


_RUNNER = MachineRunner(7)  # made at import time, as the property modules do


def test_programs_have_the_step_count_and_replay_with_their_seed() -> None:
    @settings(max_examples=5, database=None, phases=[Phase.generate])
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        _RUNNER.run(_Never, data)

    _runs.clear()
    seed(1234)(prop)()
    first = list(_runs)
    assert len(first) == 5 and all(len(steps) == 7 for steps in first), [len(s) for s in first]
    _runs.clear()
    seed(1234)(prop)()
    assert _runs == first, "the same seed must replay the same programs"


def test_a_failing_program_shrinks_to_its_shortest_form() -> None:
    @settings(max_examples=50, database=None, derandomize=True)
    @given(data=st.data())
    def prop(data: st.DataObject) -> None:
        _RUNNER.run(_Three, data)

    _runs.clear()
    with pytest.raises(AssertionError, match="reached 3"):
        prop()
    assert _runs[-1] == ["up", "up", "up"], f"the final (shrunk) program is {_runs[-1]}"


# ---------------------------------------------------------------------------------------------------------
# Capabilities
# ---------------------------------------------------------------------------------------------------------


class _Strict(CoreAdapter):
    """The core, disclaiming cycles, sharing, punctuated names and deletion, with a few reserved names;
    every graph it partitions is checked against what it claims."""

    name = "strict"
    capabilities = Capabilities(
        cycles=False,
        shared_modules=False,
        shared_variables=False,
        separator_in_names=False,
        delete_attrs=False,
        reserved_names=CoreAdapter.capabilities.reserved_names | {"a", "z"},
    )

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.partitions = 0

    def set_attr(self, module: Any, name: str, value: Any) -> None:
        if not allowed(name, self.capabilities):
            self.violations.append(f"assigned the name {name!r}")
        super().set_attr(module, name, value)

    def del_attr(self, module: Any, name: str) -> None:
        self.violations.append(f"deleted {name!r} although delete_attrs=False")
        super().del_attr(module, name)

    def partition(self, module: Any) -> Any:
        self.partitions += 1
        try:
            needs = oracle(read(module, self)).needs
        except jax.errors.TracerArrayConversionError:  # inside the jitted step: values are tracers
            return super().partition(module)
        if needs & {"cycles", "shared_modules", "shared_variables", "separator_in_names"}:
            self.violations.append(f"partitioned a graph needing {sorted(needs)}")
        return super().partition(module)


class _NoDelAttr(CoreAdapter):
    """Claims ``delete_attrs`` (the default) but has no ``del_attr``: treated as not claiming it."""

    name = "no-del-attr"
    del_attr = None  # type: ignore[assignment]


def test_the_graph_machine_respects_capabilities() -> None:
    impl = _Strict()
    outcome = run_property(
        sequence.test_graph_sequences_keep_the_graph_its_partition_and_earlier_results_right,
        impl,
        seed=0,
        shrink=False,
        max_examples=15,
    )
    assert not outcome.failed, outcome.describe()
    assert impl.partitions > 15, "the machine ran no steps"
    assert not impl.violations, impl.violations[:5]


def test_deletion_needs_the_capability_and_the_method() -> None:
    assert can_delete_attrs(CoreAdapter())
    assert not can_delete_attrs(_Strict())
    assert not can_delete_attrs(_NoDelAttr())
    assert sequence.graph_machine(_NoDelAttr())().can_delete is False


# ---------------------------------------------------------------------------------------------------------
# Reproduction scripts
# ---------------------------------------------------------------------------------------------------------

_SEQUENCE_MUTANTS = [m for m in mutants.load() if m.family == "sequence"]


def _script(error: BaseException, fn: Any, impl: Any) -> str:
    """The machine's reproduction: from its header to the end of the failing check. Where the property
    was recorded (instrumented by the plugin or by another test in this process) the machine hands it to
    the recorder instead of noting it, so that the report prints it once; otherwise it is the note."""
    rec = _recording.take()
    if rec is not None and rec.test is fn and rec.own_script is not None:
        return rec.own_script(impl_spec(impl))
    (leaf,) = leaf_exceptions(error)
    text = "\n".join(getattr(leaf, "__notes__", []))
    start = text.index("# --- reproduction")
    lines = []
    for line in text[start:].splitlines()[1:]:
        if line.startswith(("state.", "Explanation", "You can")):
            break  # Hypothesis' own lines after the note
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("m", _SEQUENCE_MUTANTS, ids=[m.name for m in _SEQUENCE_MUTANTS])
def test_the_noted_script_replays_the_failure(m: mutants.Mutant) -> None:
    fn = {
        "sequence.graph": sequence.test_graph_sequences_keep_the_graph_its_partition_and_earlier_results_right,
        "sequence.rng": sequence.test_rng_sequences_draw_distinct_keys_through_transforms,
    }[m.catches]
    impl = m.make()
    outcome = run_property(fn, impl, seed=1, shrink=True)
    assert outcome.caught_by(m.symptoms), outcome.describe()
    script = _script(outcome.error, fn, impl)
    assert f"a = {m.adapter.__name__}()" in script and "# --- the failing check ---" in script, script
    steps, check = script.split("# --- the failing check ---")
    scope: dict[str, Any] = {"__name__": "__reproduction__"}
    exec(compile(steps, f"<steps of {m.name}>", "exec"), scope)  # the steps replay without error
    with pytest.raises(Exception) as failed:  # an assertion, or the failing operation raising itself
        exec(compile(check, f"<failing check of {m.name}>", "exec"), scope)
    assert not isinstance(failed.value, NameError | SyntaxError | ImportError), failed.value


# ---------------------------------------------------------------------------------------------------------
# The flax behaviour sequence.graph found (SPEC.md, "Known deviations")
# ---------------------------------------------------------------------------------------------------------


def test_flax_attribute_status_outlives_the_value() -> None:
    """flax 0.12: an attribute's data/static status survives reassignment, so isomorphic graphs get unequal
    definitions depending on their history, and a static over a Variable lands in the State. Pinned on flax
    0.12 so that a change in flax shows up here (and the expectations entry can go)."""
    flax = pytest.importorskip("flax")
    if not flax.__version__.startswith("0.12."):
        pytest.skip(f"pinned on flax 0.12, this is {flax.__version__}")
    import jax.numpy as jnp
    from flax import nnx

    class A(nnx.Module):
        pass

    m1 = A()
    m1.a = A()
    m1.a = None  # 'a' keeps its data status
    m2 = A()
    m2.a = None
    g1, _ = nnx.split(m1)
    g2, _ = nnx.split(m2)
    assert g1 != g2 and hash(g1) != hash(g2)

    m3 = A()
    m3.w = nnx.Param(jnp.ones(2))
    m3.w = 1.0
    assert [(p, v) for p, v in nnx.to_flat_state(nnx.split(m3)[1])] == [(("w",), 1.0)]

    m4 = A()
    m4.s = 3
    with pytest.raises(ValueError, match=r"nnx\.data"):
        m4.s = A()
