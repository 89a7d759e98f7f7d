"""Hypothesis strategies for NNX-style module systems, and the oracle that judges them.

Module graphs are drawn as :class:`Blueprint` data -- node lists whose edges are indices -- because
``st.recursive`` can only grow trees and NNX's hard cases are sharing and cycles. A blueprint is then
built into whatever implementation is under test through its adapter (:func:`build`), read back
(:func:`read`), and compared with what the :func:`oracle` computes from the blueprint alone.

Quick tour::

    @given(graphs(impl.capabilities))
    def test_partition_paths(bp):
        root = build(bp, impl).root
        state, _ = impl.partition(root)
        assert [p for p, _ in impl.state_items(state)] == [p for p, _ in oracle(bp).expected_items]
"""

from hypothesis import strategies as st

from nnx_conformance.strategies._internal.blueprint import (
    Blueprint,
    MalformedBlueprint,
    NodeRef,
    NodeSpec,
    Path,
    Ref,
    Sharding,
    Static,
    VarRef,
    VarSpec,
)
from nnx_conformance.strategies._internal.build import Built, build, canonical, read
from nnx_conformance.strategies._internal.filters import (
    Everything,
    Nothing,
    PathContains,
    PathDepth,
    PathPrefix,
    filters,
    matches,
)
from nnx_conformance.strategies._internal.graphs import TYPE_NAMES, graphs
from nnx_conformance.strategies._internal.names import (
    DEFAULT_CAPABILITIES,
    IDENTIFIER_NAMES,
    PUNCTUATED_NAMES,
    allowed,
    name_pool,
    names,
)
from nnx_conformance.strategies._internal.oracle import Edge, EdgeKind, Oracle, chain, oracle
from nnx_conformance.strategies._internal.rng_programs import (
    RngOp,
    RngProgram,
    RngRecord,
    rng_programs,
    run_program,
)
from nnx_conformance.strategies._internal.snippet import snippet
from nnx_conformance.strategies._internal.structures import STRUCTURES, with_structure
from nnx_conformance.strategies._internal.variables import (
    COLLECTIONS,
    DTYPES,
    MESH_AXES,
    PUNCTUATED_COLLECTIONS,
    SHAPES,
    STATIC_VALUES,
    collection_pool,
    collections,
    dtypes,
    shapes,
    shardings,
    signatures,
    statics,
    variables,
)

__all__ = [
    "COLLECTIONS",
    "DEFAULT_CAPABILITIES",
    "DTYPES",
    "IDENTIFIER_NAMES",
    "MESH_AXES",
    "PUNCTUATED_COLLECTIONS",
    "PUNCTUATED_NAMES",
    "SHAPES",
    "STATIC_VALUES",
    "STRUCTURES",
    "TYPE_NAMES",
    "Blueprint",
    "Built",
    "Edge",
    "EdgeKind",
    "Everything",
    "MalformedBlueprint",
    "NodeRef",
    "NodeSpec",
    "Nothing",
    "Oracle",
    "Path",
    "PathContains",
    "PathDepth",
    "PathPrefix",
    "Ref",
    "RngOp",
    "RngProgram",
    "RngRecord",
    "Sharding",
    "Static",
    "VarRef",
    "VarSpec",
    "allowed",
    "build",
    "canonical",
    "chain",
    "collection_pool",
    "collections",
    "dtypes",
    "filters",
    "graphs",
    "matches",
    "name_pool",
    "names",
    "oracle",
    "read",
    "rng_programs",
    "run_program",
    "shapes",
    "shardings",
    "signatures",
    "snippet",
    "statics",
    "variables",
    "with_structure",
]

# ``st.from_type(Blueprint)`` and friends (and ``@given(bp=...)`` inference) get the default strategies.
st.register_type_strategy(Blueprint, graphs())
st.register_type_strategy(VarSpec, variables())
st.register_type_strategy(RngProgram, rng_programs())
