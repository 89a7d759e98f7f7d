"""The implementation of :mod:`nnx_conformance.strategies`; import from there, not from here.

One small module per concern. They live in this private package, as Hypothesis' own strategies do, so that
the public namespace holds only functions and types: were ``graphs.py`` a public submodule next to the
``graphs`` function it defines, ``nnx_conformance.strategies.graphs`` would name the module or the
function depending on import order, and ``import nnx_conformance.strategies.graphs as g`` would bind the
function. Names here may change between releases without notice.
"""
