"""Errors: the hierarchy, and that every error names its path in both the display and the tuple form."""

from __future__ import annotations

import numpy as np
import pytest

from nnx_conformance.core import (
    Module,
    NNXError,
    ShardingError,
    State,
    StateConflictError,
    StateMismatchError,
    UnhashableStaticError,
    Variable,
)
from nnx_conformance.core.errors import format_path


@pytest.mark.parametrize(
    "cls", [StateMismatchError, StateConflictError, UnhashableStaticError, ShardingError]
)
def test_hierarchy(cls):
    assert issubclass(cls, NNXError) and issubclass(cls, ValueError)
    error = cls("message", ("a", "b"))
    assert error.path == ("a", "b") and str(error) == "message"


def test_sharding_error_is_also_a_type_error():
    # A malformed constructor argument: callers catching TypeError (the constructor's error before
    # ShardingError existed) still catch it.
    assert issubclass(ShardingError, TypeError)
    with pytest.raises(TypeError):
        Variable("params", np.zeros(3), sharding="data")


def test_path_defaults_to_none():
    assert NNXError("no path").path is None


def test_format_path_shows_display_and_tuple_forms():
    assert format_path(("a", "b")) == "'a/b' (('a', 'b'))"
    # a name containing "/" displays like a nested path; the tuple form disambiguates
    assert format_path(("a/b",)) == "'a/b' (('a/b',))"


class Node(Module):
    pass


def raise_each():
    """Trigger every error kind through the public API; yields (error class, expected path, callable)."""
    root = Node()
    root.child = Node()
    root.child.w = Variable("params", np.zeros(1))
    state, moduledef = root.partition()

    bad = Node()
    bad.child = Node()
    bad.child.cfg = [1]

    yield StateMismatchError, ("child", "w"), lambda: moduledef.merge(State())
    yield (
        StateMismatchError,
        ("child", "x"),
        lambda: root.update_state(State({("child", "x"): Variable("params", 0)})),
    )
    yield (
        StateConflictError,
        ("child", "w"),
        lambda: state | State({("child", "w"): Variable("params", np.ones(1))}),  # another value
    )
    yield UnhashableStaticError, ("child", "cfg"), bad.partition
    yield (
        StateMismatchError,
        ("child", "w"),
        lambda: root.update_state(State({("child", "w"): Variable("params", np.zeros(2))})),
    )


@pytest.mark.parametrize("case", range(5), ids=["merge", "update", "union", "static", "update-shape"])
def test_every_error_names_its_path(case):
    cls, path, trigger = list(raise_each())[case]
    with pytest.raises(cls) as info:
        trigger()
    assert info.value.path == path
    assert format_path(path) in str(info.value)
    with pytest.raises(ValueError):  # catchable as plain bad input too
        trigger()
