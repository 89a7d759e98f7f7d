"""Small functions shared by the properties and the reproduction scripts.

A reproduction script that needs one of these gets its source copied in verbatim (``inspect.getsource``),
so the script's check is the property's check, character for character. Each function therefore uses
nothing but its arguments, ``np`` and ``re``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["names_path", "same_array"]


def same_array(a: Any, b: Any) -> bool:
    """Bitwise equality of two arrays, dtype and shape included (NaN equals NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return bool(a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())


def names_path(message: str, path: Sequence[str]) -> bool:
    """Whether an error message names ``path`` (SPEC.md, "an error naming the path").

    Accepted spellings of ``('a', 'b')``: the tuple ``('a', 'b')``, the list ``['a', 'b']``, and the names
    joined by ``/`` or ``.`` -- ``a/b``, ``a.b`` -- quoted (``'a/b'``, ``"a.b"``, `` `a.b` ``) or, for a
    path of two or more names, bare but not part of a longer path (``a.b.c`` does not name ``a.b``). A
    one-name path must be quoted or a tuple: a bare ``a`` is in almost any sentence.
    """
    path = tuple(path)
    if repr(path) in message or repr(list(path)) in message:
        return True
    for sep in ("/", "."):
        joined = sep.join(path)
        if any(f"{q}{joined}{q}" in message for q in ("'", '"', "`")):
            return True
        bare = r"(?<![\w./])" + re.escape(joined) + r"(?!/|\.?\w)"
        if len(path) > 1 and re.search(bare, message):
            return True
    return False
