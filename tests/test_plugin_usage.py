"""A user's mistakes end the run at once with one clear error, serially and under xdist alike.

Every ``--nnx-*`` option, expectations file and named adapter is checked in ``pytest_configure`` of the
controlling process (:mod:`nnx_conformance.spec.options`), so each problem below must give exit code 4
(``pytest.UsageError``), a message that names what is wrong, and no INTERNALERROR wall -- also with
``-n 2``, where checks made during collection used to fail once per worker.
"""

from __future__ import annotations

import pytest

TOY = '''
from nnx_conformance.spec.adapter import Capabilities


def _unused(self, *args, **kwargs):
    raise NotImplementedError


class Toy:
    name = "toy"
    layers = None
    capabilities = Capabilities(cycles=False, layers=False)


for _name in ("new_module", "set_attr", "attrs", "is_module", "type_name", "new_variable", "is_variable",
              "variable_collection", "variable_value", "variable_sharding", "partition", "merge", "update",
              "state_items", "make_state", "filter", "union", "new_context", "make_rng", "fork",
              "key_data", "jit", "vmap"):
    setattr(Toy, _name, _unused)


class DictCapabilities(Toy):
    capabilities = {"cycles": False}


class ClaimsLayersWithout(Toy):
    capabilities = Capabilities()


class NoPartition:
    name = "nopartition"
    layers = None
    capabilities = Capabilities(layers=False)


class RaisesInInit(Toy):
    def __init__(self):
        raise RuntimeError("the adapter needs MYLIB_HOME")
'''

SUITE = """
from nnx_conformance.spec.clauses import clause


@clause("rng.unique")
def test_always_passes(impl):
    pass
"""


@pytest.fixture
def toy(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(toy_adapter=TOY, test_toy=SUITE)
    pytester.makepyfile(raising_module='raise RuntimeError("mylib is not configured")')
    pytester.syspathinsert()
    (pytester.path / "exp_ok.txt").write_text("rng.unique: listed\n")
    (pytester.path / "exp_bad.txt").write_text("rng.unique listed without a colon\n")
    (pytester.path / "exp_dup.txt").write_text("rng.unique: a\nrng.unique: b\n")
    (pytester.path / "exp.bin").write_bytes(b"\x00\x01\x02binary\xff")
    (pytester.path / "a_dir").mkdir()
    (pytester.path / "a_file").write_text("")
    return pytester


TOY_IMPL = ("--nnx-impl", "toy_adapter:Toy")

# (arguments, text the one error line must hold)
CASES = {
    "unknown-clause": ((*TOY_IMPL, "--nnx-clause", "graph.roundtrp"), "*--nnx-clause 'graph.roundtrp' names no clause*"),
    "unknown-impl": (("--nnx-impl", "no-such-impl"), "*unknown implementation 'no-such-impl'*known: core, flax, flax-tree, seed*"),
    "missing-module": (("--nnx-impl", "no_such_pkg.adapter:Adapter"), "*cannot import 'no_such_pkg.adapter'*No module named*"),
    "module-raises": (("--nnx-impl", "raising_module:Adapter"), "*importing 'raising_module'*raised RuntimeError: mylib is not configured*"),
    "init-raises": (("--nnx-impl", "toy_adapter:RaisesInInit"), "*RaisesInInit()*raised RuntimeError: the adapter needs MYLIB_HOME*"),
    "missing-attr": (("--nnx-impl", "toy_adapter:Missing"), "*has no attribute 'Missing'*"),
    "dict-capabilities": (("--nnx-impl", "toy_adapter:DictCapabilities"), "*capabilities*dict*Capabilities(*"),
    "layers-claimed-but-none": (("--nnx-impl", "toy_adapter:ClaimsLayersWithout"), "*layers*"),
    "missing-methods": (("--nnx-impl", "toy_adapter:NoPartition"), "*partition*"),
    "expectations-missing": ((*TOY_IMPL, "--nnx-expectations", "toy=nope.txt"), "*nope.txt: no such file*"),
    "expectations-dir": ((*TOY_IMPL, "--nnx-expectations", "toy=a_dir"), "*a_dir: is a directory*"),
    "expectations-binary": ((*TOY_IMPL, "--nnx-expectations", "toy=exp.bin"), "*exp.bin: is a binary file*"),
    "expectations-malformed": ((*TOY_IMPL, "--nnx-expectations", "toy=exp_bad.txt"), "*exp_bad.txt:1: expected 'clause.id: reason'*"),
    "expectations-duplicate-key": ((*TOY_IMPL, "--nnx-expectations", "toy=exp_dup.txt"), "*exp_dup.txt:2: 'rng.unique' is listed twice*"),
    "expectations-duplicate-name": (
        (*TOY_IMPL, "--nnx-expectations", "toy=exp_ok.txt", "--nnx-expectations", "toy=exp_ok.txt"),
        "*names 'toy' twice*",
    ),
    "expectations-not-in-run": ((*TOY_IMPL, "--nnx-expectations", "mylib=exp_ok.txt"), "*'mylib' names no implementation of this run*"),
    "expectations-no-equals": ((*TOY_IMPL, "--nnx-expectations", "exp_ok.txt"), "*takes NAME=PATH*"),
    "report-markdown": ((*TOY_IMPL, "--nnx-report", "out/x.md"), "*give the JSON path*x.json*"),
    "report-directory": ((*TOY_IMPL, "--nnx-report", "a_dir"), "*a_dir: is a directory*"),
    "report-unwritable": ((*TOY_IMPL, "--nnx-report", "a_file/x.json"), "*cannot write there*"),
    "max-examples": ((*TOY_IMPL, "--nnx-max-examples", "0"), "*--nnx-max-examples must be a positive*"),
}

# The same mechanism serves every case under xdist; these cover each kind of check.
XDIST_CASES = ["unknown-clause", "module-raises", "dict-capabilities", "expectations-binary", "report-markdown"]


def _check_usage_error(result: pytest.RunResult, pattern: str) -> None:
    output = result.stdout.lines + result.stderr.lines
    assert result.ret == pytest.ExitCode.USAGE_ERROR, "\n".join(output)
    assert not any("INTERNALERROR" in line for line in output), "\n".join(output)
    result.stderr.fnmatch_lines([pattern])
    assert len([line for line in output if line.strip()]) <= 12, "\n".join(output)


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_usage_error(toy: pytest.Pytester, case: str) -> None:
    args, pattern = CASES[case]
    _check_usage_error(toy.runpytest_subprocess("-p", "no:cacheprovider", *args), pattern)


@pytest.mark.parametrize("case", XDIST_CASES)
def test_bad_input_is_one_usage_error_under_xdist(toy: pytest.Pytester, case: str) -> None:
    pytest.importorskip("xdist")
    args, pattern = CASES[case]
    _check_usage_error(toy.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", *args), pattern)


def test_expectations_match_the_adapters_name_as_the_docs_show(toy: pytest.Pytester) -> None:
    result = toy.runpytest_subprocess(
        "-p", "no:cacheprovider", *TOY_IMPL, "--nnx-expectations", "toy=exp_ok.txt", "-W", "error"
    )
    result.assert_outcomes(xpassed=1)


def test_expectations_match_the_implementation_as_written(toy: pytest.Pytester) -> None:
    result = toy.runpytest_subprocess(
        "-p", "no:cacheprovider", *TOY_IMPL, "--nnx-expectations", "toy_adapter:Toy=exp_ok.txt"
    )
    result.assert_outcomes(xpassed=1)


def test_unknown_key_in_expectations_is_warned_once(toy: pytest.Pytester) -> None:
    (toy.path / "exp_typo.txt").write_text("rng.uniqe: a typo\n")
    result = toy.runpytest_subprocess("-p", "no:cacheprovider", *TOY_IMPL, "--nnx-expectations", "toy=exp_typo.txt")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*'rng.uniqe' names no clause or property*"])


def test_report_is_written_by_the_controller_only(toy: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    report = toy.path / "out" / "nnx.json"
    result = toy.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", *TOY_IMPL, f"--nnx-report={report}")
    result.assert_outcomes(passed=1)
    assert report.exists() and report.with_suffix(".md").exists()
    result.stdout.fnmatch_lines(["report: *nnx.json, *nnx.md"])
