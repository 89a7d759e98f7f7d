"""What generating an example costs: ``graphs()`` and the other strategies, per example, in CPU time.

Two measurements per strategy, because "generation cost" can mean either:

* **added cost**: CPU time of a ``@given(strategy)`` test with an empty body, minus that of the same test
  over ``st.integers()``, per example. This is what a property pays for using the strategy: drawing the
  example *plus* everything Hypothesis does per recorded choice around the test (its data tree, novelty
  checks, span bookkeeping), without Hypothesis' fixed per-example cost, which any test pays.
* **draw time**: wall time of ``data.draw(strategy)`` alone inside ``@given(st.data())``, per example.

Both use ``Phase.generate`` only (no shrinking, no database, no explicit examples) and the same number of
examples; every number is the median over ``--repeats`` runs, strategy and baseline interleaved within a
repeat so that a busy neighbour hurts both alike. The mean number of recorded choices per example is
printed beside, since Hypothesis' cost is roughly proportional to it.

    python benchmarks/generation.py                    # default graphs() and friends, 2,000 examples x 5
    python benchmarks/generation.py --examples 5000 --repeats 9 --json gen.json

Not a test: nothing here runs in CI (tests/test_strategies_*.py check what is generated, not how fast).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Capabilities
from nnx_conformance.strategies import graphs, rng_programs, variables

CASES: dict[str, Callable[[], st.SearchStrategy]] = {
    "graphs()": lambda: graphs(),
    "graphs(Capabilities(sharding=False))": lambda: graphs(Capabilities(sharding=False)),
    "graphs(cycles=False, shared_modules=False, shared_variables=False)": lambda: graphs(
        cycles=False, shared_modules=False, shared_variables=False
    ),
    "graphs(max_nodes=16, max_vars=12)": lambda: graphs(max_nodes=16, max_vars=12),
    "variables(sharding=True)": lambda: variables(sharding=True),
    "rng_programs()": lambda: rng_programs(),
}


def _settings(n: int) -> settings:
    return settings(
        max_examples=n,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def run_cost(strategy: st.SearchStrategy, n: int) -> float:
    """CPU seconds per example of an empty ``@given(strategy)`` test."""

    @_settings(n)
    @given(strategy)
    def empty(_: object) -> None:
        pass

    start = time.process_time()
    empty()
    return (time.process_time() - start) / n


def draw_time(strategy: st.SearchStrategy, n: int) -> tuple[float, float]:
    """Mean seconds inside ``data.draw(strategy)`` and mean recorded choices per example."""
    times: list[float] = []
    choices: list[int] = []

    @_settings(n)
    @given(st.data())
    def timed(data: st.DataObject) -> None:
        before = len(data.conjecture_data.choices)  # what st.data() itself recorded
        start = time.perf_counter()
        data.draw(strategy)
        times.append(time.perf_counter() - start)
        choices.append(len(data.conjecture_data.choices) - before)

    timed()
    return statistics.fmean(times), statistics.fmean(choices)


def measure(name: str, n: int, repeats: int) -> dict[str, float | str]:
    strategy = CASES[name]()
    baseline = st.integers()
    run_cost(strategy, 50)  # warm caches (tables, strategies) outside the samples
    added, draws, choices = [], [], []
    for _ in range(repeats):
        added.append(run_cost(strategy, n) - run_cost(baseline, n))
        d, c = draw_time(strategy, n)
        draws.append(d)
        choices.append(c)
    return {
        "strategy": name,
        "added_ms": statistics.median(added) * 1e3,
        "added_ms_min": min(added) * 1e3,
        "added_ms_max": max(added) * 1e3,
        "draw_ms": statistics.median(draws) * 1e3,
        "choices": statistics.fmean(choices),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=2000, help="examples per run (default 2000)")
    parser.add_argument("--repeats", type=int, default=5, help="runs per strategy; medians reported")
    parser.add_argument("--only", help="comma-separated case names (default: all)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    names = list(CASES) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        parser.error(f"unknown cases {unknown}; known: {list(CASES)}")

    print(f"{args.examples} examples x {args.repeats} repeats; load average {os.getloadavg()[0]:.2f}")
    print(f"{'strategy':<70} {'added ms':>9} {'(min-max)':>13} {'draw ms':>8} {'choices':>8}")
    results = []
    for name in names:
        r = measure(name, args.examples, args.repeats)
        results.append(r)
        spread = f"{r['added_ms_min']:.2f}-{r['added_ms_max']:.2f}"
        print(f"{name:<70} {r['added_ms']:>9.3f} {spread:>13} {r['draw_ms']:>8.3f} {r['choices']:>8.1f}")
    if args.json:
        meta = {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "examples": args.examples, "repeats": args.repeats, "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
