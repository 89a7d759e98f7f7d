"""Attribute names that break naive code, drawn from a small pool.

Each entry is there to trip a specific shortcut:

* ``"B"`` vs ``"a"``: Python ``str`` order puts upper case first; a case-insensitive sort does not.
* ``"a2"`` vs ``"a10"``: ``str`` order puts ``"a10"`` first; a natural sort does not.
* ``"_a"``, ``"a_b"``: underscores (``"_"`` sorts after upper case, before lower case).
* ``"é"``, ``"ß"``, ``"中"``: non-ASCII identifiers (code-point order, no normalisation surprises).
* Only where ``Capabilities.separator_in_names`` holds: ``"a-b"``, ``"a.b"``, ``"a/b"``, ``"a/z"``. Since
  ``"-" < "/" < "z"``, sorting ``"/"``-joined strings orders ``("a-b",)`` before ``("a", "z")`` while tuple
  order does the opposite; and ``"a/b"`` next to an attribute ``"a"`` with a child ``"b"`` makes two paths
  that display as the same string. :func:`~.graphs.graphs` plants that pair on purpose (see ``twins``).

The pool is small on purpose: shrinking goes to its first entries (``"a"``, ``"b"``), and few distinct
names mean few distinct graph definitions, so ``jax.jit`` caches keep hitting.
"""

from __future__ import annotations

import functools

from hypothesis import strategies as st

from nnx_conformance.spec.adapter import Capabilities

__all__ = ["DEFAULT_CAPABILITIES", "IDENTIFIER_NAMES", "PUNCTUATED_NAMES", "allowed", "name_pool", "names"]

DEFAULT_CAPABILITIES = Capabilities()
"""Every capability claimed: the strategies' default, generating every feature."""

IDENTIFIER_NAMES: tuple[str, ...] = ("a", "b", "z", "B", "_a", "a_b", "a2", "a10", "é", "ß", "中")
"""Names every implementation must accept (all are Python identifiers)."""

PUNCTUATED_NAMES: tuple[str, ...] = ("a-b", "a/b", "a/z", "a.b")
"""Names holding the display separator or punctuation sorting before it; gated by ``separator_in_names``."""


def allowed(name: str, capabilities: Capabilities) -> bool:
    """Whether strategies may assign attribute ``name`` on an implementation with ``capabilities``."""
    return (
        not name.startswith("__")
        and name not in capabilities.reserved_names
        and (name.isidentifier() or capabilities.separator_in_names)
    )


@functools.lru_cache(maxsize=64)
def name_pool(capabilities: Capabilities = DEFAULT_CAPABILITIES) -> tuple[str, ...]:
    """The names :func:`names` and :func:`~.graphs.graphs` draw from, simplest first."""
    return tuple(n for n in IDENTIFIER_NAMES + PUNCTUATED_NAMES if allowed(n, capabilities))


def names(capabilities: Capabilities = DEFAULT_CAPABILITIES) -> st.SearchStrategy[str]:
    """One attribute name legal for ``capabilities`` (never reserved, never ``__``-prefixed)."""
    return st.sampled_from(name_pool(capabilities))
