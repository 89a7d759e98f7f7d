"""Partition/merge speed: the reference core against flax.nnx (graph mode), the seed, and a lower bound.

What is timed, per module node (each node holds 2 Variables):

* ``core``  -- ``state, moduledef = root.partition()`` then ``moduledef.merge(state)``
  (:mod:`nnx_conformance.core`);
* ``flax``  -- ``graphdef, state = nnx.split(root, graph=True)`` then ``nnx.merge(graphdef, state)``
  (skipped when flax is not installed);
* ``seed``  -- the seed's Tiny NNX re-statement (``spec/adapters/_tiny_nnx.py``): ``root.partition()`` then
  ``moduledef.merge(state)``;
* ``bound`` -- ``jax.tree_util.tree_flatten`` then ``tree_unflatten`` of a nested dict of the same shape
  (one dict per node holding its 2 arrays and its tree children). Flatten/unflatten is C++ and knows
  nothing about sharing or cycles, so it is the practical lower bound for any pure-Python partition/merge;
* ``bound_paths`` -- the same with ``tree_flatten_with_path`` (which also builds every leaf's key path,
  as a State's keys must be built): context for the bound, not used by the goals.

Graphs are random: a bushy tree (branching 2 to 6, so depth stays near log4(N) and no recursive
implementation meets the recursion limit), plus shared references for about 10% of the nodes (4 in 5 to a
module, 1 in 5 to another node's Variable, never to an ancestor) and a few cycles (back edges to an
ancestor). Every implementation gets the same graph, built through its own native API *outside* the timed
region; leaf values are small numpy arrays created once and shared by all four graphs. The nested dict of
the bound is the tree without the extra edges (a dict cannot share), so it has the same N nodes and 2N
leaves.

Method: ``time.perf_counter``; garbage collection disabled while timing (and run between samples); the
implementations are interleaved within each repeat (order rotated every repeat); results are kept alive
until after the sample so no deallocation is timed; small graphs run an inner loop so a sample lasts at
least ~1 ms; one untimed warm-up per implementation and size; the median over repeats is reported, for
partition, merge, and their per-repeat sum ("both"). An implementation whose samples at one size exceed the
time budget (``--budget``, seconds) stops after ``--min-repeats`` repeats; the table says how many repeats
each number is the median of.

    python benchmarks/partition_merge.py                       # full run, N = 10 .. 100,000
    python benchmarks/partition_merge.py --sizes 10,100,1000 --json out.json
    python benchmarks/partition_merge.py --only core,bound     # skip flax and the seed

Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import operator
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

DEFAULT_SIZES = (10, 100, 1_000, 10_000, 100_000)
ALL_IMPLS = ("core", "flax", "seed", "bound", "bound_paths")
TYPE_NAMES = ("Dense", "Norm", "Block", "Stack")


# ---------------------------------------------------------------------------------------------------------
# A neutral description of the graph, built once per size and then instantiated per implementation
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Graph:
    n: int
    types: list[str]  # node -> type name
    children: list[list[tuple[str, int]]]  # tree edges: node -> [(attr, child)]
    extra_nodes: list[list[tuple[str, int]]]  # shared-module references and back edges
    extra_vars: list[list[tuple[str, int, str]]]  # shared-Variable references: (attr, owner, "w"|"b")
    n_shared_modules: int
    n_shared_vars: int
    n_cycles: int
    depth: int  # depth of the tree


def make_graph(n: int, seed: int = 0) -> Graph:
    rng = random.Random(seed)
    types = [rng.choice(TYPE_NAMES) for _ in range(n)]
    children: list[list[tuple[str, int]]] = [[] for _ in range(n)]
    parent = [-1] * n
    depth_of = [0] * n
    # Breadth-first: each node takes 2..6 children until n nodes exist.
    nxt, frontier = 1, 0
    while nxt < n:
        for k in range(rng.randint(2, 6)):
            if nxt >= n:
                break
            children[frontier].append((f"c{k}", nxt))
            parent[nxt] = frontier
            depth_of[nxt] = depth_of[frontier] + 1
            nxt += 1
        frontier += 1

    def ancestors(u: int) -> set[int]:
        out = {u}
        while parent[u] >= 0:
            u = parent[u]
            out.add(u)
        return out

    extra_nodes: list[list[tuple[str, int]]] = [[] for _ in range(n)]
    extra_vars: list[list[tuple[str, int, str]]] = [[] for _ in range(n)]
    n_shared = max(1, round(0.1 * n)) if n > 2 else 0
    n_mod = n_var = 0
    for _ in range(n_shared):
        u = rng.randrange(n)
        if rng.random() < 0.8:
            v = rng.randrange(n)
            if v in ancestors(u):  # would be a cycle; cycles are added separately
                continue
            extra_nodes[u].append((f"s{len(extra_nodes[u])}", v))
            n_mod += 1
        else:
            v = rng.randrange(n)
            if v == u:
                continue
            extra_vars[u].append((f"v{len(extra_vars[u])}", v, rng.choice("wb")))
            n_var += 1
    n_cycles = 0
    for _ in range(min(5, max(1, n // 20))):
        u = rng.randrange(1, n) if n > 1 else 0
        anc = sorted(ancestors(u))
        extra_nodes[u].append((f"up{n_cycles}", rng.choice(anc)))
        n_cycles += 1
    return Graph(n, types, children, extra_nodes, extra_vars, n_mod, n_var, n_cycles, max(depth_of))


def make_values(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two small distinct arrays per node (created once; never timed)."""
    return [(np.full((4,), i, np.float32), np.full((2,), -i, np.float32)) for i in range(n)]


def instantiate(
    g: Graph,
    values: list[tuple[np.ndarray, np.ndarray]],
    new_module: Callable[[str], Any],
    new_variable: Callable[[str, Any], Any],
) -> Any:
    """Build the graph through an implementation's own classes; returns the root."""
    nodes = [new_module(t) for t in g.types]
    vars_: list[tuple[Any, Any]] = []
    for i, node in enumerate(nodes):
        w = new_variable("params", values[i][0])
        b = new_variable("batch_stats", values[i][1])
        node.w = w
        node.b = b
        vars_.append((w, b))
    for i, node in enumerate(nodes):
        for name, c in g.children[i]:
            setattr(node, name, nodes[c])
        for name, c in g.extra_nodes[i]:
            setattr(node, name, nodes[c])
        for name, owner, which in g.extra_vars[i]:
            setattr(node, name, vars_[owner][0 if which == "w" else 1])
    return nodes[0]


def nested_dict(g: Graph, values: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The tree part of the graph as nested dicts (the bound's input): N dicts, 2N leaves."""
    dicts = [{"w": values[i][0], "b": values[i][1]} for i in range(g.n)]
    for i, d in enumerate(dicts):
        for name, c in g.children[i]:
            d[name] = dicts[c]
    return dicts[0]


# ---------------------------------------------------------------------------------------------------------
# Implementations: build (untimed), split and join (timed)
# ---------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Impl:
    name: str
    build: Callable[[Graph, list[tuple[np.ndarray, np.ndarray]]], Any]
    split: Callable[[Any], Any]  # what is timed as "partition"
    join: Callable[[Any], Any]  # what is timed as "merge" (takes split's result)
    count: Callable[[Any], int]  # number of state leaves in split's result (sanity check, untimed)


def core_impl(module_cls: type | None = None, variable_cls: type | None = None) -> Impl:
    if module_cls is None or variable_cls is None:
        from nnx_conformance.core import Module, Variable
    else:
        Module, Variable = module_cls, variable_cls

    types: dict[str, type] = {}

    def new_module(t: str) -> Any:
        cls = types.get(t)
        if cls is None:
            cls = types[t] = type(t, (Module,), {})
        return cls()

    return Impl(
        "core",
        lambda g, vals: instantiate(g, vals, new_module, lambda c, v: Variable(c, v)),
        lambda root: root.partition(),
        lambda sd: sd[1].merge(sd[0]),
        lambda sd: len(sd[0]),
    )


def core_from(name: str, directory: str) -> Impl:
    """Another copy of the core (say, ``git worktree add /tmp/old <rev>`` then ``/tmp/old/core``), loaded
    under a private package name so that it can be timed beside the current one in the same run."""
    import importlib.util

    pkg = "_bench_core_" + "".join(c if c.isalnum() else "_" for c in name)
    spec = importlib.util.spec_from_file_location(
        pkg, os.path.join(directory, "__init__.py"), submodule_search_locations=[directory]
    )
    if spec is None or spec.loader is None:
        raise SystemExit(f"--extra-core {name}={directory}: no package there")
    module = importlib.util.module_from_spec(spec)
    sys.modules[pkg] = module
    spec.loader.exec_module(module)
    impl = core_impl(module.Module, module.Variable)
    impl.name = name
    return impl


def seed_impl() -> Impl:
    from nnx_conformance.spec.adapters import _tiny_nnx as tn

    types: dict[str, type] = {}

    def new_module(t: str) -> Any:
        cls = types.get(t)
        if cls is None:
            cls = types[t] = type(t, (tn.Module,), {})
        return cls()

    return Impl(
        "seed",
        lambda g, vals: instantiate(g, vals, new_module, lambda c, v: tn.Variable(c, v)),
        lambda root: root.partition(),
        lambda sd: sd[1].merge(sd[0]),
        lambda sd: len(sd[0]),
    )


def flax_impl() -> Impl | None:
    try:
        from flax import nnx
    except ImportError:
        return None
    types: dict[str, type] = {}
    var_types = {"params": nnx.Param, "batch_stats": nnx.BatchStat}

    def new_module(t: str) -> Any:
        cls = types.get(t)
        if cls is None:
            cls = types[t] = type(t, (nnx.Module,), {})
        return cls()

    split, merge = nnx.split, nnx.merge
    return Impl(
        "flax",
        lambda g, vals: instantiate(g, vals, new_module, lambda c, v: var_types[c](v)),
        lambda root: split(root, graph=True),
        lambda gs: merge(gs[0], gs[1]),
        lambda gs: len(jax.tree_util.tree_leaves(gs[1])),
    )


def bound_impl() -> Impl:
    flatten, unflatten = jax.tree_util.tree_flatten, jax.tree_util.tree_unflatten
    return Impl(
        "bound",
        nested_dict,
        flatten,
        lambda lt: unflatten(lt[1], lt[0]),
        lambda lt: len(lt[0]),
    )


def bound_paths_impl() -> Impl:
    """Context for the bound: ``tree_flatten_with_path`` also builds every leaf's key path, as a State must."""
    flatten, unflatten = jax.tree_util.tree_flatten_with_path, jax.tree_util.tree_unflatten
    second = operator.itemgetter(1)
    return Impl(
        "bound_paths",
        nested_dict,
        flatten,
        lambda pt: unflatten(pt[1], map(second, pt[0])),
        lambda pt: len(pt[0]),
    )


# ---------------------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------------------


def inner_loops(n: int) -> int:
    """Repetitions inside one sample, so that small graphs give samples of ~1 ms or more."""
    return max(1, 2_000 // n)


CLOCKS = {"perf_counter": time.perf_counter, "thread_time": time.thread_time}
clock = time.perf_counter


def sample(impl: Impl, root: Any, k: int) -> tuple[float, float]:
    """One timed sample: k partitions, then k merges of the last partition; seconds per call."""
    parts: list[Any] = [None] * k
    merged: list[Any] = [None] * k
    split, join, now = impl.split, impl.join, clock
    gc.collect()
    gc.disable()
    try:
        t0 = now()
        for i in range(k):
            parts[i] = split(root)
        t1 = now()
        part = parts[-1]
        for i in range(k):
            merged[i] = join(part)
        t2 = now()
    finally:
        gc.enable()
    del parts, merged
    return (t1 - t0) / k, (t2 - t1) / k


def expected_leaves(g: Graph) -> int:
    return 2 * g.n


def bench_size(
    n: int, impls: list[Impl], repeats: int, min_repeats: int, budget: float, seed: int
) -> dict[str, dict[str, Any]]:
    g = make_graph(n, seed)
    values = make_values(n)
    print(
        f"\nN = {n:,}: tree depth {g.depth}, {g.n_shared_modules} shared-module refs, "
        f"{g.n_shared_vars} shared-Variable refs, {g.n_cycles} back edges",
        flush=True,
    )
    roots: dict[str, Any] = {}
    for impl in impls:
        t = time.perf_counter()
        roots[impl.name] = impl.build(g, values)
        # Warm-up, and a sanity check that every implementation sees all 2N Variables once.
        got = impl.count(impl.split(roots[impl.name]))
        impl.join(impl.split(roots[impl.name]))
        if got != expected_leaves(g) and impl.name != "seed":  # the seed stores a shared Variable per path
            raise AssertionError(f"{impl.name}: {got} state leaves, expected {expected_leaves(g)}")
        print(f"  built + warmed {impl.name} in {time.perf_counter() - t:.1f} s", flush=True)
    k = inner_loops(n)
    samples: dict[str, list[tuple[float, float]]] = {impl.name: [] for impl in impls}
    spent = dict.fromkeys(samples, 0.0)
    active = list(impls)
    for r in range(repeats):
        if not active:
            break
        order = active[r % len(active) :] + active[: r % len(active)]
        for impl in order:
            p, m = sample(impl, roots[impl.name], k)
            samples[impl.name].append((p, m))
            spent[impl.name] += (p + m) * k
        active = [i for i in active if not (spent[i.name] > budget and len(samples[i.name]) >= min_repeats)]
    out: dict[str, dict[str, Any]] = {}
    for name, ss in samples.items():
        out[name] = {
            "partition": statistics.median(p for p, _ in ss) / n * 1e6,
            "merge": statistics.median(m for _, m in ss) / n * 1e6,
            "both": statistics.median(p + m for p, m in ss) / n * 1e6,
            "repeats": len(ss),
            "inner": k,
        }
        print(
            f"  {name:6s} partition {out[name]['partition']:8.2f}  merge {out[name]['merge']:8.2f}  "
            f"both {out[name]['both']:8.2f} us/node  ({len(ss)} repeats x {k})",
            flush=True,
        )
    del roots
    gc.collect()
    return out


def default_repeats(n: int) -> int:
    return {10: 31, 100: 21, 1_000: 15, 10_000: 9}.get(n, 5)


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import flax

        flax_version = flax.__version__
    except ImportError:
        flax_version = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "flax": flax_version,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


def fmt(x: float | None, spec: str = "8.2f") -> str:
    return format(x, spec) if x is not None else " " * (int(spec.split(".")[0]) - 3) + "n/a"


def table(results: dict[int, dict[str, dict[str, Any]]], names: list[str]) -> str:
    lines = []
    for what in ("partition", "merge", "both"):
        lines.append(f"\n{what} (us per module node; median)")
        lines.append("        N " + "".join(f"{n:>12s}" for n in names))
        for n, res in results.items():
            lines.append(
                f"{n:>9,} " + "".join(fmt(res[i][what] if i in res else None, "12.2f") for i in names)
            )
    lines.append("\nratios, partition+merge ('both')")
    cols = ratio_columns(names)
    width = [max(13, len(c[0]) + 2) for c in cols]
    lines.append("        N " + "".join(f"{c[0]:>{w}s}" for c, w in zip(cols, width)) + "   repeats")
    for n, res in results.items():
        row = f"{n:>9,} "
        for (_, a, b), w in zip(cols, width):
            row += fmt(res[a]["both"] / res[b]["both"] if a in res and b in res else None, f"{w}.2f")
        row += "   " + " ".join(f"{i}:{res[i]['repeats']}x{res[i]['inner']}" for i in names if i in res)
        lines.append(row)
    return "\n".join(lines)


def ratio_columns(names: list[str]) -> list[tuple[str, str, str]]:
    pairs = [
        ("core", "bound"),
        ("core", "bound_paths"),
        ("seed", "bound"),
        ("flax", "bound"),
        ("flax", "core"),
        ("seed", "core"),
    ]
    return [(f"{a}/{b}", a, b) for a, b in pairs if a in names and b in names]


def markdown(results: dict[int, dict[str, dict[str, Any]]], names: list[str]) -> str:
    """The same numbers as :func:`table`, as Markdown (for docs/benchmarks.md)."""

    def cell(res: dict[str, Any], impl: str, what: str) -> str:
        return f"{res[impl][what]:.2f}" if impl in res else "n/a"

    out = []
    for what in ("both", "partition", "merge"):
        label = {"both": "partition + merge", "partition": "partition only", "merge": "merge only"}[what]
        out.append(f"**{label}**, us per module node (median)\n")
        out.append("| N | " + " | ".join(names) + " |")
        out.append("|---:|" + "---:|" * len(names))
        for n, res in results.items():
            out.append(f"| {n:,} | " + " | ".join(cell(res, i, what) for i in names) + " |")
        out.append("")
    cols = ratio_columns(names)
    out.append("**ratios** (partition + merge)\n")
    out.append("| N | " + " | ".join(c[0] for c in cols) + " | repeats x inner loops |")
    out.append("|---:|" + "---:|" * len(cols) + "---|")
    for n, res in results.items():
        ratios = [
            f"{res[a]['both'] / res[b]['both']:.2f}" if a in res and b in res else "n/a" for _, a, b in cols
        ]
        reps = ", ".join(f"{i} {res[i]['repeats']}x{res[i]['inner']}" for i in names if i in res)
        out.append(f"| {n:,} | " + " | ".join(ratios) + f" | {reps} |")
    return "\n".join(out) + "\n"


def from_json(doc: dict[str, Any]) -> tuple[dict[int, dict[str, dict[str, Any]]], list[str]]:
    """Rebuild the results table from a ``--json`` file (for ``--render``)."""
    names = list(doc["us_per_node"])
    results: dict[int, dict[str, dict[str, Any]]] = {}
    for n in doc["sizes"]:
        key = str(n)
        results[n] = {
            name: {
                "both": doc["us_per_node"][name][key],
                "partition": doc["partition_us_per_node"][name][key],
                "merge": doc["merge_us_per_node"][name][key],
                "repeats": doc["repeats"][name][key],
                "inner": doc["inner_loops"][key],
            }
            for name in names
            if doc["us_per_node"][name].get(key) is not None
        }
    return results, names


def goals(results: dict[int, dict[str, dict[str, Any]]]) -> list[str]:
    out = []
    sizes = sorted(results)
    have = lambda n, i: i in results[n]
    flax_ns = [n for n in sizes if n >= 100 and have(n, "flax") and have(n, "core")]
    if flax_ns:
        worst = min(results[n]["flax"]["both"] / results[n]["core"]["both"] for n in flax_ns)
        ok = worst >= 10
        out.append(
            f"core >= 10x faster than flax at every N >= 100: {'MET' if ok else 'MISSED'} (worst {worst:.1f}x)"
        )
    bound_ns = [n for n in sizes if have(n, "bound") and have(n, "core")]
    if bound_ns:
        worst = max(results[n]["core"]["both"] / results[n]["bound"]["both"] for n in bound_ns)
        out.append(
            f"core within 3x of the bound at every N: {'MET' if worst <= 3 else 'MISSED'} (worst {worst:.2f}x)"
        )
    if 1_000 in results and 100_000 in results and have(1_000, "core") and have(100_000, "core"):
        ratio = results[100_000]["core"]["both"] / results[1_000]["core"]["both"]
        out.append(
            f"core per-node cost at 100,000 <= 1.5x that at 1,000: {'MET' if ratio <= 1.5 else 'MISSED'} "
            f"({ratio:.2f}x)"
        )
    return out


def profile_core(n: int, seed: int) -> int:
    """cProfile of the core's partition and merge on the benchmark graph (GC disabled, as when timing)."""
    import cProfile
    import pstats

    impl = core_impl()
    root = impl.build(make_graph(n, seed), make_values(n))
    sd = impl.split(root)
    impl.join(sd)
    for what, stmt in (("partition", lambda: impl.split(root)), ("merge", lambda: impl.join(sd))):
        prof = cProfile.Profile()
        gc.disable()
        prof.enable()
        for _ in range(5):
            stmt()
        prof.disable()
        gc.enable()
        print(f"\n=== core {what}, N = {n:,}, 5 calls ===")
        pstats.Stats(prof).sort_stats("tottime").print_stats(8)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="comma-separated node counts")
    ap.add_argument(
        "--only", default=",".join(ALL_IMPLS), help="implementations: core,flax,seed,bound,bound_paths"
    )
    ap.add_argument("--repeats", type=int, default=None, help="repeats per size (default: 31 at N=10 .. 5)")
    ap.add_argument("--min-repeats", type=int, default=3, help="repeats kept even past the budget")
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of timed work per impl and size")
    ap.add_argument("--seed", type=int, default=0, help="graph seed")
    ap.add_argument("--json", default=None, metavar="PATH", help="write the results as JSON")
    ap.add_argument(
        "--profile",
        type=int,
        default=None,
        metavar="N",
        help="instead of timing: cProfile 5 partitions + 5 merges of the core at N nodes, print the top",
    )
    ap.add_argument(
        "--extra-core",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="also time another copy of core/ (e.g. an older revision), as implementation NAME; repeatable",
    )
    ap.add_argument("--markdown", default=None, metavar="PATH", help="also write the tables as Markdown")
    ap.add_argument(
        "--render",
        default=None,
        metavar="JSON",
        help="print (and --markdown) the tables of a --json file; no run",
    )
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="perf_counter",
        help="perf_counter (wall, the default) or thread_time (CPU time of this thread: steadier on a "
        "machine shared with other jobs)",
    )
    args = ap.parse_args(argv)
    global clock
    clock = CLOCKS[args.clock]
    if args.profile:
        return profile_core(args.profile, args.seed)
    if args.render:
        with open(args.render) as f:
            doc = json.load(f)
        results, names = from_json(doc)
        print("machine:", ", ".join(f"{k}={v}" for k, v in doc.get("machine", {}).items()))
        print(table(results, names))
        print()
        for line in goals(results):
            print(line)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(markdown(results, names))
        return 0

    sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s]
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    makers = {
        "core": core_impl,
        "flax": flax_impl,
        "seed": seed_impl,
        "bound": bound_impl,
        "bound_paths": bound_paths_impl,
    }
    impls: list[Impl] = []
    skipped: list[str] = []
    for name in wanted:
        impl = makers[name]()
        if impl is None:
            skipped.append(name)
        else:
            impls.append(impl)
    for spec in args.extra_core:
        name, _, directory = spec.partition("=")
        impls.insert(1, core_from(name, directory))
    info = machine()
    info["clock"] = args.clock
    info["load_before"] = os.getloadavg()
    print("machine:", ", ".join(f"{k}={v}" for k, v in info.items()))
    if skipped:
        print("not installed, skipped:", ", ".join(skipped))
    results: dict[int, dict[str, dict[str, Any]]] = {}
    t0 = time.perf_counter()
    for n in sizes:
        reps = args.repeats or default_repeats(n)
        results[n] = bench_size(n, impls, reps, min(args.min_repeats, reps), args.budget, args.seed)
    names = [i.name for i in impls]
    print(table(results, names))
    print()
    for line in goals(results):
        print(line)
    info["load_after"] = os.getloadavg()
    print(
        f"\ntotal wall time {time.perf_counter() - t0:.0f} s; load average before {info['load_before']}, "
        f"after {info['load_after']}"
    )
    if args.json:
        doc = {
            "sizes": sizes,
            "us_per_node": {name: {str(n): results[n][name]["both"] for n in sizes} for name in names},
            "partition_us_per_node": {
                name: {str(n): results[n][name]["partition"] for n in sizes} for name in names
            },
            "merge_us_per_node": {name: {str(n): results[n][name]["merge"] for n in sizes} for name in names},
            "repeats": {name: {str(n): results[n][name]["repeats"] for n in sizes} for name in names},
            "inner_loops": {str(n): inner_loops(n) for n in sizes},
            "skipped": skipped,
            "goals": goals(results),
            "machine": info,
            "argv": sys.argv[1:],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(markdown(results, names))
        print(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
