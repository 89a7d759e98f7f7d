"""benchmarks/flax_releases.py: its CI recipe, and the report it wrote in docs/flax_releases.md.

Running the releases is the benchmark's job (a venv and a spec run each); here: the recipe printed in the
docs is the one the script renders from its release list, it names only built-in adapters and the jax
pins the releases were measured with, and the report covers every release, clean.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import sys
from pathlib import Path

from nnx_conformance.spec import registry

ROOT = Path(__file__).resolve().parent.parent
_PATH = ROOT / "benchmarks" / "flax_releases.py"
_spec = importlib.util.spec_from_file_location("_nnx_benchmark_flax_releases", _PATH)
assert _spec is not None and _spec.loader is not None
flax_releases = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = flax_releases  # dataclasses look their module up while the class is created
_spec.loader.exec_module(flax_releases)

DOC = ROOT / "docs" / "flax_releases.md"


def test_the_docs_print_the_recipe_the_script_renders():
    assert flax_releases.recipe() in DOC.read_text(encoding="utf-8")


def test_the_recipe_pins_each_release_to_its_jax_and_runs_built_in_adapters():
    rows = re.findall(r'- \{ flax: "([^"]+)", jax: "([^"]+)", impl: "([^"]+)" \}', flax_releases.recipe())
    expected = [
        (f"flax=={r.flax}", r.pins[0].removeprefix("jax=="), "flax,flax-tree" if r.tree_mode else "flax")
        for r in flax_releases.RELEASES
    ]
    assert rows[: len(expected)] == expected
    assert rows[-1][0] == "-e ." and len(rows) == len(expected) + 1
    for release in flax_releases.RELEASES:
        (jax,) = [p for p in release.pins if p.startswith("jax==")]
        assert f"jaxlib=={jax.removeprefix('jax==')}" in release.pins  # jax and jaxlib move together
    for _, _, impls in rows:
        for name in impls.split(","):
            assert name in registry.BUILTINS, name


def test_the_recipe_runs_the_documented_spec_command():
    (command,) = [
        line.split("- run: ", 1)[1]
        for line in flax_releases.recipe().splitlines()
        if "- run: pytest" in line
    ]
    words = shlex.split(command)
    assert words[:4] == ["pytest", "-n", "auto", "--pyargs"] and "nnx_conformance.spec" in words
    assert "--nnx-report" in words


def test_the_report_covers_every_release_and_each_ended_clean():
    text = DOC.read_text(encoding="utf-8")
    for release in flax_releases.RELEASES:
        (row,) = [line for line in text.splitlines() if line.startswith(f"| flax {release.flax} |")]
        assert "| 0 (clean) |" in row, row
    assert "**fail**" not in text and "**crash**" not in text and "**not run**" not in text
