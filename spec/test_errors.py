"""The ``errors.*`` clauses (bad input to merge and update): collected from the clause registry, defined in
``properties/errors.py``.

The bodies live in :mod:`nnx_conformance.spec.properties.errors` so that the meta-tests can run them
against a mutant adapter without importing this test module a second time.
"""

from nnx_conformance.spec.clauses import area

globals().update(area("errors"))
