"""The ``flax-tree`` adapter (``flax.nnx`` with ``graph=False``), through the protocol, and its verdicts on
``errors.unsupported-structure``.

The full spec against flax-tree takes about three minutes on two cores, too long for our own suite; these
tests pin what makes it tree mode (the mode is pinned, sharing is refused, transforms carry state out) and
run the one clause this adapter exists to exercise, checking its verdicts are what
``spec/expectations/flax-tree.txt`` declares. ``TestObservedTreeMode`` pins flax 0.12's tree-mode
behaviours behind those verdicts, and is skipped on other flax minors.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx", reason="flax is not installed (pip install -e '.[flax]')")
flax = pytest.importorskip("flax")

from mutants.harness import run_property  # noqa: E402
from protocol_graphs import attr, shared_variable_graph, tree, values  # noqa: E402

from nnx_conformance.spec import _recording, expectations, registry  # noqa: E402
from nnx_conformance.spec._repro_hooks import reproduction_for  # noqa: E402
from nnx_conformance.spec.adapter import Adapter, LayersAdapter  # noqa: E402
from nnx_conformance.spec.adapters.flax import FlaxAdapter  # noqa: E402
from nnx_conformance.spec.adapters.flax_tree import FlaxTreeAdapter  # noqa: E402
from nnx_conformance.spec.clauses import properties  # noqa: E402

CLAUSE = "errors.unsupported-structure"


@pytest.fixture(scope="module")
def impl() -> FlaxTreeAdapter:
    return FlaxTreeAdapter()


def _tree_kind(graphdef) -> str:
    """The kind of flax definition: ``TreeNodeDef`` (tree mode) or ``NodeDef`` (graph mode)."""
    return type(graphdef.nodes[0]).__name__


def test_is_registered_and_disclaims_exactly_sharing_and_cycles(impl):
    assert registry.resolve("flax-tree").target == "nnx_conformance.spec.adapters.flax_tree:FlaxTreeAdapter"
    assert isinstance(impl, Adapter) and isinstance(impl.layers, LayersAdapter)
    assert impl.name == "flax-tree"
    caps, graph = impl.capabilities, FlaxAdapter.capabilities
    assert not (caps.cycles or caps.shared_modules or caps.shared_variables)
    differing = {f for f in vars(graph) if getattr(caps, f) != getattr(graph, f)}
    assert differing == {"cycles", "shared_modules", "shared_variables"}
    builtin = registry.expectations_path(registry.resolve("flax-tree"), impl)
    assert builtin is not None and builtin.name == "flax-tree.txt"  # picked without --nnx-expectations


def test_tree_mode_is_pinned_whatever_the_global_mode(impl):
    """With the global default in graph mode (flax 0.12's default), the adapter still splits as a tree."""
    with nnx.set_graph_mode(True):
        _, graphdef = impl.partition(tree(impl))
        assert _tree_kind(graphdef) == "TreeNodeDef"
        with pytest.raises(ValueError, match="shared references"):
            impl.partition(shared_variable_graph(impl))
    assert _tree_kind(FlaxAdapter().partition(tree(impl))[1]) != "TreeNodeDef"  # the graph adapter differs


def test_tree_partition_merge_roundtrip(impl):
    root = tree(impl)
    state, graphdef = impl.partition(root)
    assert values(impl, state) == {("a", "w"): [1.0, 2.0], ("b", "bs"): [0.5], ("b", "w"): [3.0]}
    merged = impl.merge(graphdef, state)
    assert impl.type_name(merged) == "Root" and attr(impl, merged, "n") == 3
    assert impl.variable_sharding(attr(impl, attr(impl, merged, "b"), "bs")) == ("x",)
    state2, graphdef2 = impl.partition(merged)
    assert values(impl, state2) == values(impl, state) and graphdef2 == graphdef


def test_tree_mode_transforms_carry_contexts_and_variable_writes(impl):
    ctx, eager = impl.new_context(0), impl.new_context(0)
    draw = impl.jit(impl.make_rng)
    for _ in range(2):  # the Rngs counter is a Variable: tree-mode nnx.jit writes it back
        np.testing.assert_array_equal(impl.key_data(draw(ctx)), impl.key_data(impl.make_rng(eager)))
    root = tree(impl)

    def bump(module):
        w = attr(impl, attr(impl, module, "a"), "w")
        w[...] = impl.variable_value(w) + 1

    impl.jit(bump)(root)
    np.testing.assert_array_equal(impl.variable_value(attr(impl, attr(impl, root, "a"), "w")), [2.0, 3.0])
    lin = impl.layers.linear(3, 2, impl.new_context(1))
    xs = jnp.ones((4, 5, 3), jnp.float32)
    ys = impl.vmap(lambda m, x: impl.layers.call(m, x, train=False, ctx=None), in_axes=(None, 0))(lin, xs)
    np.testing.assert_allclose(ys, jnp.stack([impl.layers.call(lin, x, train=False, ctx=None) for x in xs]))


def test_scan_mlp_runs_its_lifted_transforms_in_tree_mode(impl):
    mlp = impl.layers.scan_mlp(4, 3, impl.new_context(0))
    assert type(mlp).graph_mode is False
    mean = attr(impl, attr(impl, attr(impl, mlp, "layers"), "bn"), "mean")
    assert jnp.shape(impl.variable_value(mean)) == (2, 4)
    out = impl.layers.call(
        mlp, jnp.arange(12.0, dtype=jnp.float32).reshape(3, 4), train=True, ctx=impl.new_context(1)
    )
    assert out.shape == (3, 4)
    assert not np.allclose(impl.variable_value(mean), 0.0)  # the statistics leave the tree-mode scan


@pytest.mark.parametrize(
    "name",
    [
        "test_partition_refuses_a_shared_module_it_disclaims",
        "test_partition_refuses_a_cycle_it_disclaims",  # checked in the sandbox: its steps come back from there
    ],
)
def test_reproductions_are_written_in_tree_mode_and_fail_as_pasted(impl, name, tmp_path):
    """Each deviation prints plain flax.nnx code that splits with ``graph=False`` and, run with ``python``,
    exits non-zero."""
    fn = _recording.instrument({f.__name__: f for f in properties()[CLAUSE]}[name])
    outcome = run_property(fn, impl, shrink=False, derandomize=True)
    assert outcome.failed
    reproduction = reproduction_for(fn, impl, outcome.error, CLAUSE, name)
    script = reproduction.script
    assert reproduction.kind == "library", script
    assert "tree mode (graph=False)" in script and "nnx.split(root, graph=False)" in script
    assert "nnx_conformance" not in script
    path = tmp_path / "repro.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # flax, jax and numpy only
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode != 0, f"the reproduction exits 0 on flax-tree\n{script}"
    assert "Error" in run.stderr.strip().splitlines()[-1], run.stderr


def test_unsupported_structure_verdicts_are_the_declared_ones(impl):
    """Shared Variables are refused naming their paths (pass); a shared module without Variables and a cycle
    are the two deviations ``spec/expectations/flax-tree.txt`` lists, each with its reason."""
    declared = {
        e.key
        for e in expectations.parse(Path(registry.expectations_path(registry.resolve("flax-tree"), impl)))
    }
    for fn in properties()[CLAUSE]:
        outcome = run_property(fn, impl, shrink=False, derandomize=True)
        assert outcome.skipped is None, outcome.describe()
        assert outcome.failed == (fn.__name__ in declared), outcome.describe()


@pytest.mark.skipif(
    not flax.__version__.startswith("0.12."), reason="pins flax 0.12 tree mode; re-check on other versions"
)
class TestObservedTreeMode:
    """flax 0.12.8's tree mode, as the expectations file and the adapter's docstring describe it."""

    def test_a_shared_variable_is_refused_naming_both_key_paths(self, impl):
        with pytest.raises(
            ValueError, match=r"(?s)found at paths:.*- \.c\.v.*- \.v.*does not support shared"
        ):
            impl.partition(shared_variable_graph(impl))

    def test_a_shared_module_without_variables_is_duplicated_silently(self, impl):
        root, shared = impl.new_module("Root"), impl.new_module("S")
        impl.set_attr(root, "x", shared)
        impl.set_attr(root, "y", shared)
        state, graphdef = impl.partition(root)
        merged = impl.merge(graphdef, state)
        assert attr(impl, merged, "x") is not attr(impl, merged, "y")

    def test_a_cycle_ends_in_recursion_error_and_breaks_the_thread(self):
        """In a child interpreter: after ``nnx.split(graph=False)`` of a self-loop, even constructing a module
        raises RecursionError in that thread (JAX's trace state is left unset)."""
        script = textwrap.dedent(
            """
            from flax import nnx
            class A(nnx.Module):
                pass
            root = A()
            root.me = root
            try:
                nnx.split(root, graph=False)
            except RecursionError:
                print("split: RecursionError")
            try:
                A()
                print("afterwards: works")
            except RecursionError:
                print("afterwards: RecursionError")
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
        assert proc.stdout.split("\n")[:2] == ["split: RecursionError", "afterwards: RecursionError"], (
            proc.stderr
        )
