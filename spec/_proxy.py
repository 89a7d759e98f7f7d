"""A transparent proxy base: the adapter wrappers (``checked``, the reproduction recorder) stand for the
adapter they wrap, so attribute access, equality and hashing must be the wrapped object's -- properties pass
the adapter to ``jax.jit`` as a static argument and key caches on it."""

from __future__ import annotations

from typing import Any

__all__ = ["Forwarding"]


class Forwarding:
    """Transparency shared by the proxies: attribute reads, writes and deletes, equality, hash and repr
    are the wrapped object's. ``_METHODS`` are the protocol names :func:`dir` lists besides its own."""

    __slots__ = ()
    _METHODS: tuple[str, ...] = ()
    _REPR = "proxy"
    _wrapped: Any

    def __getattr__(self, name: str) -> Any:
        try:
            wrapped = object.__getattribute__(self, "_wrapped")
        except AttributeError:  # not initialised (copy/pickle probing): no recursion through here
            raise AttributeError(name) from None
        return getattr(wrapped, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._wrapped, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._wrapped, name)

    def __dir__(self) -> list[str]:
        return sorted(set(dir(self._wrapped)) | set(self._METHODS))

    def __repr__(self) -> str:
        return f"{self._REPR}({self._wrapped!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is type(self):
            theirs = object.__getattribute__(other, "_wrapped")
            return bool(self._wrapped is theirs or self._wrapped == theirs)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._wrapped)
