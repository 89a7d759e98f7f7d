"""Known deviations: per-implementation files of expected failures.

An implementation that departs from a clause on purpose (or until it is fixed) lists the clause, or a
single property, with the reason::

    # spec/expectations/seed.txt
    graph.canonical-paths: a shared Variable is emitted once per path, not once
    test_union_is_associative: union lets the later state override silently

The plugin turns each entry into a non-strict ``xfail`` on the matching tests of that implementation
only. An expected failure that passes is reported as ``xpass`` so the file can shrink, and an entry that
names no known clause or property is warned about, so typos never silently hide a failure.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


class ExpectationsError(ValueError):
    """An unreadable or malformed expectations file; the message names the file (and line) and the fix."""


class ExpectationWarning(UserWarning):
    """An expectations entry that names no clause or property of this version of the spec."""


@dataclasses.dataclass(frozen=True)
class Expectation:
    key: str
    """A clause id (``graph.roundtrip``) or a property name (``test_roundtrip``)."""
    reason: str
    source: str
    """``file:line`` for messages."""


def parse(path: Path) -> list[Expectation]:
    """Read one expectations file: ``KEY: reason`` lines, ``#`` comments and blank lines."""
    entries: list[Expectation] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(_read(path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, reason = line.partition(":")
        key, reason = key.strip(), reason.strip()
        where = f"{path}:{lineno}"
        if not sep or not key or not reason or " " in key:
            raise ExpectationsError(
                f"{where}: expected 'clause.id: reason' or 'test_name: reason', got {raw!r}"
            )
        if key in seen:
            raise ExpectationsError(f"{where}: {key!r} is listed twice")
        seen.add(key)
        entries.append(Expectation(key, reason, where))
    return entries


def _read(path: Path) -> str:
    fix = "give the path of a text file of 'clause.id: reason' lines"
    if not path.exists():
        raise ExpectationsError(f"{path}: no such file; {fix}")
    if path.is_dir():
        raise ExpectationsError(f"{path}: is a directory; {fix}")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ExpectationsError(f"{path}: cannot be read ({err.strerror}); {fix}") from None
    if b"\0" in data:
        raise ExpectationsError(f"{path}: is a binary file, not text; {fix}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ExpectationsError(f"{path}: is not UTF-8 text (byte {err.start}); {fix}") from None


def match(entries: list[Expectation], clause_id: str | None, test_name: str) -> Expectation | None:
    """The entry covering a test: its own name first, then its clause."""
    by_key = {e.key: e for e in entries}
    return by_key.get(test_name) or (by_key.get(clause_id) if clause_id else None)
