"""Makes ``tests/`` importable, so the mutant catalogue is ``import mutants``.

The mutants are adapters, and some properties rebuild their adapter in a child interpreter from an import
spec (``mutants.graph:SortsByInsertion``, see :func:`nnx_conformance.spec.isolation.run_isolated`). The
child inherits this process's ``sys.path`` as ``PYTHONPATH``, so putting ``tests/`` on it here makes those
specs resolve there too. (pytest runs in importlib mode, which never adds test folders to ``sys.path``.)
"""

from __future__ import annotations

import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
