"""Errors raised by the reference core.

Every error is an :class:`NNXError`, itself a :class:`ValueError`, so callers that only know "bad input"
can catch ``ValueError`` while the conformance suite can tell the kinds apart (:class:`ShardingError`, a
malformed argument, is a :class:`TypeError` as well). Each message names the offending path twice: as
``'a/b'`` because that is how people read state, and as the tuple ``('a', 'b')`` because that is the key
that actually identifies it (an attribute may itself be named ``'a/b'``).
"""

from __future__ import annotations

__all__ = [
    "NNXError",
    "ShardingError",
    "StateConflictError",
    "StateMismatchError",
    "UnhashableStaticError",
    "format_path",
]


def format_path(path: tuple[str, ...]) -> str:
    """``'a/b' (('a', 'b'))``: the display form followed by the exact tuple key."""
    return f"'{'/'.join(path)}' ({path!r})"


class NNXError(ValueError):
    """Base class of every error the core raises about graphs, states and contexts.

    ``path`` is the offending path when there is one (``None`` otherwise), so tests and tools can check
    *which* entry was rejected without parsing the message.
    """

    def __init__(self, message: str, path: tuple[str, ...] | None = None) -> None:
        super().__init__(message)
        self.path = path


class StateMismatchError(NNXError):
    """A state does not fit a module graph or a ModuleDef.

    Raised by ``ModuleDef.merge`` and ``Module.update_state`` for a missing, extra or renamed path, a leaf
    that is not a Variable, or a Variable of the wrong collection, and by ``update_state`` for a value whose
    shape or dtype differs from the one the module's Variable holds. The operation is refused before
    anything is mutated or built.
    """


class StateConflictError(NNXError):
    """Two states given to ``State.union`` hold different things at the same path."""


class ShardingError(NNXError, TypeError):
    """A Variable's sharding annotation is not one mesh-axis name (``str``) or ``None`` per array axis.

    Raised by the ``Variable`` constructor for a bare string (``sharding='data'`` would otherwise read as
    four axes ``('d', 'a', 't', 'a')``), a container other than a tuple or list, an entry that is neither a
    ``str`` nor ``None``, or, for an array value, a length other than its ``ndim``. A malformed argument,
    so it is a :class:`TypeError` too (callers that caught the constructor's ``TypeError`` still do).
    ``path`` is ``None``: a Variable does not know where it will be attached.
    """


class UnhashableStaticError(NNXError):
    """A module attribute that is neither a Module nor a Variable is not hashable.

    Such attributes are *static*: they live in the ModuleDef, which must be hashable to serve as a
    ``jax.jit`` static argument. Raised by ``partition``, never later inside ``jax.jit``.
    """
