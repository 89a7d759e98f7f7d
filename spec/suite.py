"""Every property of the spec under one name, to collect the suite inside your own test folder.

A ``conftest.py`` fixture is visible only to tests under its folder, so an ``impl`` override in your
project cannot reach the spec's own test files in site-packages. Collect the spec next to it instead::

    # tests/conformance/test_nnx_spec.py
    from nnx_conformance.spec.suite import *  # noqa: F403 -- every property of the spec

The names come from the clause registry, so this module can never miss a property.
"""

from __future__ import annotations

from nnx_conformance.spec.clauses import registered

globals().update(registered())
__all__ = sorted(registered())  # pyright: ignore[reportUnsupportedDunderAll]
