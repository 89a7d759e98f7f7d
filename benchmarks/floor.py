"""How fast can a pure-Python partition/merge be? Floors measured on the partition_merge.py graphs.

Each row is a stripped-down piece of what partition and merge must do, timed per module node on the same
random graphs as ``partition_merge.py`` (2 Variables per node, ~10% shared references, a few cycles):

* ``visit``      -- a recursive DFS that reads every module's ``__dict__`` in sorted name order, tells
  Variables from modules by type, and skips modules it has seen (``id`` set). It produces nothing: this is
  the cost of *reading* the graph in canonical order in CPython.
* ``partition*`` -- ``visit`` plus what a partition must produce per Variable: a snapshot (a new Variable,
  three slot stores), its path tuple, and a dict entry ``path -> snapshot``, with shared Variables
  detected (``id`` dict). No definition is built, nothing is validated or hashed.
* ``merge*``     -- rebuild from a prepared flat description: ``object.__new__`` per module, each
  ``__dict__`` filled from a table, two new Variables per module. No validation.
* ``core partition`` / ``core merge`` -- the reference core, for comparison.
* ``bound``      -- ``jax.tree_util`` flatten + unflatten of the nested dict of the same shape (C++).

The minimal rows are not implementations (they skip statics, validation, the hashable definition); they
show how much of the core's cost is the interpreter itself.

    python benchmarks/floor.py                      # N = 1,000, 10,000, 100,000
    python benchmarks/floor.py --sizes 1000 --clock thread_time

Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import partition_merge as pm

from nnx_conformance.core import Variable

_new = object.__new__


def visit_only(root: Any) -> None:
    var_cls = Variable
    seen = {id(root)}
    add = seen.add

    def visit(obj: Any) -> None:
        d = vars(obj)
        for name in sorted(d):
            value = d[name]
            if type(value) is var_cls:
                continue
            if id(value) not in seen:
                add(id(value))
                visit(value)

    visit(root)


def minimal_partition(root: Any) -> tuple[dict[Any, Any], list[Any]]:
    var_cls = Variable
    seen: dict[int, int] = {id(root): 0}
    claim = seen.setdefault
    state: dict[Any, Any] = {}
    nodes: list[Any] = []

    def visit(obj: Any, path: tuple[str, ...]) -> None:
        d = vars(obj)
        names = sorted(d)
        nodes.append((type(obj), names))
        for name in names:
            value = d[name]
            if type(value) is var_cls:
                nxt = ~len(state)
                if claim(id(value), nxt) is nxt:
                    new = _new(var_cls)
                    new.collection = value.collection
                    new.value = value.value
                    new.sharding = value.sharding
                    state[(*path, name)] = new
            else:
                nxt = len(seen)
                if claim(id(value), nxt) is nxt:
                    visit(value, (*path, name))

    visit(root, ())
    return state, nodes


def merge_input(root: Any) -> tuple[list[type], list[tuple[str, ...]], list[tuple[int, ...]], list[Any]]:
    """A flat description of the graph (types, names, refs into a table) and the Variables to copy."""
    order: dict[int, int] = {}
    objs: list[Any] = []
    variables: list[Any] = []
    var_index: dict[int, int] = {}

    def number(obj: Any) -> None:
        order[id(obj)] = len(objs)
        objs.append(obj)
        for name in sorted(vars(obj)):
            value = vars(obj)[name]
            if isinstance(value, Variable):
                if id(value) not in var_index:
                    var_index[id(value)] = len(variables)
                    variables.append(value)
            elif id(value) not in order:
                number(value)

    number(root)
    n = len(objs)
    types = [type(o) for o in objs]
    names = [tuple(sorted(vars(o))) for o in objs]
    refs = [
        tuple(
            n + var_index[id(v)] if isinstance(v, Variable) else order[id(v)]
            for v in (vars(o)[k] for k in sorted(vars(o)))
        )
        for o in objs
    ]
    return types, names, refs, variables


def minimal_merge(types: list[type], names: list[Any], refs: list[Any], variables: list[Any]) -> Any:
    var_cls = Variable
    objs = list(map(_new, types))
    table = list(objs)
    add = table.append
    for value in variables:
        new = _new(var_cls)
        new.collection = value.collection
        new.value = value.value
        new.sharding = value.sharding
        add(new)
    get = table.__getitem__
    for obj, ns, rs in zip(objs, names, refs):
        obj.__dict__.update(zip(ns, map(get, rs)))
    return objs[0]


def sample(fn: Callable[[], Any], k: int, clock: Callable[[], float]) -> float:
    keep: list[Any] = [None] * k
    gc.collect()
    gc.disable()
    t0 = clock()
    for i in range(k):
        keep[i] = fn()
    t1 = clock()
    gc.enable()
    return (t1 - t0) / k


def measure(n: int, repeats: int, clock: Callable[[], float]) -> dict[str, float]:
    core, bound = pm.core_impl(), pm.bound_impl()
    g = pm.make_graph(n, 0)
    values = pm.make_values(n)
    root = core.build(g, values)
    nested = bound.build(g, values)
    sd = core.split(root)
    minput = merge_input(root)
    flatten, unflatten = jax.tree_util.tree_flatten, jax.tree_util.tree_unflatten

    def bound_both() -> Any:
        leaves, treedef = flatten(nested)
        return unflatten(treedef, leaves)

    fns: dict[str, Callable[[], Any]] = {
        "visit": lambda: visit_only(root),
        "partition*": lambda: minimal_partition(root),
        "merge*": lambda: minimal_merge(*minput),
        "core partition": lambda: core.split(root),
        "core merge": lambda: core.join(sd),
        "bound": bound_both,
    }
    for fn in fns.values():  # warm-up
        fn()
    k = pm.inner_loops(n)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):  # interleaved, like partition_merge.py
        for name, fn in fns.items():
            samples[name].append(sample(fn, k, clock))
    return {name: statistics.median(ss) / n * 1e6 for name, ss in samples.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--clock", choices=sorted(pm.CLOCKS), default="perf_counter")
    args = ap.parse_args(argv)
    clock = pm.CLOCKS[args.clock]
    print(f"clock {args.clock}; load average {os.getloadavg()}")
    rows = ["visit", "partition*", "merge*", "core partition", "core merge", "bound"]
    print(f"{'N':>9s} " + "".join(f"{r:>16s}" for r in rows) + "   (us per module node, median)")
    for n in (int(s) for s in args.sizes.split(",")):
        res = measure(n, args.repeats, clock)
        print(f"{n:>9,} " + "".join(f"{res[r]:>16.2f}" for r in rows))
        print(
            f"{'':>9s}  ratios to bound: "
            + ", ".join(f"{r} {res[r] / res['bound']:.1f}x" for r in rows if r != "bound")
            + f"; minimal partition+merge {(res['partition*'] + res['merge*']) / res['bound']:.1f}x, "
            f"core {(res['core partition'] + res['core merge']) / res['bound']:.1f}x"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
