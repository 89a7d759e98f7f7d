"""Reproductions (``nnx_conformance.spec.repro``): one script per failure, for the implementation under test.

* flax's known deviations print plain ``flax.nnx`` scripts (no import of the suite) that fail, as pasted, at
  their final ``assert`` with the property's message;
* the core and the seed render their own code; a subclass of a built-in adapter (a mutant) gets the
  adapter-terms script, never the base library's;
* through pytest: exactly one reproduction per failure, for the implementation under test (nothing bound to
  the reference core), and ``--nnx-repro-dir`` writes ``DIR/<impl>/<clause>__<test>.py``;
* what "an error naming the path" accepts (SPEC.md), and a blueprint's repr names no implementation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mutants
import numpy as np
import pytest
from mutants.harness import run_property

from nnx_conformance.spec import _recording, registry, repro
from nnx_conformance.spec._repro_hooks import reproduction_for
from nnx_conformance.spec._script_helpers import names_path
from nnx_conformance.spec.clauses import properties
from nnx_conformance.strategies import Blueprint, NodeRef, NodeSpec, Static, VarRef, VarSpec

TESTS = Path(__file__).resolve().parent


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu"}


def _run(script: str, tmp_path: Path, name: str = "repro.py") -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(script)
    return subprocess.run([sys.executable, str(path)], env=_env(), capture_output=True, text=True, timeout=600)


def _spec_run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pytest --pyargs nnx_conformance.spec ARGS`` in a fresh interpreter, as a user runs the spec."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--pyargs", "nnx_conformance.spec"]
    return subprocess.run(
        [*command, *args], env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=600
    )


def _property(clause: str, name: str):
    return {fn.__name__: fn for fn in properties()[clause]}[name]


def _reproduce(impl, clause: str, name: str) -> tuple[repro.Reproduction, BaseException]:
    """The reproduction of the first failure a derandomized run finds (not shrunk: any failing example
    must reproduce; shrinking flax examples costs half a minute)."""
    fn = _recording.instrument(_property(clause, name))
    outcome = run_property(fn, impl, shrink=False, derandomize=True)
    assert outcome.failed, f"{name} passed on {impl.name}"
    return reproduction_for(fn, impl, outcome.error, clause, name), outcome.error


# -- what "an error naming the path" accepts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "path", "named"),
    [
        ("StateMismatchError: no entry at ('a', 'b')", ("a", "b"), True),
        ("KeyError: ['a', 'b']", ("a", "b"), True),
        ("ValueError: no entry 'a/b'", ("a", "b"), True),
        ('ValueError: no entry "a.b"', ("a", "b"), True),
        ("ValueError: no entry `a.b`", ("a", "b"), True),
        ("ValueError: missing path a.b in state", ("a", "b"), True),
        ("ValueError: missing path a/b.", ("a", "b"), True),
        ("ValueError: unknown attribute 'a.a'", ("a", "a"), True),  # the correct message the old check refused
        ("ValueError: no entry 'a'", ("a",), True),
        ("ValueError: no entry ('a',)", ("a",), True),
        ("ValueError: a state is missing", ("a",), False),  # a bare one-name path is in any sentence
        ("ValueError: missing path a.b.c", ("a", "b"), False),  # a longer path
        ("ValueError: missing path x.a.b", ("a", "b"), False),
        ("ValueError: no entry 'b'", ("a", "b"), False),  # only the last name
        ("ValueError: Incorrect number of leaves, expected 3 leaves, but got 2.", ("a", "b"), False),
    ],
)
def test_an_error_names_a_path_in_its_common_spellings(message: str, path: tuple[str, ...], named: bool) -> None:
    assert names_path(message, path) is named


# -- what Hypothesis prints for a drawn graph ----------------------------------------------------------------


def test_a_blueprint_prints_as_a_neutral_summary_not_as_code() -> None:
    v = VarSpec.of("params", np.float32([1.0, 2.0]))
    bp = Blueprint(
        (
            NodeSpec("A", (("a", NodeRef(1)), ("k", Static(1)))),
            NodeSpec("B", (("w", VarRef(0)), ("w2", VarRef(0)), ("up", NodeRef(0)))),
        ),
        (v,),
    )
    assert repr(bp) == "Blueprint(<2 modules, 1 Variable; shared: 1 Variable; 1 cycle edge>)"
    assert repr(Blueprint((NodeSpec("A"),))) == "Blueprint(<1 module, 0 Variables>)"


# -- file names ---------------------------------------------------------------------------------------------


def test_file_names_are_safe_for_any_implementation_name(tmp_path: Path) -> None:
    assert repro.safe_name("mylib_conformance:Adapter") == "mylib_conformance_Adapter"
    assert repro.safe_name("mutant:union-later-wins") == "mutant_union-later-wins"
    assert repro.safe_name("../..") == "_"
    path = repro.file_name(tmp_path, "a/b:C", "graph.roundtrip", "test_x")
    assert path == tmp_path / "a_b_C" / "graph.roundtrip__test_x.py"


# -- flax's known deviations, in plain flax.nnx -------------------------------------------------------------

flax = pytest.importorskip("flax")


@pytest.mark.parametrize(
    ("clause", "name"),
    [
        ("graph.def-equality", "test_changing_one_static_changes_the_definition"),
        ("errors.merge-mismatch", "test_merge_and_update_refuse_a_renamed_path"),
        ("rng.from-stream", "test_a_context_rebuilt_from_a_stream_replays_none_of_its_keys"),
    ],
)
def test_flax_deviations_reproduce_in_plain_flax_as_pasted(clause: str, name: str, tmp_path: Path) -> None:
    impl = registry.load(registry.resolve("flax"))
    reproduction, error = _reproduce(impl, clause, name)
    script = reproduction.script
    assert reproduction.kind == "library", script
    assert "from flax import nnx" in script
    assert ("nnx.Rngs(" in script) if clause.startswith("rng.") else ("nnx.split(" in script)
    assert "nnx_conformance" not in script, "a flax reproduction must not need the suite"
    done = _run(script, tmp_path)
    assert done.returncode == 1, done.stderr
    assert "\nAssertionError: " in done.stderr, done.stderr
    message = done.stderr[done.stderr.rindex("\nAssertionError: ") + len("\nAssertionError: ") :].strip()
    assert message == str(error).strip(), (message, str(error))  # the property's message, every line


def test_the_reproduction_shown_in_the_implementers_guide_runs_and_fails_as_pasted(tmp_path: Path) -> None:
    text = (TESTS.parent / "docs" / "implementers.md").read_text()
    section = text.split("## 7. Reading a failure", 1)[1]
    script = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert "nnx_conformance" not in script
    done = _run(script, tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("AssertionError: the definitions compare equal")


def test_a_subclass_of_a_builtin_adapter_gets_the_adapter_terms_script() -> None:
    """A mutant derived from the core adapter may change any behaviour: core code would reproduce nothing."""
    m = mutants.by_name("union-later-wins")
    reproduction, _ = _reproduce(m.make(), "state.union-laws", "test_union_of_conflicting_states_is_an_error")
    assert reproduction.kind == "adapter"
    assert "from mutants.state import UnionLaterWins" in reproduction.script
    assert "nnx_conformance.core" not in reproduction.script


def test_the_seed_renders_its_own_code(tmp_path: Path) -> None:
    seed = registry.load(registry.resolve("seed"))
    reproduction, _ = _reproduce(seed, "graph.canonical-paths", "test_partition_yields_each_variable_once")
    assert reproduction.kind == "library", reproduction.script
    assert "from nnx_conformance.spec.adapters._tiny_nnx import" in reproduction.script
    assert ".partition()" in reproduction.script
    assert _run(reproduction.script, tmp_path).returncode == 1


@pytest.mark.parametrize(
    ("mutant_id", "clause", "name"),
    [
        ("shared-module-rebuilt-twice", "graph.roundtrip", "test_merge_restores_an_isomorphic_graph"),
        ("count-path-joined-without-separator", "rng.unique", "test_every_key_of_a_program_is_distinct"),
        ("leaves-in-joined-string-order", "state.pytree", "test_state_flattens_to_values_in_canonical_order_and_unflattens_back"),
    ],
)
def test_a_scenario_written_in_core_and_flax_code_passes_where_they_conform(
    mutant_id: str, clause: str, name: str, tmp_path: Path
) -> None:
    """The scenario a mutant failed (a graph merged, an RNG program, a pytree flattened), written in the
    core's and in flax's own code: both implement these clauses correctly, so both scripts exit 0. A
    renderer that misspells an operation or an observation makes its script fail here."""
    import dataclasses

    from nnx_conformance.spec.adapters._render_core import CoreRenderer
    from nnx_conformance.spec.adapters._render_flax import FlaxRenderer

    fn = _recording.instrument(_property(clause, name))
    outcome = run_property(fn, mutants.by_name(mutant_id).make(), shrink=False, derandomize=True)
    rec = _recording.take()
    scenario = rec.scenario(outcome.error, clause, fn.__name__)
    assert scenario is not None
    core = CoreRenderer(dataclasses.replace(scenario, implementation="core")).script()
    assert "from nnx_conformance.core import" in core
    flax_script = FlaxRenderer(dataclasses.replace(scenario, implementation="flax")).script()
    assert "from flax import nnx" in flax_script and "nnx_conformance" not in flax_script
    for label, script in (("core", core), ("flax", flax_script)):
        done = _run(script, tmp_path, f"repro_{label}.py")
        assert done.returncode == 0, f"{label}:\n{done.stderr[-2000:]}\n{script}"


# -- through pytest -----------------------------------------------------------------------------------------


def test_pytest_prints_one_reproduction_for_the_implementation_and_writes_it(tmp_path: Path) -> None:
    out = tmp_path / "repros"
    done = _spec_run(
        tmp_path,
        "--nnx-impl",
        "mutants.graph:SharedModuleRebuiltTwice",
        "--nnx-clause",
        "graph.roundtrip",
        "-k",
        "test_merge_restores_an_isomorphic_graph",
        "--tb=short",
        "--nnx-repro-dir",
        str(out),
    )
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert text.count("reproduction (through the adapter)") == 1, text
    assert "CoreAdapter" not in text, "a script bound to the reference core was printed"
    written = list(out.rglob("*.py"))
    assert [p.relative_to(out).as_posix() for p in written] == [
        "mutants.graph_SharedModuleRebuiltTwice/graph.roundtrip__test_merge_restores_an_isomorphic_graph.py"
    ]
    assert _run(written[0].read_text(), tmp_path).returncode == 1


@pytest.mark.parametrize(
    ("mutant", "clause"),
    [
        ("mutants.sequence:DefinitionCachedPerModule", "sequence.graph"),
        ("mutants.sequence:ContextFrozenAfterJit", "sequence.rng"),
    ],
)
def test_a_failing_history_prints_one_reproduction_that_replays_it(mutant: str, clause: str, tmp_path: Path) -> None:
    """A state machine's shrunk program is the reproduction: once in the report (no second copy in the
    Hypothesis notes), written to the repro dir, failing when run and passing on the core."""
    out = tmp_path / "repros"
    done = _spec_run(
        tmp_path,
        "--nnx-impl",
        mutant,
        "--nnx-clause",
        clause,
        "--tb=short",
        "--nnx-repro-dir",
        str(out),
    )
    text = done.stdout + done.stderr
    assert done.returncode == 1, text
    assert text.count("reproduction (through the adapter)") == 1, text
    assert "# --- reproduction (the steps above" not in text, "the machine's script was printed twice"
    (written,) = out.rglob("*.py")
    script = written.read_text()
    assert _run(script, tmp_path).returncode == 1, script
    module, _, attr = mutant.partition(":")
    on_core = script.replace(
        f"from {module} import {attr}", "from nnx_conformance.spec.adapters.core import CoreAdapter"
    ).replace(f"a = {attr}()", "a = CoreAdapter()")
    assert on_core != script
    assert _run(on_core, tmp_path, "on_core.py").returncode == 0, on_core


def test_a_known_deviation_is_written_too(tmp_path: Path) -> None:
    """flax's renamed-path deviation is an xfail (spec/expectations/flax.txt): not printed, but written."""
    out = tmp_path / "repros"
    done = _spec_run(
        tmp_path,
        "--nnx-impl",
        "flax",
        "--nnx-clause",
        "errors.merge-mismatch",
        "-k",
        "renamed_path",
        "--nnx-repro-dir",
        str(out),
    )
    assert done.returncode == 0 and "1 xfailed" in done.stdout, done.stdout + done.stderr
    (written,) = out.rglob("*.py")
    assert written.relative_to(out).as_posix() == (
        "flax/errors.merge-mismatch__test_merge_and_update_refuse_a_renamed_path.py"
    )
    script = written.read_text()
    assert "from flax import nnx" in script and "nnx_conformance" not in script
    assert _run(script, tmp_path).returncode == 1


def test_a_repro_dir_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nnx-repro-dir", str(blocker), "--co"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 4, done.stdout + done.stderr
    assert "--nnx-repro-dir" in done.stderr and "is a file" in done.stderr


def test_a_failing_check_records_the_condition_the_script_asserts() -> None:
    """``check`` evaluates the condition through the adapter and, when it fails, is where the script ends."""
    from nnx_conformance.spec.properties._helpers import E, check

    impl = registry.load(registry.resolve("core"))
    rec = _recording.start(impl, None, {})
    module = _recording.recording(impl).new_module("A")
    with pytest.raises(AssertionError, match="not the same"):
        check(impl, E.is_(module, E.lit(None)), "not the same")
    assert isinstance(rec.failure, repro.Check)
    scenario = rec.scenario(rec.failure_error, "graph.roundtrip", "test_x")
    assert scenario is not None
    script = repro.reproduce(scenario, impl).script
    assert script.rstrip().endswith("assert m is None, 'not the same'"), script
    assert textwrap.dedent(script).count("class A(Module):") == 1


def test_a_check_over_literals_alone_does_not_end_a_script() -> None:
    """A failing condition that refers to no recorded object (key data converted outside the recording,
    say) would be a script that fails whatever the library does: the scenario is left incomplete instead,
    and the reproduction falls back to the property's own body."""
    from nnx_conformance.spec.properties._helpers import E, check

    impl = registry.load(registry.resolve("core"))
    rec = _recording.start(impl, None, {})
    _recording.recording(impl).new_module("A")
    with pytest.raises(AssertionError, match="equal rows"):
        check(impl, E.py("not np.array_equal({0}, {1})", np.zeros(2), np.zeros(2)), "equal rows")
    assert rec.failure is None
    assert rec.incomplete and "no recorded operation" in rec.incomplete
