"""How long the specification takes against one implementation, in parallel and serially.

Runs ``python -m pytest spec --nnx-impl IMPL`` from the repository root twice, once with ``-n auto``
(pytest-xdist) and once serially (``-n 0``), and reports:

* wall time of each run (the whole pytest process: start-up, collection, JAX import, tests), and the CPU
  time of the process tree;
* per clause: tests, Hypothesis test cases run (valid + failing + invalid, over all phases), summed call
  time, test cases per second;
* the slowest clauses and the slowest tests.

The per-test data come from a small plugin (``benchmarks/_suite_stats.py``) that reads the test reports
(so it works under xdist) and Hypothesis' own statistics. The default Hypothesis profile is whatever the
suite loads (``dev`` outside CI); pass ``--pytest-args`` to change it.

    python benchmarks/suite_speed.py                           # core, -n auto and serial
    python benchmarks/suite_speed.py --impl seed --no-serial
    python benchmarks/suite_speed.py --json suite.json --pytest-args="--hypothesis-profile ci"

Equivalent plain invocations (wall time only)::

    time python -m pytest spec --nnx-impl core -n auto -q
    time python -m pytest spec --nnx-impl core -n 0 -q

Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent


def spec_test_files() -> list[Path]:
    return sorted((ROOT / "spec").glob("test_*.py"))


def run_pytest(impl: str, workers: str, extra: list[str], quiet: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        stats_path = Path(tmp) / "stats.json"
        env = dict(os.environ)
        env["NNX_SUITE_STATS"] = str(stats_path)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), env.get("PYTHONPATH", "")) if p)
        env.pop("NNX_IMPL", None)
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "spec",
            "--nnx-impl",
            impl,
            "-n",
            workers,
            "-p",
            "_suite_stats",
            "-q",
            *extra,
        ]
        print("$", shlex.join(cmd[2:] if cmd[0] == sys.executable else cmd), flush=True)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        tail = [line for line in proc.stdout.splitlines() if line.strip()][-1:] or ["(no output)"]
        print(f"  exit {proc.returncode}, {wall:.1f} s wall, {cpu:.1f} s CPU: {tail[0]}", flush=True)
        if proc.returncode not in (0, 1) and not quiet:
            print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        tests: dict[str, Any] = {}
        if stats_path.exists():
            tests = json.loads(stats_path.read_text())["tests"]
    return {
        "cmd": cmd[2:],
        "wall_s": wall,
        "cpu_s": cpu,
        "exit": proc.returncode,
        "summary": tail[0],
        "tests": tests,
    }


def by_clause(tests: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for nodeid, t in tests.items():
        clause = t.get("clause") or f"(no clause) {nodeid.split('::')[0]}"
        c = out.setdefault(clause, {"tests": 0, "examples": 0, "call_s": 0.0, "outcomes": {}})
        c["tests"] += 1
        c["examples"] += t.get("examples") or 0
        c["call_s"] += t.get("call_s") or 0.0
        outcome = t.get("outcome") or "?"
        c["outcomes"][outcome] = c["outcomes"].get(outcome, 0) + 1
    for c in out.values():
        c["examples_per_s"] = c["examples"] / c["call_s"] if c["call_s"] > 0 else None
    return out


def report(runs: dict[str, dict[str, Any]], top: int) -> str:
    lines = ["", "run            wall s   CPU s   tests  exit  summary"]
    for name, r in runs.items():
        lines.append(
            f"{name:12s} {r['wall_s']:8.1f} {r['cpu_s']:7.1f} {len(r['tests']):7d} {r['exit']:5d}  {r['summary']}"
        )
    # Per-clause numbers from the serial run when there is one (no contention between workers).
    source = "serial" if "serial" in runs else next(iter(runs))
    clauses = by_clause(runs[source]["tests"])
    if not clauses:
        return "\n".join([*lines, "", "(no per-test data: did the plugin load?)"])
    lines += [
        "",
        f"per clause ({source} run; test cases = Hypothesis valid+failing+invalid over all phases)",
        f"{'clause':34s} {'tests':>5s} {'cases':>7s} {'call s':>8s} {'cases/s':>9s}  outcomes",
    ]
    for clause, c in sorted(clauses.items(), key=lambda kv: -kv[1]["call_s"]):
        eps = f"{c['examples_per_s']:9.1f}" if c["examples_per_s"] is not None else f"{'-':>9s}"
        outcomes = ",".join(f"{k}:{v}" for k, v in sorted(c["outcomes"].items()))
        lines.append(f"{clause:34s} {c['tests']:5d} {c['examples']:7d} {c['call_s']:8.2f} {eps}  {outcomes}")
    total_call = sum(c["call_s"] for c in clauses.values())
    total_cases = sum(c["examples"] for c in clauses.values())
    lines.append(
        f"{'total':34s} {sum(c['tests'] for c in clauses.values()):5d} {total_cases:7d} {total_call:8.2f}"
    )
    lines += ["", f"slowest {top} tests ({source} run, call phase)"]
    slow = sorted(runs[source]["tests"].items(), key=lambda kv: -(kv[1].get("call_s") or 0.0))[:top]
    for nodeid, t in slow:
        lines.append(f"{t.get('call_s') or 0.0:8.2f} s  {t.get('examples') or 0:5d} cases  {nodeid}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--impl", default="core", help="implementation (default core)")
    ap.add_argument("--workers", default="auto", help="xdist -n for the parallel run (default auto)")
    ap.add_argument("--no-serial", action="store_true", help="skip the serial run")
    ap.add_argument("--no-parallel", action="store_true", help="skip the -n auto run")
    ap.add_argument("--top", type=int, default=10, help="how many slowest tests to list")
    ap.add_argument("--pytest-args", default="", help="extra pytest arguments (one string)")
    ap.add_argument("--json", default=None, metavar="PATH", help="write everything as JSON")
    args = ap.parse_args(argv)

    files = spec_test_files()
    if not files:
        print("no spec/test_*.py yet: the properties are not written, nothing to time", file=sys.stderr)
        return 2
    print(f"{len(files)} spec test modules: {', '.join(f.name for f in files)}")
    extra = shlex.split(args.pytest_args)
    runs: dict[str, dict[str, Any]] = {}
    if not args.no_parallel:
        runs[f"-n {args.workers}"] = run_pytest(args.impl, args.workers, extra, quiet=False)
    if not args.no_serial:
        runs["serial"] = run_pytest(args.impl, "0", extra, quiet=False)
    if not runs:
        return 0
    print(report(runs, args.top))
    if args.json:
        doc = {
            "impl": args.impl,
            "cpus": os.cpu_count(),
            "runs": {
                name: {
                    **{k: v for k, v in r.items() if k != "tests"},
                    "clauses": by_clause(r["tests"]),
                    "tests": r["tests"],
                }
                for name, r in runs.items()
            },
        }
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
