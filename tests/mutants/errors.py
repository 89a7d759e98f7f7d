"""Mutants of input validation: ``errors.merge-mismatch`` must catch each one.

Each derives from :class:`~._kit.KitAdapter`, whose merge and update validate the whole state before
touching anything and raise ``StateMismatchError`` naming the path, and weakens one of those checks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mutants import mutant
from mutants._kit import KitAdapter, KitDef, Path
from nnx_conformance.core import StateMismatchError, Variable


@mutant(catches="errors.merge-mismatch")
class MergeIgnoresExtraPaths(KitAdapter):
    """Merge builds the module from the paths the definition lists and silently ignores any other entry
    of the state (update still refuses them). errors.merge-mismatch must catch it."""

    def check_merge_state(self, graphdef: KitDef, items: Sequence[tuple[Path, Any]]) -> None:
        known = set(graphdef.paths)
        super().check_merge_state(graphdef, [(p, v) for p, v in items if p in known])


@mutant(catches="errors.merge-mismatch")
class MergeSkipsCollectionCheck(KitAdapter):
    """Merge checks paths and leaf types but not collections: a ``batch_stats`` Variable lands where the
    definition has ``params`` (update still checks). errors.merge-mismatch must catch it."""

    def check_merge_state(self, graphdef: KitDef, items: Sequence[tuple[Path, Any]]) -> None:
        expected = dict(zip(graphdef.paths, graphdef.collections))
        relabelled = [(p, _relabel(v, expected.get(p))) for p, v in items]
        super().check_merge_state(graphdef, relabelled)


@mutant(catches="errors.merge-mismatch")
class MergeWrapsRawLeaves(KitAdapter):
    """Merge accepts a raw array where a Variable belongs and wraps it in a Variable of the expected
    collection ("be liberal in what you accept"); update still refuses it. errors.merge-mismatch must
    catch it."""

    def merge(self, graphdef: Any, state: Any) -> Any:
        expected = dict(zip(graphdef.paths, graphdef.collections))
        items = [
            (p, v if isinstance(v, Variable) or p not in expected else Variable(expected[p], v))
            for p, v in self.state_items(state)
        ]
        return super().merge(graphdef, self.make_state(items))


@mutant(catches="errors.merge-mismatch")
class UpdateValidatesAsItGoes(KitAdapter):
    """Update checks each entry just before assigning it, so a bad entry is refused only after the entries
    before it were written: the module is left half updated. errors.merge-mismatch must catch it."""

    def update(self, module: Any, state: Any) -> None:
        _, variables = self.walk(module)
        index = dict(variables)
        for path, new in self.state_items(state):
            target = index.get(tuple(path))
            if target is None:
                raise self.mismatch("update: the module has no Variable", tuple(path))
            self.check_leaf(new, target.collection, tuple(path))
            self.assign(module, target, new, tuple(path))


@mutant(catches="errors.merge-mismatch")
class ErrorNamesOnlyTheLastName(KitAdapter):
    """Mismatch errors name only the last attribute name of the offending path (``at 'w'`` instead of
    ``at 'block/linear/w'``), which points nowhere in a model with many ``w``s; right for one-name paths.
    errors.merge-mismatch must catch it."""

    def mismatch(self, message: str, path: Path) -> StateMismatchError:
        return StateMismatchError(f"{message} at {path[-1]!r}", path)


def _relabel(var: Any, collection: str | None) -> Any:
    """``var`` as if it had ``collection`` (the check this mutant skips); a copy, never the caller's."""
    if collection is None or not isinstance(var, Variable) or var.collection == collection:
        return var
    return Variable(collection, var.value, sharding=var.sharding)
