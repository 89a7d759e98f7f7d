"""End-to-end tests of the pytest plugin: selection, capability skips, expectations, reports.

Each test writes a tiny suite into a temporary directory with pytester and runs pytest on it in a
subprocess (the plugin is loaded through its entry point, as for a user). The toy adapter is a plain
class so these tests depend on no implementation: they test the plumbing, not NNX semantics.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from nnx_conformance.spec import expectations, registry
from nnx_conformance.spec.report import Conformance, Outcome

TOY_ADAPTER = '''
from nnx_conformance.spec.adapter import Capabilities


class Toy:
    """Claims everything but cycles; ``good`` decides whether its partition is right."""

    name = "toy"
    layers = None
    capabilities = Capabilities(cycles=False, layers=False)
    good = True

    def partition(self, module):
        return (dict(module) if self.good else {}), "def"


for _name in ("new_module", "set_attr", "attrs", "is_module", "type_name", "new_variable", "is_variable",
              "variable_collection", "variable_value", "variable_sharding", "merge", "update",
              "state_items", "make_state", "filter", "union", "new_context", "make_rng", "fork",
              "key_data", "jit", "vmap"):
    setattr(Toy, _name, lambda self, *a, _n=_name, **k: (_ for _ in ()).throw(NotImplementedError(_n)))


class Broken(Toy):
    name = "broken"
    good = False
'''

TOY_SUITE = """
from hypothesis import given, strategies as st

from nnx_conformance.spec.clauses import clause


@clause("graph.roundtrip")
@given(st.dictionaries(st.text(max_size=2), st.integers(), max_size=3))
def test_partition_keeps_entries(impl, d):
    state, _ = impl.partition(d)
    assert state == d


@clause("graph.canonical-paths", needs=("cycles",))
def test_needs_cycles(impl):
    pass


@clause("rng.unique")
def test_always_passes(impl):
    pass


@clause("rng.reproducible")
def test_uses_a_jax_api_this_jax_lacks(impl):
    import jax

    jax.no_such_api_in_this_version()
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(toy_adapter=TOY_ADAPTER, test_toy=TOY_SUITE)
    pytester.syspathinsert()
    return pytester


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", "--nnx-max-examples=20", *args)


def test_reports_pass_fail_and_capability_skip_per_implementation(suite: pytest.Pytester) -> None:
    report = suite.path / "report.json"
    result = _run(suite, "--nnx-impl", "toy_adapter:Toy,toy_adapter:Broken", f"--nnx-report={report}")
    result.assert_outcomes(passed=3, failed=3, skipped=2)
    result.stdout.fnmatch_lines(["*NNX conformance*", "graph.roundtrip*pass*FAIL*"])
    data = json.loads(report.read_text())
    toy = data["implementations"]["toy_adapter:Toy"]["clauses"]
    broken = data["implementations"]["toy_adapter:Broken"]["clauses"]
    assert toy["graph.roundtrip"]["status"] == "pass"
    assert broken["graph.roundtrip"]["status"] == "fail"
    assert toy["graph.canonical-paths"]["status"] == "skip"
    assert toy["rng.unique"]["status"] == "pass"
    # a jax API missing from this jax is the suite's error, never the implementation's failure
    assert toy["rng.reproducible"]["status"] == broken["rng.reproducible"]["status"] == "suite-error"
    assert "no_such_api_in_this_version" in toy["rng.reproducible"]["tests"][0]["message"]
    assert "d={'': 0}" in broken["graph.roundtrip"]["tests"][0]["message"]  # the shrunk example
    assert data["header"]["backend"]
    assert (suite.path / "report.md").read_text().count("| `graph.roundtrip` | pass | **FAIL** |") == 1


def test_capability_skip_names_the_missing_capability(suite: pytest.Pytester) -> None:
    result = _run(suite, "--nnx-impl", "toy_adapter:Toy", "-rs", "-k", "needs_cycles")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*does not claim capability cycles (clause graph.canonical-paths)*"])


def test_env_var_selects_implementation(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NNX_IMPL", "toy_adapter:Broken")
    result = _run(suite, "-k", "keeps_entries")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*test_partition_keeps_entries?toy_adapter:Broken?*"])


def test_expectations_turn_known_failures_into_xfail_and_report_xpass(suite: pytest.Pytester) -> None:
    exp = suite.path / "exp.txt"
    exp.write_text(
        textwrap.dedent(
            """\
            # known deviations of Broken
            graph.roundtrip: partition drops every entry
            rng.unique: listed but passes, so it must show up as xpass
            not.a-clause: a typo that must be warned about
            """
        )
    )
    report = suite.path / "r.json"
    result = _run(
        suite,
        "--nnx-impl",
        "toy_adapter:Broken",
        f"--nnx-expectations=toy_adapter:Broken={exp}",
        f"--nnx-report={report}",
        "-W",
        "default",
    )
    result.assert_outcomes(xfailed=1, xpassed=1, skipped=1, failed=1)
    result.stdout.fnmatch_lines(["*not.a-clause*names no clause or property*"])
    clauses = json.loads(report.read_text())["implementations"]["toy_adapter:Broken"]["clauses"]
    assert clauses["graph.roundtrip"]["status"] == "xfail"
    assert clauses["rng.unique"]["status"] == "xpass"


def test_clause_selection_deselects_other_clauses(suite: pytest.Pytester) -> None:
    result = _run(suite, "--nnx-impl", "toy_adapter:Toy", "--nnx-clause", "rng.unique")
    result.assert_outcomes(passed=1, deselected=3)
    bad = _run(suite, "--nnx-impl", "toy_adapter:Toy", "--nnx-clause", "nope.")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*--nnx-clause 'nope.' names no clause*"])


def test_unknown_implementation_is_a_usage_error(suite: pytest.Pytester) -> None:
    result = _run(suite, "--nnx-impl", "no-such-impl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*unknown implementation 'no-such-impl'*known: core, flax, flax-tree, seed*"])


def test_unimportable_adapter_is_a_usage_error_naming_the_attribute(suite: pytest.Pytester) -> None:
    result = _run(suite, "--nnx-impl", "toy_adapter:Missing", "-k", "always_passes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*has no attribute 'Missing'*"])


def test_xdist_run_reports_the_same_clauses(suite: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    serial, parallel = suite.path / "serial.json", suite.path / "parallel.json"
    args = ("--nnx-impl", "toy_adapter:Toy,toy_adapter:Broken")
    _run(suite, *args, f"--nnx-report={serial}")
    _run(suite, *args, "-n", "2", f"--nnx-report={parallel}")

    def statuses(path):
        impls = json.loads(path.read_text())["implementations"]
        return {name: {c: v["status"] for c, v in info["clauses"].items()} for name, info in impls.items()}

    assert statuses(serial) == statuses(parallel)


# -- units ------------------------------------------------------------------------------------------------


def test_parse_impls_dedups_and_keeps_order() -> None:
    specs = registry.parse_impls("seed, core,seed", environ={})
    assert [s.name for s in specs] == ["seed", "core"]
    assert registry.parse_impls(None, environ={"NNX_IMPL": "flax"})[0].name == "flax"
    assert registry.parse_impls(None, environ={})[0].name == "core"
    with pytest.raises(registry.ImplementationError, match=r"pkg\.module:Attr"):
        registry.resolve("pkg.module:")


def test_expectations_file_errors_name_the_line(tmp_path) -> None:
    path = tmp_path / "e.txt"
    path.write_text("graph.roundtrip: ok\nno reason here\n")
    with pytest.raises(expectations.ExpectationsError, match=r"e.txt:2"):
        expectations.parse(path)
    path.write_text("graph.roundtrip: a\ngraph.roundtrip: b\n")
    with pytest.raises(expectations.ExpectationsError, match="listed twice"):
        expectations.parse(path)


def test_expectations_match_prefers_the_test_name() -> None:
    entries = [
        expectations.Expectation("graph.roundtrip", "clause-wide", "f:1"),
        expectations.Expectation("test_one", "just this one", "f:2"),
    ]
    assert expectations.match(entries, "graph.roundtrip", "test_one").reason == "just this one"
    assert expectations.match(entries, "graph.roundtrip", "test_two").reason == "clause-wide"
    assert expectations.match(entries, "rng.unique", "test_two") is None


def test_clause_status_is_the_worst_of_its_tests() -> None:
    results = Conformance(clause_order=["a.x", "b.y"])
    results.add("impl", "a.x", Outcome("t1", "pass"))
    results.add("impl", "a.x", Outcome("t2", "xfail"))
    results.add("impl", "b.y", Outcome("t3", "skip"))
    assert results.status("impl", "a.x") == "xfail"
    assert results.status("impl", "b.y") == "skip"
    results.add("impl", "a.x", Outcome("t4", "fail", "boom"))
    assert results.status("impl", "a.x") == "fail"
    assert results.counts("impl")["fail"] == 1 and results.counts("impl")["skip"] == 1
    results.add("impl", "a.x", Outcome("t5", "crash", "died"))
    assert results.status("impl", "a.x") == "crash"


def test_a_clause_with_skipped_tests_is_partial_and_says_what_was_not_checked() -> None:
    results = Conformance(clause_order=["a.x"])
    results.add("impl", "a.x", Outcome("t1", "pass"))
    results.add("impl", "a.x", Outcome("t2", "skip", "impl does not claim capability cycles (clause a.x)"))
    assert results.status("impl", "a.x") == "partial"
    assert results.unchecked("impl", "a.x") == ["cycles"]
    assert "partial (not checked: cycles)" in "\n".join(results.terminal_lines())


def test_expected_tests_that_never_reported_are_not_run_or_crash_while_running() -> None:
    results = Conformance(clause_order=["a.x"])
    results.expect("t1", "impl", "a.x")
    results.expect("t2", "impl", "a.x")
    results.add("impl", "a.x", Outcome("t1", "pass"))
    assert results.status("impl", "a.x") == "not run"
    results.running.add("t2")
    data = results.to_json()
    assert data["complete"] is False and data["running"] == ["t2"]
    assert data["implementations"]["impl"]["clauses"]["a.x"]["status"] == "crash"


def test_report_messages_carry_no_addresses_or_worker_ids() -> None:
    results = Conformance(clause_order=["a.x"])
    results.add("impl", "a.x", Outcome("t1", "crash", "[gw3] node down: <Foo object at 0x7f3a2b1c9d00>"))
    (test,) = results.to_json()["implementations"]["impl"]["clauses"]["a.x"]["tests"]
    assert test["message"] == "node down: <Foo object at 0x…>"


def test_report_cli_prints_an_incomplete_run_and_fails(tmp_path, capsys) -> None:
    from nnx_conformance.spec.report import main

    results = Conformance(clause_order=["a.x"])
    results.expect("t1", "impl", "a.x")
    results.running.add("t1")
    results.write(tmp_path / "r.json")
    assert main([str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "INCOMPLETE RUN; running at the end: t1" in out and "crash" in out
