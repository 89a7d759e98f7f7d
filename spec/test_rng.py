"""The ``rng.*`` clauses: reproducible, unique, fork-independent, statistically sound, transform-safe keys.

The properties live in :mod:`nnx_conformance.spec.properties.rng` (so meta-tests can call them with a
mutant adapter); this module only lets pytest collect them.
"""

from nnx_conformance.spec.clauses import area

globals().update(area("rng"))
