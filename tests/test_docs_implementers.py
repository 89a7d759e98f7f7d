"""docs/implementers.md is executable documentation: its marked blocks run here, so they cannot drift.

The guide marks what a library author copies with an HTML comment right before the fenced block:
``<!-- template: FILE -->`` (a file, written as FILE), ``<!-- command -->`` (the command that runs the spec)
and ``<!-- output: ... -->`` (an error the plugin prints). These tests write the templates into a pytester
directory beside ``mylib.py``, a stand-in for the imaginary library on top of the reference core, and run
them as the guide says: the adapter against the whole spec, the ``conftest.py`` override with the spec
collected beside it and the expectations example, and the CI recipe's command through the entry point.

The entry point is registered the way an installed distribution registers it (a ``*.dist-info`` folder
with ``entry_points.txt`` on ``sys.path``, here the pytester directory): never ``pip install`` into the
shared environment. Only the build step that turns ``pyproject.toml`` into that file is not exercised.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import re
import shlex
from pathlib import Path

import pytest

import nnx_conformance.core  # noqa: F401 -- jax imported before pytester's sys.modules snapshot (jaxlib cannot be re-imported)
from nnx_conformance.spec import checked, expectations, registry, report
from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.spec.clauses import clause_of, registered, spec_clauses

DOC = Path(__file__).resolve().parents[1] / "docs" / "implementers.md"

TEMPLATE = "template: mylib_conformance.py"
CONFTEST = "template: tests/conformance/conftest.py"
SUITE = "template: tests/conformance/test_nnx_spec.py"
PYPROJECT = "template: pyproject.toml"
EXPECTATIONS = "template: nnx-expectations.txt"
WORKFLOW = "template: .github/workflows/nnx-conformance.yml"
COMMAND = "command"
ERROR = "output: layers claimed without a LayersAdapter"
REQUIRED = (TEMPLATE, CONFTEST, SUITE, PYPROJECT, EXPECTATIONS, WORKFLOW, COMMAND, ERROR)

# The imaginary library of the guide, on top of the reference core.
MYLIB = '''
"""mylib: the imaginary NNX-style library of docs/implementers.md (the reference core underneath)."""
import jax

from nnx_conformance.core import Context, Module, State, Variable

__all__ = ["Module", "Rngs", "State", "Variable", "merge", "split", "update"]


def split(module):
    return module.partition()  # (state, graphdef)


def merge(graphdef, state):
    return graphdef.merge(state)


def update(module, state):
    module.update_state(state)


def Rngs(seed):
    """Like ``nnx.Rngs``: an integer seed, or a key (typed, or raw uint32 words on the last axis)."""
    dtype = getattr(seed, "dtype", None)
    is_key = dtype is not None and (
        jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key) or (dtype == jax.numpy.uint32 and seed.ndim >= 1)
    )
    return Context(seed if is_key else jax.random.key(seed))
'''

BUDGET = ("--nnx-max-examples", "5")
PASSING = {"pass", "partial", "skip"}
"""Clause statuses of a conforming implementation (``partial``: passed, some tests skipped)."""
LAYERS_PREFIX = "layers."

_MARKER = re.compile(r"<!--\s*(.*?)\s*-->")
_FENCE = re.compile(r"\s*\n```[\w-]*\n(.*?)^```", re.S | re.M)


def _blocks() -> dict[str, str]:
    """Marker -> the fenced block right after it; a marker followed by anything else fails loudly."""
    text = DOC.read_text(encoding="utf-8")
    blocks: dict[str, str] = {}
    for marker in _MARKER.finditer(text):
        fence = _FENCE.match(text, marker.end())
        if fence is None:
            pytest.fail(f"{DOC}: the marker <!-- {marker[1]} --> must be followed by a fenced code block")
        if marker[1] in blocks:
            pytest.fail(f"{DOC}: the marker <!-- {marker[1]} --> appears twice")
        blocks[marker[1]] = fence[1]
    return blocks


def block(name: str) -> str:
    blocks = _blocks()
    if name not in blocks:
        pytest.fail(
            f"{DOC} has no <!-- {name} --> marker; the tested block must follow it directly "
            f"(markers found: {', '.join(blocks) or 'none'})"
        )
    return blocks[name]


def _argv(command: str) -> list[str]:
    """A documented ``pytest ...`` command as pytester arguments (``-n auto`` becomes ``-n 2``)."""
    argv = shlex.split(command.strip())
    assert argv[0] == "pytest", f"the documented command should start with pytest: {command!r}"
    argv = argv[1:]
    if "-n" in argv:
        argv[argv.index("-n") + 1] = "2"
    return ["-p", "no:cacheprovider", *argv]


def _clause_of(prop: object) -> str:
    tag = clause_of(prop)
    assert tag is not None, prop
    return tag.id


def _report(path: Path) -> dict[str, dict[str, str]]:
    """Implementation -> clause -> status, from a ``--nnx-report`` JSON."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        name: {cid: c["status"] for cid, c in impl["clauses"].items()}
        for name, impl in data["implementations"].items()
    }


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    pytester.makepyfile(mylib=MYLIB, mylib_conformance=block(TEMPLATE))
    return pytester


@pytest.fixture
def template(project: pytest.Pytester) -> type:
    """The template's ``Adapter`` class, imported here (pytester restores sys.path and sys.modules)."""
    project.syspathinsert()
    return importlib.import_module("mylib_conformance").Adapter


def test_every_tested_block_is_marked() -> None:
    blocks = _blocks()
    missing = [m for m in REQUIRED if m not in blocks]
    assert not missing, f"{DOC}: no <!-- {' -->, <!-- '.join(missing)} --> marker before a fenced block"


def test_template_is_a_valid_adapter_without_layers(template: type) -> None:
    adapter = template()
    assert checked.problems(adapter) == []
    assert adapter.capabilities.layers is False and adapter.layers is None
    assert adapter.name == "mylib"


def test_documented_error_is_what_the_plugin_says(template: type) -> None:
    claims_layers = type("Adapter", (template,), {"capabilities": Capabilities()})
    target = block(COMMAND).split("--nnx-impl", 1)[1].split()[0]
    with pytest.raises(checked.AdapterError) as err:
        checked.validate(claims_layers(), target)
    assert block(ERROR).strip() == f"ERROR: --nnx-impl {target}: {err.value}"


def test_template_passes_the_whole_spec(project: pytest.Pytester) -> None:
    """The documented command, with a small budget and two workers: nothing fails, layers.* are skipped."""
    argv = _argv(block(COMMAND))
    result = project.runpytest_subprocess(*argv, *BUDGET, timeout=600)
    outcomes = result.parseoutcomes()
    assert set(outcomes) <= {"passed", "skipped"} and outcomes.get("passed"), (
        outcomes,
        result.stdout.str()[-5000:],
    )
    assert result.ret == pytest.ExitCode.OK
    report = project.path / argv[argv.index("--nnx-report") + 1]
    assert report.with_suffix(".md").is_file()
    (statuses,) = _report(report).values()
    assert set(statuses) == set(spec_clauses())
    layers = {cid: s for cid, s in statuses.items() if cid.startswith(LAYERS_PREFIX)}
    assert layers and set(layers.values()) == {"skip"}, layers
    assert {s for cid, s in statuses.items() if cid not in layers} <= PASSING, statuses


def test_expectations_example_names_real_clauses_and_properties(tmp_path: Path) -> None:
    path = tmp_path / "nnx-expectations.txt"
    path.write_text(block(EXPECTATIONS), encoding="utf-8")
    entries = expectations.parse(path)
    assert entries
    known = set(spec_clauses()) | set(registered())
    assert [e.key for e in entries if e.key not in known] == []


def test_conftest_override_collects_the_spec_beside_it(project: pytest.Pytester) -> None:
    """The override files as shown, run as shown, with the expectations example matched by adapter name."""
    for name in (CONFTEST, SUITE, EXPECTATIONS):
        path = project.path / name.partition(": ")[2]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(block(name), encoding="utf-8")
    entries = expectations.parse(project.path / "nnx-expectations.txt")
    clauses = {e.key if e.key in spec_clauses() else _clause_of(registered()[e.key]) for e in entries}
    select = [arg for cid in [*sorted(clauses), LAYERS_PREFIX] for arg in ("--nnx-clause", cid)]
    result = project.runpytest_subprocess(
        "-p", "no:cacheprovider", "-n", "2", "tests/conformance", *select, *BUDGET,
        "--nnx-expectations", "mylib=nnx-expectations.txt", "--nnx-report", "nnx.json", timeout=600,
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    assert set(outcomes) <= {"passed", "skipped", "xpassed", "deselected"}, (
        outcomes,
        result.stdout.str()[-5000:],
    )
    assert result.ret == pytest.ExitCode.OK
    statuses = _report(project.path / "nnx.json")
    assert list(statuses) == ["mylib"], statuses  # named by the adapter's name
    mine = statuses["mylib"]
    # The stand-in does not deviate, so every listed deviation is an XPASS: the entries were applied.
    assert {mine[cid] for cid in clauses} == {"xpass"}, mine
    assert {s for cid, s in mine.items() if cid.startswith(LAYERS_PREFIX)} == {"skip"}, mine


def test_ci_recipe_runs_through_the_entry_point(
    project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workflow's pytest step, with ``mylib`` registered as the pyproject snippet says."""
    tomllib = pytest.importorskip("tomllib")
    groups = tomllib.loads(block(PYPROJECT))["project"]["entry-points"]
    assert list(groups) == [registry.ENTRY_POINT_GROUP], groups
    (name, target), *_ = groups[registry.ENTRY_POINT_GROUP].items()
    assert f"--nnx-impl {target}" in block(COMMAND)  # the same adapter the main command runs
    info = project.path / "mylib_conformance-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mylib-conformance\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{registry.ENTRY_POINT_GROUP}]\n{name} = {target}\n")

    workflow = block(WORKFLOW)
    runs = re.findall(r"^\s*- run: (.*)$", workflow, re.M)
    # `pip install -e .` installs the user's library, which registers the entry point.
    assert any("pip install -e ." in r for r in runs), runs
    (step,) = [r for r in runs if r.startswith("pytest")]
    env = dict(re.findall(r'^\s+(\w+): "([^"]*)"', workflow.split("steps:")[0], re.M))
    for key, value in env.items():  # the job's env (CI: Hypothesis' derandomized `ci` profile)
        monkeypatch.setenv(key, value)
    argv = _argv(step)
    assert argv[argv.index("--nnx-impl") + 1] == name
    result = project.runpytest_subprocess(*argv, "--nnx-clause", "graph.roundtrip", *BUDGET, timeout=600)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()[-5000:]
    written = sorted(
        p.name for p in project.path.iterdir() if p.is_file() and p.name.startswith("nnx-report")
    )
    (pattern,) = re.findall(r'path: "([^"]+)"', workflow)
    assert written == sorted(fnmatch.filter(written, pattern)) and len(written) == 2, (written, pattern)
    assert _report(project.path / argv[argv.index("--nnx-report") + 1])[name]["graph.roundtrip"] == "pass"


def test_docs_name_only_real_options_and_clauses(pytestconfig: pytest.Config) -> None:
    text = DOC.read_text(encoding="utf-8")
    for option in sorted(set(re.findall(r"--nnx-[a-z-]+", text))):
        try:
            pytestconfig.getoption(option)
        except ValueError:
            pytest.fail(f"{DOC} documents {option}, which the plugin does not define")
    families = {cid.split(".", 1)[0] for cid in spec_clauses()}
    named = set(re.findall(rf"`((?:{'|'.join(families)})\.[a-z-]+)`", text))
    assert named - set(spec_clauses()) == set(), "clause ids in the guide that SPEC.md does not define"


def test_docs_explain_every_status_of_the_report() -> None:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## 4. Read the result")
    section = text[start : text.index("\n## ", start + 1)]
    shown = {word.lower() for word in re.findall(r"`([^`]+)`", section)}
    missing = [s for s in report.STATUSES if s not in shown]
    assert not missing, f"{DOC}, section 4 does not explain the report's status(es) {missing}"
