"""The spec against several flax releases, each in its own venv with the jax of its time. A report, not a test.

flax sets no upper bound on jax, so ``pip install flax==0.10.7`` alone pairs an old flax with the newest
jax, which it does not run on. Each release here is installed beside the jax it was released with (the
pins in :data:`RELEASES`), in a venv of its own under ``--venvs`` (created on first use, reused after),
with this checkout installed editable. Then, in that venv::

    python -m pytest spec -n JOBS --nnx-impl flax[,flax-tree] --nnx-report DIR/flax-VERSION.json

runs the whole spec through the one ``flax`` adapter (feature detection picks the API and the
expectations file, ``spec/adapters/_flax_features.py``), and the verdicts of every clause are tabulated
per release. A release "ends clean" when pytest exits 0: every deviation is listed, with its reason, in
the expectations file the adapter chose.

    python benchmarks/flax_releases.py --out docs/flax_releases.md
    python benchmarks/flax_releases.py --release 0.11.2 --venvs /tmp/flax-venvs --jobs 2

Needs the package index (pip) the first time a venv is made. Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Release:
    flax: str
    pins: tuple[str, ...]
    """The jax packages installed with it: the newest release of the flax release's time that it runs on."""
    tree_mode: bool = False
    """Whether the release has tree mode (``graph=False``), so ``flax-tree`` runs too."""


RELEASES = (
    Release("0.10.7", ("jax==0.6.2", "jaxlib==0.6.2")),
    Release("0.11.2", ("jax==0.7.1", "jaxlib==0.7.1")),
    Release("0.12.8", ("jax==0.10.2", "jaxlib==0.10.2"), tree_mode=True),
)


@dataclasses.dataclass
class Run:
    release: Release
    impls: tuple[str, ...]
    exit_status: int
    wall_s: float
    cpu_s: float
    """User + system CPU time of the pytest process tree: unlike wall time, not inflated by a busy machine."""
    summary: str
    """pytest's last line (``60 passed, 3 skipped, 14 xfailed in 61.62s``)."""
    report: dict[str, Any]


def _venv_python(venvs: Path, release: Release) -> Path:
    venv = venvs / f"flax-{release.flax}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]", f"flax=={release.flax}", *release.pins],
            check=True,
        )
    return python


def _run(python: Path, release: Release, jobs: int, out_dir: Path) -> Run:
    impls = ("flax", "flax-tree") if release.tree_mode else ("flax",)
    report = out_dir / f"flax-{release.flax}.json"
    command = [
        str(python), "-m", "pytest", "spec", "-q", "-p", "no:cacheprovider", "-n", str(jobs),
        "--nnx-impl", ",".join(impls), "--nnx-report", str(report),
    ]  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    print(f"flax {release.flax}: {' '.join(command)}", flush=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    summary = lines[-1].strip("= ") if lines else done.stderr.strip()[-300:]
    print(f"  exit {done.returncode} in {wall:.0f} s: {summary}", flush=True)
    data = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    run = Run(release, impls, done.returncode, wall, cpu, summary, data)
    _run_file(out_dir, release).write_text(json.dumps(_saved(run)), encoding="utf-8")
    return run


def _run_file(out_dir: Path, release: Release) -> Path:
    return out_dir / f"flax-{release.flax}.run.json"


def _saved(run: Run) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(run).items() if k != "release"}


def _load(out_dir: Path, release: Release) -> Run | None:
    """The last run of ``release`` saved under ``out_dir`` (for ``--keep``), if any."""
    path = _run_file(out_dir, release)
    if not path.exists():
        return None
    saved = json.loads(path.read_text(encoding="utf-8"))
    return Run(release=release, **{**saved, "impls": tuple(saved["impls"])})


def _columns(runs: list[Run]) -> list[tuple[str, Run, str]]:
    return [(f"{impl} {run.release.flax}", run, impl) for run in runs for impl in run.impls]


def render(runs: list[Run], jobs: int, note: str = "") -> str:
    columns = _columns(runs)
    clauses: list[str] = []
    for _, run, impl in columns:
        for cid in run.report.get("implementations", {}).get(impl, {}).get("clauses", {}):
            if cid not in clauses:
                clauses.append(cid)
    lines = [
        "# The spec on flax releases",
        "",
        "Generated by `python benchmarks/flax_releases.py` (not a test). Each release runs in a venv of its own,",
        "with the jax it was released with, and this checkout installed editable; one `flax` adapter serves",
        "them all by feature detection (`spec/adapters/_flax_features.py`), which also picks the expectations",
        "file (`spec/expectations/flax-0.10.txt` where a State holds `VariableState` snapshots, `flax.txt`",
        "where it holds the module's Variables).",
        "",
        f"* {platform.system()} {platform.machine()}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPU(s), `-n {jobs}`, {time.strftime('%Y-%m-%d')}; the CPU backend everywhere.",
        *([f"* {note}"] if note else []),
        "",
        "| release | installed with | command | exit | wall | CPU | pytest |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        impls = ",".join(run.impls)
        lines.append(
            f"| flax {run.release.flax} | `{' '.join(run.release.pins)}` | `--nnx-impl {impls}` | "
            f"{run.exit_status}{' (clean)' if run.exit_status == 0 else ''} | {run.wall_s:.0f} s | {run.cpu_s:.0f} s | {run.summary} |"
        )
    lines += [
        "",
        "## Verdicts per clause",
        "",
        "`xfail`: a known deviation, listed with its reason in the expectations file the adapter chose;",
        "`partial`: passed where checked, some properties skipped for a capability the adapter disclaims;",
        "`skip`: nothing checked (a disclaimed capability).",
        "",
        "| clause | " + " | ".join(label for label, _, _ in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for cid in clauses:
        cells = []
        for _, run, impl in columns:
            clause = run.report.get("implementations", {}).get(impl, {}).get("clauses", {}).get(cid)
            status = clause["status"] if clause else "—"
            cells.append(f"**{status}**" if status in ("fail", "crash", "xpass", "not run") else status)
        lines.append(f"| `{cid}` | " + " | ".join(cells) + " |")
    differ = [
        cid
        for cid in clauses
        if len(
            {
                run.report["implementations"][impl]["clauses"].get(cid, {}).get("status")
                for _, run, impl in columns
                if impl == "flax" and run.report
            }
        )
        > 1
    ]
    lines += [
        "",
        "Graph-mode clauses whose verdict differs between releases: "
        + (", ".join(f"`{c}`" for c in differ) if differ else "none")
        + ".",
        "",
        "## Gating flax on the spec",
        "",
        "A matrix over the (flax, jax) pairs above, plus the checkout under test; each job ends clean",
        "exactly when the release conforms up to its expectations file, which the adapter picks itself:",
        "",
        recipe(),
        "",
        "A new release goes into `RELEASES` in `benchmarks/flax_releases.py` with its jax pin; a verdict that",
        "changes with it is a change to the expectations (a deviation fixed: remove its line; a new one: a",
        "bug to file, or a line with its reason, selected by a feature in `expectations_file`).",
        "",
    ]
    return "\n".join(lines)


def recipe(releases: tuple[Release, ...] = RELEASES) -> str:
    """A GitHub Actions workflow with which flax's maintainers could gate flax itself: the spec against
    every (flax, jax) pair of :data:`RELEASES`, and against the flax checkout under test with each jax."""
    rows = "\n".join(
        f'          - {{ flax: "flax=={r.flax}", jax: "{r.pins[0].split("==")[1]}", '
        f'impl: "{"flax,flax-tree" if r.tree_mode else "flax"}" }}'
        for r in releases
    )
    newest = releases[-1]
    return f"""<!-- template: .github/workflows/nnx-conformance-flax.yml -->
```yaml
name: nnx-conformance
on: [push, pull_request]
jobs:
  spec:
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false    # one release's deviation must not hide another's
      matrix:
        include:
{rows}
          # the checkout under test (in flax's own repository), with the newest jax
          - {{ flax: "-e .", jax: "{newest.pins[0].split("==")[1]}", impl: "flax,flax-tree" }}
    env:
      CI: "true"          # Hypothesis' derandomized `ci` profile: the same examples on every run
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with: {{ python-version: "3.11" }}
      # flax sets no upper bound on jax: pin the jax of the flax release's time, or pip takes the newest
      - run: pip install ${{{{ matrix.flax }}}} "jax==${{{{ matrix.jax }}}}" "jaxlib==${{{{ matrix.jax }}}}" "nnx-conformance[test]"
      - run: pytest -n auto --pyargs nnx_conformance.spec --nnx-impl ${{{{ matrix.impl }}}} --nnx-report nnx-report.json
      - if: always()
        uses: actions/upload-artifact@v4
        with: {{ name: "nnx-conformance-${{{{ strategy.job-index }}}}", path: "nnx-report.*" }}
```"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", action="append", default=[], help="flax version(s) to run (default: all)")
    parser.add_argument("--venvs", type=Path, default=ROOT / "build" / "flax-venvs", help="where the venvs live")
    parser.add_argument("--jobs", type=int, default=2, help="pytest-xdist workers per run (default 2)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "flax_releases.md")
    parser.add_argument("--note", default="", help="a sentence on the conditions of the run, printed under the machine")
    parser.add_argument("--render", action="store_true", help="run nothing: report every release's saved run")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="report the releases not named by --release from their last saved run instead of leaving them out",
    )
    args = parser.parse_args(argv)
    known = {r.flax: r for r in RELEASES}
    unknown = [v for v in args.release if v not in known]
    if unknown:
        parser.error(f"--release {', '.join(unknown)}: not one of {', '.join(known)} (add it to RELEASES with its jax pins)")
    chosen = [] if args.render else [known[v] for v in args.release] if args.release else list(RELEASES)
    args.keep = args.keep or args.render
    args.venvs.mkdir(parents=True, exist_ok=True)
    reports = args.venvs / "reports"
    reports.mkdir(exist_ok=True)
    runs = []
    for release in RELEASES:
        if release in chosen:
            runs.append(_run(_venv_python(args.venvs, release), release, args.jobs, reports))
        elif args.keep and (saved := _load(reports, release)) is not None:
            print(f"flax {release.flax}: the saved run of {_run_file(reports, release)}", flush=True)
            runs.append(saved)
    args.out.write_text(render(runs, args.jobs, args.note), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0 if all(run.exit_status == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
