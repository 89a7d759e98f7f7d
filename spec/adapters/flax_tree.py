"""Adapter ``flax-tree``: ``flax.nnx`` in *tree mode* (``graph=False``), pinned (checked on flax 0.12.8).

Tree mode is flax's answer to NNX's complexity (FLIP 5310, "Tree Mode NNX"): every API treats a module as
a JAX pytree, "assumes referential transparency" and enforces a tree ("no sharing"); it is meant to become
the default (``flax.config.nnx_graph_mode = False``). This adapter tests it as such: the same mapping as
:class:`~.flax.FlaxAdapter` (collections as Variable types, ``out_sharding`` metadata, ``nnx.Rngs``,
``nnx.Linear``/``BatchNorm``/``Dropout``), with every mode-taking call pinned to tree mode whatever the
global flags say:

* ``partition`` is ``nnx.split(m, graph=False)``: ``jax.tree_util.tree_flatten_with_path`` over the module
  with Variables as leaves. ``merge`` is ``nnx.merge``, which follows the definition's own kind (a tree
  definition unflattens as a pytree); ``update`` is ``nnx.update``, which has no mode.
* ``jit``/``vmap`` are ``nnx.jit``/``nnx.vmap`` with ``graph=False, graph_updates=False``: Variable
  updates (an ``Rngs`` counter is one) propagate out, structure changes do not (the FLIP's "simple
  transforms"). The ScanMLP uses ``nnx.split_rngs``/``nnx.vmap``/``nnx.scan`` in tree mode too.

What it disclaims, as tree mode does: **shared modules, shared Variables and cycles**. Facts, on flax
0.12.8 (``tests/test_adapters_flax_tree.py`` pins them):

* a Variable reached twice raises ``ValueError: Duplicate Param(...) found at paths: - .a - .b ... Tree
  mode (graph=False) does not support shared references`` (JAX key-path spelling), leaving the module as
  it was -- also for a shared module that holds a Variable (the paths are the Variable's, ``.x.w``);
* a shared module holding *no* Variable is not detected: it is flattened once per path, and merge makes
  two modules of it (``errors.unsupported-structure`` flags this silent duplication);
* a cycle recurses until ``RecursionError``, raised inside JAX's flattening, after which the *thread*
  cannot build an ``nnx.Module`` or run ``jax.jit`` any more (JAX's thread-local trace state is left
  unset). So does a chain past about 900 levels; the suite tries both in child interpreters only.

Depth: tree-mode flattening recurses through JAX's C++ flatten and flax's per-module flatten; measured on
a bare interpreter (recursion limit 1000), chains of 800 levels split, merge and update, 1000 do not.
The declared ``max_depth`` is the graph-mode adapter's 400, which holds in both modes.

Reproductions are written in plain ``flax.nnx`` with ``graph=False`` (:class:`~._render_flax.FlaxTreeRenderer`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import flax

from nnx_conformance.spec.adapters.flax import FEATURES, FlaxAdapter, FlaxLayers, FlaxScanMLP

__all__ = ["FlaxTreeAdapter", "FlaxTreeLayers", "FlaxTreeScanMLP"]


class FlaxTreeScanMLP(FlaxScanMLP):
    """:class:`~.flax.FlaxScanMLP` with its ``nnx.split_rngs``/``nnx.vmap``/``nnx.scan`` in tree mode."""

    graph_mode: ClassVar[bool] = False


class FlaxTreeLayers(FlaxLayers):
    """:class:`~.flax.FlaxLayers` whose ScanMLP runs its lifted transforms in tree mode (the other layers
    take no mode)."""

    scan_mlp_type: ClassVar[type[FlaxScanMLP]] = FlaxTreeScanMLP


class FlaxTreeAdapter(FlaxAdapter):
    """The protocol over ``flax.nnx`` in tree mode; the module docstring says what differs from graph mode."""

    name = "flax-tree"
    expectations: ClassVar[str | None] = None
    """Not graph mode's file: the built-in ``spec/expectations/flax-tree.txt`` (tree mode needs 0.12)."""
    graph_mode: ClassVar[bool] = False
    capabilities = dataclasses.replace(
        FlaxAdapter.capabilities,
        cycles=False,  # a cycle recurses until RecursionError (and breaks the thread's JAX trace state)
        shared_modules=False,  # "Tree mode (graph=False) does not support shared references"
        shared_variables=False,
    )

    def __init__(self) -> None:
        if not FEATURES.graph_keyword:
            raise RuntimeError(
                f"flax {flax.__version__} has no tree mode (nnx.split takes no graph= keyword; it came with "
                "flax 0.12, FLIP 5310): run --nnx-impl flax (graph mode) on this flax, or install flax>=0.12.6"
            )
        self.layers = FlaxTreeLayers()

    def render(self, scenario: Any) -> str | None:
        """A failure's reproduction in plain ``flax.nnx``, tree mode; ``None`` for a subclass."""
        if type(self) is not FlaxTreeAdapter:
            return None
        from nnx_conformance.spec.adapters._render_flax import FlaxTreeRenderer

        return FlaxTreeRenderer(scenario).script()
