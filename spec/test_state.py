"""The ``state.*`` clauses (filter, union, pytree): collected from the clause registry, defined in ``properties/state.py``.

The bodies live in :mod:`nnx_conformance.spec.properties.state` so that the meta-tests can run them against
a mutant adapter without importing this test module a second time.
"""

from nnx_conformance.spec.clauses import area

globals().update(area("state"))
