"""The ``graph.*`` clauses (partition, merge, update): collected from the clause registry, defined in ``properties/graph.py``.

The bodies live in :mod:`nnx_conformance.spec.properties.graph` so that the meta-tests can run them against
a mutant adapter without importing this test module a second time.
"""

from nnx_conformance.spec.clauses import area

globals().update(area("graph"))
