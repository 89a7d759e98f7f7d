"""The wheel installs only namespaced packages and carries the files the spec reads at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    pytest.importorskip("setuptools")
    out = tmp_path_factory.mktemp("wheel")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    (path,) = out.glob("nnx_conformance-*.whl")
    return zipfile.ZipFile(path)


def test_wheel_installs_only_under_the_nnx_conformance_namespace(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/", 1)[0] for name in wheel.namelist()}
    assert {t for t in top if not t.endswith(".dist-info")} == {"nnx_conformance"}


def test_wheel_carries_the_spec_text_and_expectations(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    assert "nnx_conformance/spec/SPEC.md" in names
    assert "nnx_conformance/core/py.typed" in names
    for expected in (ROOT / "spec" / "expectations").glob("*.txt"):
        assert f"nnx_conformance/spec/expectations/{expected.name}" in names
    for source in ROOT.glob("spec/**/*.py"):
        rel = source.relative_to(ROOT / "spec").as_posix()
        assert f"nnx_conformance/spec/{rel}" in names, f"{rel} is missing from the wheel"


def test_wheel_registers_the_pytest_plugin_and_builtin_adapters(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    text = wheel.read(entry_points).decode()
    assert "[pytest11]" in text and "nnx_conformance.spec.plugin" in text
    for name in ("core", "seed", "flax"):
        assert f"{name} = nnx_conformance.spec.adapters.{name}:" in text
