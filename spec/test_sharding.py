"""``sharding.*`` clauses: annotations survive every operation and place state on a device mesh.

The bodies live in :mod:`nnx_conformance.spec.properties.sharding`, so the meta-tests can call them with a
mutant adapter without importing this file under a second name.
"""

from nnx_conformance.spec.clauses import area

globals().update(area("sharding"))
