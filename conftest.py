"""Root conftest: keeps a checkout run honest.

The suite's plugin (``nnx_conformance.spec.plugin``) is registered through the ``pytest11`` entry point
when the project is installed (``pip install -e .[test]``). Running from a checkout without installing
would import ``core``/``spec`` under bare names and then again under ``nnx_conformance.*``; we refuse that
with an error that says how to fix it, instead of letting modules load twice.
"""

from __future__ import annotations

import importlib.util

if importlib.util.find_spec("nnx_conformance.spec") is None:  # pragma: no cover - setup error path
    raise ImportError(
        "nnx-conformance is not installed in this environment; run `pip install -e '.[test]'` at the "
        "repository root first (the suite is always imported as nnx_conformance.*)."
    )

collect_ignore = ["examples", "benchmarks", "docs", "build"]

# pytester drives the plugin end to end in tests/test_plugin.py.
pytest_plugins = ["pytester"]
