"""The ``layers.*`` clauses (state stability, semantics, lifted init/apply, jitted apply): collected here from the clause registry,
defined in ``properties/layers.py``.

The bodies live in :mod:`nnx_conformance.spec.properties.layers` so that the meta-tests can run them
against a mutant adapter without importing this test module a second time.
"""

from nnx_conformance.spec.clauses import area

globals().update(area("layers"))
