"""Index draws, the hot path of graph generation.

Every choice Hypothesis records costs tens of microseconds (span bookkeeping, the data tree, mutation
replays), so a graph's generation cost is roughly its number of choices. Two rules keep that number down:
build each ``integers(0, n - 1)`` once, and do not draw at all when there is only one option -- except
for the choice of a *node*, see :func:`node`.
"""

from __future__ import annotations

import functools

from hypothesis import strategies as st


@functools.cache
def below(n: int) -> st.SearchStrategy[int]:
    """``integers(0, n - 1)``, built once per ``n``."""
    return st.integers(0, n - 1)


def index(draw: st.DrawFn, n: int) -> int:
    """An index into ``n >= 1`` options; no choice is recorded when ``n == 1``. Shrinks to 0."""
    return draw(below(n)) if n > 1 else 0


def node(draw: st.DrawFn, n: int) -> int:
    """An index into the ``n`` nodes of the graph being drawn, recorded even when ``n == 1``.

    The shrinker deletes nodes. If the choice of, say, a Variable's owner vanished from the choice
    sequence whenever one node is left, every later choice would shift by one and the smaller example
    would read as a different graph, so the shrink would fail: a shared-Variable bug then stalls at two
    nodes in about one run in seven instead of reaching ``root.a = v; root.b = v``.
    """
    return draw(below(n))
