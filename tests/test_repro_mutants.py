"""Every mutant's reproduction reproduces it: written to a file and run with ``python``, it exits non-zero.

For a mutant, the properties of its clause run against it as in ``tests/test_mutants.py`` (the ``ci``
profile's seeds, no shrinking: the verdict, not the size, matters here) until one catches it; the failure's
reproduction (``nnx_conformance.spec.repro``) is written to a file and run in a fresh interpreter with
``tests/`` on ``PYTHONPATH`` (mutants are importable from there). It must exit non-zero, and it must be a
reproduction -- a step-by-step script or the property called on its failing arguments -- not the "could not
write one" placeholder.

A script that fails for any implementation would pass that test, so each one also has a *control*: the
same scenario written for the correct adapter the mutant breaks (:attr:`mutants.Mutant.control`: the
reference core, or the tree-only base of the ``errors.unsupported-structure`` mutants, which the core is
not -- it claims the structures they must refuse), which must exit 0. A few mutants have no meaningful
control, listed in :data:`NO_CONTROL` with the reason.

CI runs a sample (one mutant per kind of reproduction: graph, refusal, state laws, pytree, RNG program,
sharding inside traced bodies, the property on its arguments); ``python benchmarks/kill_matrix.py
--reproductions DIR`` runs the whole catalogue (:func:`check_mutant` for each, shrunk, in a table).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import mutants
import pytest
from mutants.harness import run_property

from nnx_conformance.spec import _recording, _render, repro
from nnx_conformance.spec._repro_hooks import reproduction_for
from nnx_conformance.spec.clauses import properties

TESTS = Path(__file__).resolve().parent

NO_CONTROL = {
    "merge-returns-the-source-module": "merge hands back the partitioned module itself, so the script names one "
    "object twice (`merged is root`); on the core they are two objects and the check reads the other one",
    "deep-chains-crash-the-interpreter": "the beyond-depth check applies below a declared max_depth of 10,000: "
    "on the core it skips",
}
"""Mutants whose reproduction has no meaningful run on their correct base, and why."""

SAMPLE = (
    "shared-module-rebuilt-twice",  # a graph, merge, an identity check
    "def-statics-compared-by-equality",  # two graphs, definitions compared
    "merge-ignores-extra-paths",  # a state that must be refused
    "cycle-recurses-until-recursion-error",  # checks run in the sandbox interpreter; a tree-only control
    "union-later-wins",  # a conflict resolved silently
    "leaves-in-joined-string-order",  # pytree leaves of a state
    "count-path-joined-without-separator",  # an RNG program
    "update-drops-sharding",  # sharding read back after update
    "traced-derivation-reverses-path",  # checks inside jit: the property on its arguments
    "definition-cached-per-module",  # a state-machine history, recorded step by step
    "context-frozen-after-jit",  # a state-machine history with jit steps: the machine's own script
)


@dataclasses.dataclass
class Result:
    """One mutant's reproduction, run."""

    mutant: str
    prop: str = ""
    """The property that caught it."""
    kind: str = "none"
    returncode: int | None = None
    control: int | None = None
    """The control script's exit status on the mutant's correct base (``None``: no control)."""
    last_line: str = ""
    reason: str = ""
    seconds: float = 0.0
    path: Path | None = None

    @property
    def ok(self) -> bool:
        control_ok = self.control == 0 or (self.control is None and self.mutant.removeprefix("mutant:") in NO_CONTROL)
        return self.kind != "partial" and bool(self.returncode) and control_ok


def environment() -> dict[str, str]:
    """The scripts' environment: ``tests/`` importable (the mutants live there), the CPU backend."""
    path = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}


def run_scripts(paths: list[Path], timeout: float = 600) -> list[subprocess.CompletedProcess[str]]:
    """Run each script with ``python`` (two at a time)."""

    def run(path: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(path)], env=environment(), capture_output=True, text=True, timeout=timeout
        )

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(run, paths))


def _control(
    reproduction: repro.Reproduction,
    scenario: repro.Scenario | None,
    fn: Any,
    kwargs: dict[str, Any],
    own_script: Any,
    control: str,
) -> str | None:
    """The same reproduction for the adapter ``control`` (an import spec): the scenario with that
    adapter, the property's own script (a state machine's steps) with it, or the property called with it."""
    if reproduction.kind == "adapter" and scenario is not None and not reproduction.reason:
        return _render.ScriptRenderer(dataclasses.replace(scenario, adapter=control)).script()
    if reproduction.kind == "adapter" and own_script is not None:
        return str(own_script(control))
    if reproduction.kind == "property":
        return _render.property_script(
            f"{fn.__module__}:{fn.__name__}",
            kwargs,
            control,
            implementation=control,
            clause=None,
            hypothesis=hasattr(fn, "hypothesis"),
        )
    return None


def check_mutant(m: mutants.Mutant, directory: Path, *, shrink: bool = False) -> Result:
    """Catch ``m`` with its clause's properties, write its reproduction (and the control, on ``m.control``)
    under ``directory`` and run them."""
    started = time.perf_counter()
    impl = m.make()
    fns = properties()[m.catches]
    named = {fn.__name__: fn for fn in fns}
    for fn in [named[n] for n in m.by] if m.by else fns:
        _recording.instrument(fn)
        outcome = run_property(fn, impl, shrink=shrink, derandomize=True)
        if outcome.caught_by(m.symptoms):
            break
    else:
        return Result(m.name, reason="not caught")
    rec = _recording.take()
    scenario = rec.scenario(outcome.error, m.catches, fn.__name__) if rec is not None and rec.test is fn else None
    kwargs = rec.kwargs if rec is not None and rec.test is fn else {}
    own_script = rec.own_script if rec is not None and rec.test is fn else None
    reproduction = reproduction_for(fn, impl, outcome.error, m.catches, fn.__name__)
    path = repro.write(directory, m.name, m.catches, fn.__name__, reproduction.script)
    paths = [path]
    control = _control(reproduction, scenario, fn, kwargs, own_script, m.control)
    if control is not None and m.id not in NO_CONTROL:
        paths.append(repro.write(directory / "control", m.name, m.catches, fn.__name__, control))
    runs = run_scripts(paths)
    return Result(
        m.name,
        fn.__name__,
        reproduction.kind,
        runs[0].returncode,
        runs[1].returncode if len(runs) > 1 else None,
        (runs[0].stderr.strip().splitlines() or [""])[-1][:200],
        reproduction.reason,
        time.perf_counter() - started,
        path,
    )


_BY_ID = {m.id: m for m in mutants.load()}


@pytest.mark.parametrize("mutant_id", SAMPLE)
def test_the_reproduction_of_a_mutant_fails_on_it_and_passes_on_its_correct_base(mutant_id: str, tmp_path: Path) -> None:
    result = check_mutant(_BY_ID[mutant_id], tmp_path)
    script = result.path.read_text() if result.path else ""
    assert result.kind in ("adapter", "property"), f"{mutant_id}: a {result.kind} reproduction ({result.reason})\n{script}"
    assert result.returncode, f"{mutant_id}: the reproduction exits 0 on the mutant\n{script}"
    base = _BY_ID[mutant_id].control
    assert result.control == 0, f"{mutant_id}: the same scenario fails on {base} too (exit {result.control})\n{script}"


def test_the_sample_covers_every_kind_of_reproduction() -> None:
    """The CI sample spans the shapes a reproduction takes; the whole catalogue is kill_matrix's job."""
    families = {_BY_ID[i].family for i in SAMPLE}
    assert {"graph", "state", "rng", "errors", "sharding", "sequence"} <= families
    assert all(i in _BY_ID for i in SAMPLE)
