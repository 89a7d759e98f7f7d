"""Kill matrix: every clause against every mutant, over many seeds. A report, not a test.

For each mutant of ``tests/mutants/`` and each clause of ``spec/SPEC.md``, runs every property of the clause
against the mutant with ``hypothesis.seed(s)`` and the property's default example budget, and records

* whether a property caught the mutant (an ``AssertionError``, or a symptom the mutant declares; a crash
  for another reason is counted separately, never as a catch),
* examples to failure: calls of the property body up to the first failing one (for a clause: the fewest
  over its properties on that seed),
* the shrunk counterexample's size, ``(modules, attribute edges)`` of the last blueprint the property
  showed (properties without a graph report none). Only the property that failed first on a seed is
  shrunk (re-run with the same seed and the shrink phase on): one shrink per seed, not one per property.

The clause a mutant's docstring names runs over ``--seeds`` seeds with shrinking (that is the number the
suite is judged by); every other clause runs over ``--cross-seeds`` seeds without shrinking, to show which
other clauses also notice the bug. Properties that are not Hypothesis tests (fixed cases in a child
interpreter: deep chains, hash seeds, forced devices) do not depend on the seed and run once.

    python benchmarks/kill_matrix.py --seeds 10 --jobs 2 --out docs/kill_matrix.md
    python benchmarks/kill_matrix.py --mutants update-ignores-deep-paths --seeds 50 --cross-seeds 0

Writes Markdown to ``--out`` and the raw results, one JSON line per task as it finishes, beside it
(``--json`` to choose the path); ``--render JSONL...`` rebuilds the Markdown from saved results, so a
named-clause run and a cross run can be made separately and reported together.

``--reproductions DIR`` checks reproductions instead (``tests/test_repro_mutants.py`` runs a sample in CI):
for each mutant, its clause's properties run with the ``ci`` seeds until one catches it, the failure's
reproduction is written to ``DIR/<mutant>/<clause>__<test>.py`` (shrunk) and run with ``python``: it must
exit non-zero, and the same scenario written for the correct adapter the mutant breaks (``DIR/control/...``:
the reference core, or the tree-only base of the ``errors.unsupported-structure`` mutants) must exit 0.

    python benchmarks/kill_matrix.py --reproductions build/repros --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"

SLOW_MEDIAN = 20
"""A named-clause median above this many examples to failure is flagged as a weak spot."""


@dataclasses.dataclass(frozen=True)
class Task:
    mutant: str
    clause: str
    seed: int
    shrink: bool
    deterministic_only: bool = False
    """Run only the non-Hypothesis properties (seed-independent: once per mutant and clause)."""
    hypothesis_only: bool = False


@dataclasses.dataclass
class PropResult:
    property: str
    status: str
    """``caught``, ``crash`` (failed, but not with an assertion or declared symptom), ``passed``, ``skipped``."""
    examples: int
    size: tuple[int, int] | None
    seconds: float
    message: str = ""


def _setup_worker() -> None:
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))


def _run_task(task: Task) -> tuple[Task, list[PropResult]]:
    _setup_worker()
    import mutants
    from mutants.harness import blueprint_size, run_property

    from nnx_conformance.spec.clauses import properties

    m = mutants.by_name(task.mutant)
    impl = m.make()
    results = []
    for fn in properties()[task.clause]:
        is_hypothesis = hasattr(fn, "hypothesis")
        if (task.deterministic_only and is_hypothesis) or (task.hypothesis_only and not is_hypothesis):
            continue
        # Search without shrinking first: shrinking does not change which example fails first.
        outcome = run_property(fn, impl, seed=task.seed, shrink=False)
        results.append(_result(fn.__name__, outcome, m.symptoms))
    caught = [r for r in results if r.status == "caught"]
    if task.shrink and caught:
        # Shrink only the counterexample of the property that failed first (one shrink, not one per
        # property): same seed, so the same examples lead to the same failure, then Hypothesis shrinks it.
        best = min(caught, key=lambda r: r.examples)
        fn = next(f for f in properties()[task.clause] if f.__name__ == best.property)
        shrunk = run_property(fn, impl, seed=task.seed, shrink=True)
        best.size = blueprint_size(shrunk.blueprint) if shrunk.failed else None
        best.seconds = round(best.seconds + shrunk.seconds, 3)
    return task, results


def _result(name: str, outcome: Any, symptoms: tuple[type[BaseException], ...]) -> PropResult:
    if outcome.skipped is not None:
        status = "skipped"
    elif outcome.caught_by(symptoms):
        status = "caught"
    elif outcome.failed:
        status = "crash"
    else:
        status = "passed"
    message = outcome.describe().split(": ", 1)[-1][:300] if outcome.failed else ""
    return PropResult(name, status, outcome.examples, None, round(outcome.seconds, 3), message)


def _tasks(catalogue: list[Any], clauses: list[str], seeds: int, cross_seeds: int) -> list[Task]:
    from nnx_conformance.spec.clauses import properties

    kinds = {cid: {hasattr(fn, "hypothesis") for fn in fns} for cid, fns in properties().items()}
    tasks = []
    for m in catalogue:
        for cid in clauses:
            named = cid == m.catches
            n = seeds if named else cross_seeds
            if n <= 0:
                continue
            if False in kinds.get(cid, ()):
                tasks.append(Task(m.id, cid, 0, shrink=named, deterministic_only=True))
            if True in kinds.get(cid, ()):
                tasks.extend(Task(m.id, cid, s, shrink=named, hypothesis_only=True) for s in range(n))
    # Named clauses first (the numbers that matter), then the cross runs.
    tasks.sort(key=lambda t: (not t.shrink,))
    return tasks


def _dump(task: Task, results: list[PropResult]) -> dict[str, Any]:
    return {"task": dataclasses.asdict(task), "results": [dataclasses.asdict(r) for r in results]}


def _load(path: Path) -> list[tuple[Task, list[PropResult]]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            item = json.loads(line)
            results = []
            for r in item["results"]:
                r["size"] = tuple(r["size"]) if r["size"] is not None else None
                results.append(PropResult(**r))
            out.append((Task(**item["task"]), results))
    return out


def _median(xs: Iterable[float]) -> float | None:
    xs = list(xs)
    return statistics.median(xs) if xs else None


@dataclasses.dataclass
class Cell:
    """One mutant x clause: per seed, whether caught, examples to failure and counterexample size."""

    runs: int = 0
    caught: int = 0
    crashes: int = 0
    examples: list[int] = dataclasses.field(default_factory=list)
    sizes: list[tuple[int, int]] = dataclasses.field(default_factory=list)
    catching: dict[str, int] = dataclasses.field(default_factory=dict)
    all_skipped: bool = True
    seconds: float = 0.0


def _fold(raw: list[tuple[Task, list[PropResult]]]) -> dict[tuple[str, str], Cell]:
    """Per (mutant, clause): combine each seed's property results (deterministic ones count on every seed)."""
    per_seed: dict[tuple[str, str], dict[int, list[PropResult]]] = defaultdict(lambda: defaultdict(list))
    deterministic: dict[tuple[str, str], list[PropResult]] = defaultdict(list)
    for task, results in raw:
        key = (task.mutant, task.clause)
        if task.deterministic_only:
            deterministic[key].extend(results)
        else:
            per_seed[key][task.seed].extend(results)
    cells: dict[tuple[str, str], Cell] = {}
    for key in set(per_seed) | set(deterministic):
        cell = Cell()
        seeds = per_seed[key] or {0: []}
        for _seed, results in sorted(seeds.items()):
            results = results + deterministic[key]
            if not results:
                continue
            cell.runs += 1
            cell.seconds += sum(r.seconds for r in results)
            if any(r.status != "skipped" for r in results):
                cell.all_skipped = False
            caught = [r for r in results if r.status == "caught"]
            if caught:
                cell.caught += 1
                best = min(caught, key=lambda r: r.examples)
                cell.examples.append(best.examples)
                if best.size is not None:
                    cell.sizes.append(best.size)
                for r in caught:
                    cell.catching[r.property] = cell.catching.get(r.property, 0) + 1
            elif any(r.status == "crash" for r in results):
                cell.crashes += 1
        cells[key] = cell
    return cells


def _busy_minutes(cells: dict[tuple[str, str], Cell]) -> float:
    return sum(cell.seconds for cell in cells.values()) / 60


def _idle_properties(cells: dict[tuple[str, str], Cell], clauses: list[str]) -> list[str]:
    from nnx_conformance.spec.clauses import properties

    busy = {p for cell in cells.values() for p in cell.catching}
    return [
        f"{cid}: {fn.__name__}"
        for cid in clauses
        for fn in properties().get(cid, [])
        if fn.__name__ not in busy
    ]


def _fmt_size(sizes: list[tuple[int, int]]) -> str:
    if not sizes:
        return "—"
    nodes = _median(s[0] for s in sizes)
    edges = _median(s[1] for s in sizes)
    return f"{nodes:g}, {edges:g} (max {max(s[0] for s in sizes)}, {max(s[1] for s in sizes)})"


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def render(
    catalogue: list[Any],
    clauses: list[str],
    cells: dict[tuple[str, str], Cell],
    args: argparse.Namespace,
    wall: float,
) -> str:
    import hypothesis
    import jax

    lines = [
        "# Kill matrix",
        "",
        "Every mutant of `tests/mutants/` against every clause of `spec/SPEC.md`; generated by",
        f"`python benchmarks/kill_matrix.py --seeds {args.seeds} --cross-seeds {args.cross_seeds} "
        f"--jobs {args.jobs}` (not a test; CI runs the cheaper `tests/test_mutants.py`).",
        "",
        f"* commit `{_git_commit()}`, {time.strftime('%Y-%m-%d')}; jax {jax.__version__}, hypothesis "
        f"{hypothesis.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPU(s); "
        + (
            f"wall time {wall / 60:.1f} min with {args.jobs} worker(s)"
            if wall
            else f"rendered from saved runs ({_busy_minutes(cells):.0f} min of property time in all)"
        ),
        *([f"* {args.note}"] if args.note else []),
        f"* named clause (the one the mutant's docstring names): {args.seeds} seeds "
        "(`hypothesis.seed(0..K-1)`), each property at its default example budget, with shrinking;",
        f"* every other clause: {args.cross_seeds} seed(s), no shrinking (which other clauses notice the bug);",
        "* properties that are not Hypothesis tests (child-interpreter checks) are seed-independent: run once,"
        " counted for every seed.",
        "",
        "**Detection** = seeds on which at least one property of the clause failed with an assertion (or the",
        "mutant's declared symptom). **Examples to failure** = calls of the property body up to the first",
        "failing one (the fewest over the clause's properties on that seed), median and max over the seeds",
        "that caught it. **Shrunk size** = (modules, attribute edges) of the shrunk counterexample's graph,",
        "median (max), for properties that draw a graph (where the failing part is not the graph -- an",
        "order-trap state, a mismatching state -- it is the size the graph drawn beside it shrank to).",
        "",
    ]
    crossed_ids = {m.id for m in catalogue if _crossed(cells, m, clauses)}
    named_rows = []
    total_runs = total_caught = 0
    all_examples: list[int] = []
    all_sizes: list[tuple[int, int]] = []
    weak: list[str] = []
    single: list[str] = []
    for m in catalogue:
        cell = cells.get((m.id, m.catches), Cell())
        total_runs += cell.runs
        total_caught += cell.caught
        all_examples.extend(cell.examples)
        all_sizes.extend(cell.sizes)
        others = [
            cid
            for cid in clauses
            if cid != m.catches and (c := cells.get((m.id, cid))) is not None and c.caught
        ]
        crossed = m.id in crossed_ids
        med = _median(cell.examples)
        ex = f"{med:g} / {max(cell.examples)}" if cell.examples else "—"
        props = ", ".join(f"`{p}` {n}" for p, n in sorted(cell.catching.items(), key=lambda kv: -kv[1]))
        named_rows.append(
            f"| `{m.id}` | `{m.catches}` | {cell.caught}/{cell.runs} | {ex} | {_fmt_size(cell.sizes)} | "
            f"{len(others) if crossed else 'not run'} | {props or '—'} |"
        )
        if cell.runs and cell.caught < cell.runs:
            weak.append(f"`{m.id}`: caught on {cell.caught}/{cell.runs} seeds by `{m.catches}`")
        if med is not None and med > SLOW_MEDIAN:
            weak.append(f"`{m.id}`: median {med:g} examples to failure (> {SLOW_MEDIAN})")
        if crossed and not others and len(cell.catching) == 1:
            (prop,) = cell.catching
            single.append(
                f"`{m.id}`: only `{prop}` ({m.catches}) catches it; median {med:g} examples"
                if med is not None
                else f"`{m.id}`: only `{prop}` ({m.catches}) catches it"
            )
        if cell.crashes:
            weak.append(f"`{m.id}`: {cell.crashes} seed(s) where a property crashed instead of asserting")
    rate = 100.0 * total_caught / total_runs if total_runs else 0.0
    med_all = _median(all_examples)
    lines += [
        "## Headline",
        "",
        f"* **{len(catalogue)} mutants**, {len({m.family for m in catalogue})} clause families, "
        f"{len({m.catches for m in catalogue})} of {len(clauses)} clauses named by a mutant.",
        f"* **Detection by the named clause: {total_caught}/{total_runs} mutant-seeds ({rate:.1f}%)**; "
        f"{sum(1 for m in catalogue if (c := cells.get((m.id, m.catches))) and c.runs and c.caught == c.runs)}"
        f"/{len(catalogue)} mutants caught on every seed.",
        f"* Examples to failure (named clause, all caught runs): median **{med_all:g}**, max "
        f"{max(all_examples) if all_examples else '—'}."
        if med_all is not None
        else "* Examples to failure: —",
        f"* Shrunk counterexample size: median **{_fmt_size(all_sizes)}** (modules, attribute edges).",
        "",
        "## Per mutant (named clause)",
        "",
        "| mutant | clause | detection | examples to failure (median / max) | shrunk size (modules, edges) "
        "| other clauses catching | catching properties (seeds) |",
        "|---|---|---|---|---|---|---|",
        *named_rows,
        "",
        "## Weak spots",
        "",
        *([f"* {w}" for w in weak] or ["* none: every mutant caught on every seed, fast."]),
        "",
        *(
            [
                "Single points of detection (no other clause, and one property of the named clause, notices "
                "the bug): robust while caught on every seed within a few examples, but one weakened "
                "property away from an escape.",
                "",
                *[f"* {w}" for w in single],
                "",
            ]
            if single
            else []
        ),
        "## Properties that catch no mutant",
        "",
        "SPEC.md promises that every property catches at least one mutant. Listed here: properties that "
        "caught no mutant on any seed of this run, on its named clause or any other.",
        "",
        *([f"* `{p}`" for p in _idle_properties(cells, clauses)] or ["* none."]),
        "",
    ]
    crossed_mutants = [m for m in catalogue if m.id in crossed_ids]
    if crossed_mutants:
        short = {cid: cid.split(".", 1)[1] for cid in clauses}
        partial = len(crossed_mutants) < len(catalogue)
        lines += [
            "## Matrix: mutant x clause",
            "",
            "Cells: seeds caught / seeds run (**bold** = the named clause); `·` = never caught; `x` = never "
            "caught, but a property crashed (an error that is not an assertion); `s` = every property skipped.",
            *(
                [
                    "",
                    f"The other clauses ran for {len(crossed_mutants)} of the {len(catalogue)} mutants only (the "
                    "rows below); for the rest, \"other clauses catching\" reads `not run`.",
                ]
                if partial
                else []
            ),
            "",
            "| mutant | " + " | ".join(short[c] for c in clauses) + " |",
            "|---|" + "---|" * len(clauses),
        ]
        for m in crossed_mutants:
            row = []
            for cid in clauses:
                cell = cells.get((m.id, cid))
                if cell is None or not cell.runs:
                    row.append(" ")
                elif cell.all_skipped:
                    row.append("s")
                elif not cell.caught:
                    row.append("x" if cell.crashes else "·")
                else:
                    text = f"{cell.caught}/{cell.runs}"
                    row.append(f"**{text}**" if cid == m.catches else text)
            lines.append(f"| `{m.id}` | " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def _crossed(cells: dict[tuple[str, str], Cell], mutant: Any, clauses: list[str]) -> bool:
    """Whether any clause other than the mutant's named one ran against it (a cross run covered it)."""
    return any(
        cid != mutant.catches and (c := cells.get((mutant.id, cid))) is not None and c.runs for cid in clauses
    )


def _reproduce_one(item: tuple[str, str]) -> Any:
    _setup_worker()
    import mutants
    from test_repro_mutants import check_mutant

    return check_mutant(mutants.by_name(item[0]), Path(item[1]), shrink=True)


def _check_reproductions(catalogue: list[Any], directory: Path, jobs: int) -> int:
    """Each mutant's reproduction, run: a table, and 1 if any is not a failing reproduction (with a
    passing control, or a documented reason for having none)."""
    started = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(jobs, initializer=_setup_worker) as pool:
        results = pool.map(_reproduce_one, [(m.id, str(directory)) for m in catalogue])
    print("| mutant | property | kind | exit | control (correct base) | s |\n|---|---|---|---|---|---|")
    for r in results:
        control = "-" if r.control is None else str(r.control)
        print(f"| {r.mutant} | {r.prop} | {r.kind} | {r.returncode} | {control} | {r.seconds:.1f} |")
    bad = [r for r in results if not r.ok]
    kinds = {k: sum(r.kind == k for r in results) for k in ("library", "adapter", "property", "partial", "none")}
    print(
        f"\n{len(results) - len(bad)}/{len(results)} mutants reproduced ({', '.join(f'{n} {k}' for k, n in kinds.items() if n)}) "
        f"in {(time.perf_counter() - started) / 60:.1f} min; scripts under {directory}"
    )
    for r in bad:
        print(f"NOT REPRODUCED {r.mutant}: {r.kind}, exit {r.returncode}, control {r.control}: {r.reason or r.last_line}")
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10, help="seeds for the named clause (default 10)")
    parser.add_argument("--cross-seeds", type=int, default=1, help="seeds for every other clause (default 1)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "kill_matrix.md")
    parser.add_argument(
        "--json", type=Path, default=None, help="raw results, JSON lines (default: --out with .jsonl)"
    )
    parser.add_argument("--mutants", default="", help="comma-separated mutant ids (default: all)")
    parser.add_argument("--note", default="", help="a sentence on how the results were made (with --render)")
    parser.add_argument("--clauses", default="", help="comma-separated clause ids or family prefixes")
    parser.add_argument(
        "--render",
        type=Path,
        nargs="+",
        default=None,
        metavar="JSONL",
        help="run nothing: render --out from raw results saved by earlier runs (e.g. a named-clause run and "
        "a cross run); --seeds/--cross-seeds only label the report",
    )
    parser.add_argument(
        "--reproductions",
        type=Path,
        default=None,
        metavar="DIR",
        help="instead of the matrix: write each mutant's reproduction under DIR, run it (it must fail) and "
        "its control on the mutant's correct base (it must pass); prints a table, exit status 1 if any is not reproduced",
    )
    args = parser.parse_args(argv)

    _setup_worker()
    import mutants

    from nnx_conformance.spec.clauses import spec_clauses

    catalogue = mutants.load()
    if args.mutants:
        wanted = {w.strip().removeprefix("mutant:") for w in args.mutants.split(",")}
        catalogue = [m for m in catalogue if m.id in wanted]
    if args.reproductions is not None:
        return _check_reproductions(catalogue, args.reproductions, args.jobs)
    clauses = list(spec_clauses())
    if args.clauses:
        prefixes = tuple(w.strip() for w in args.clauses.split(","))
        clauses = [c for c in clauses if c.startswith(prefixes) or any(m.catches == c for m in catalogue)]
    json_path = args.json or args.out.with_suffix(".jsonl")
    if args.render:
        wanted_ids = {m.id for m in catalogue}
        raw = [(t, rs) for path in args.render for t, rs in _load(path) if t.mutant in wanted_ids]
        args.out.write_text(render(catalogue, clauses, _fold(raw), args, 0.0), encoding="utf-8")
        print(f"wrote {args.out} from {len(raw)} saved task results")
        return 0
    tasks = _tasks(catalogue, clauses, args.seeds, args.cross_seeds)
    print(
        f"{len(catalogue)} mutants x {len(clauses)} clauses: {len(tasks)} tasks on {args.jobs} worker(s)",
        flush=True,
    )

    started = time.perf_counter()
    raw: list[tuple[Task, list[PropResult]]] = []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sink = json_path.open("w", encoding="utf-8")  # one line per task as it finishes: partial runs are usable
    ctx = multiprocessing.get_context("spawn")  # JAX is not fork-safe once initialised
    with ctx.Pool(args.jobs, initializer=_setup_worker) as pool:
        for k, (task, results) in enumerate(pool.imap_unordered(_run_task, tasks), 1):
            raw.append((task, results))
            sink.write(json.dumps(_dump(task, results)) + "\n")
            sink.flush()
            caught = [r.property for r in results if r.status == "caught"]
            if task.shrink or k % 50 == 0:
                print(
                    f"[{k}/{len(tasks)} {time.perf_counter() - started:6.0f}s] {task.mutant} {task.clause} "
                    f"seed {task.seed}: {'caught by ' + ', '.join(caught) if caught else 'not caught'}",
                    flush=True,
                )
    wall = time.perf_counter() - started
    sink.close()
    args.out.write_text(render(catalogue, clauses, _fold(raw), args, wall), encoding="utf-8")
    print(f"wrote {args.out} and {json_path} in {wall / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
