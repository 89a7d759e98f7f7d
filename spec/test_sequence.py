"""The ``sequence.*`` clauses (state machines over histories of operations): collected from the clause
registry, defined in ``properties/sequence.py``.

The bodies live in :mod:`nnx_conformance.spec.properties.sequence` so that the meta-tests can run them against
a mutant adapter without importing this test module a second time.
"""

from nnx_conformance.spec.clauses import area

globals().update(area("sequence"))
