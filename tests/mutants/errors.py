"""Mutants of input validation: ``errors.merge-mismatch`` or ``errors.unsupported-structure`` must catch each.

The merge-mismatch mutants derive from :class:`~._kit.KitAdapter`, whose merge and update validate the
whole state before touching anything and raise ``StateMismatchError`` naming the path, and weaken one of
those checks. The unsupported-structure mutants derive from :class:`TreeOnlyAdapter`, a correct tree-only
implementation that disclaims sharing and cycles and refuses them, and break one part of that refusal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from mutants import mutant
from mutants._kit import KitAdapter, KitDef, Path
from nnx_conformance.core import StateMismatchError, Variable
from nnx_conformance.spec.adapters.core import CoreAdapter


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


# -- errors.unsupported-structure ----------------------------------------------------------------------------


class TreeOnlyAdapter(CoreAdapter):
    """Not a mutant: the correct base of the ``errors.unsupported-structure`` mutants. The core restricted
    to trees: it disclaims cycles, shared modules and shared Variables, and its partition refuses them
    before doing anything, with a ``ValueError`` naming the second path by which the object is reached.
    The walk is iterative (sorted attribute order, so the first path is the canonical one) and keeps no
    state between calls. ``tests/test_errors_unsupported_structure.py`` checks that it passes the clause."""

    name = "tree-only"
    capabilities = dataclasses.replace(
        CoreAdapter.capabilities, cycles=False, shared_modules=False, shared_variables=False
    )

    def partition(self, module: Any) -> Any:
        self.check_tree(module)
        return super().partition(module)

    def check_tree(self, root: Any) -> None:
        """Raise on the first object reached a second time; ``on_stack`` holds the current walk path's
        modules (a revisit of one of those is a cycle)."""
        first: dict[int, Path] = {id(root): ()}
        on_stack: set[int] = set()
        todo: list[tuple[Any, Path, bool]] = [(root, (), False)]
        while todo:
            node, path, leaving = todo.pop()
            if leaving:
                on_stack.discard(id(node))
                continue
            on_stack.add(id(node))
            todo.append((node, path, True))
            for name, value in sorted(self.attrs(node), key=lambda item: item[0], reverse=True):
                if not (self.is_module(value) or self.is_variable(value)):
                    continue
                where = (*path, name)
                if id(value) in first:
                    raise self.refusal(value, where, first[id(value)], id(value) in on_stack)
                first[id(value)] = where
                if self.is_module(value):
                    todo.append((value, where, False))

    def refusal(self, value: Any, where: Path, first: Path, cycle: bool) -> ValueError:
        if cycle:
            what = "a cycle"
        else:
            what = "a shared Variable" if self.is_variable(value) else "a shared module"
        return ValueError(
            f"{self.name} handles trees only: {what} at {where!r} (first reached at {first!r}); "
            "remove the second reference, or use an implementation that supports graphs"
        )


@mutant(
    catches="errors.unsupported-structure", control=TreeOnlyAdapter, by="test_partition_refuses_a_cycle_it_disclaims"
)
class CycleRecursesUntilRecursionError(TreeOnlyAdapter):
    """The tree check is a recursive walk that marks a module as seen only after its children (post-order),
    so a module on the current path is entered again: a cycle recurses until ``RecursionError``, which names
    no path (sharing is still refused). errors.unsupported-structure must catch it."""

    def check_tree(self, root: Any) -> None:
        self._visit(root, (), {})

    def _visit(self, node: Any, path: Path, first: dict[int, Path]) -> None:
        for name, value in sorted(self.attrs(node), key=lambda item: item[0]):
            where = (*path, name)
            if id(value) in first:
                raise self.refusal(value, where, first[id(value)], cycle=False)
            if self.is_variable(value):
                first[id(value)] = where
            elif self.is_module(value):
                self._visit(value, where, first)
                first[id(value)] = where


@mutant(
    catches="errors.unsupported-structure",
    control=TreeOnlyAdapter,
    by="test_partition_refuses_a_shared_variable_it_disclaims",
)
class SharedVariableListedTwice(TreeOnlyAdapter):
    """A Variable reached by two attributes is not refused: partition lists it under each path, as two
    entries (snapshots of one Variable), so merge would make two Variables of it -- a silent duplicate of
    something the implementation says it does not support. errors.unsupported-structure must catch it."""

    def check_tree(self, root: Any) -> None:
        pass  # the refusal this mutant lacks (modules cannot be shared in the graphs it is given)

    def partition(self, module: Any) -> Any:
        state, graphdef = super().partition(module)
        items = list(self.state_items(state))
        for path, var in self._all_variable_paths(module):
            if path not in dict(items):
                items.append((path, Variable(var.collection, var.value, sharding=var.sharding)))
        return self.make_state(items), graphdef

    def _all_variable_paths(self, root: Any) -> list[tuple[Path, Any]]:
        found, todo = [], [(root, ())]
        while todo:
            node, path = todo.pop()
            for name, value in self.attrs(node):
                if self.is_variable(value):
                    found.append(((*path, name), value))
                elif self.is_module(value):
                    todo.append((value, (*path, name)))
        return found


@mutant(catches="errors.unsupported-structure", control=TreeOnlyAdapter)
class RefusalNamesNoPath(TreeOnlyAdapter):
    """The refusal says only that the graph is not a tree, not where: in a model of hundreds of modules
    that points nowhere. errors.unsupported-structure must catch it."""

    def refusal(self, value: Any, where: Path, first: Path, cycle: bool) -> ValueError:
        return ValueError(f"{self.name} handles trees only: this graph has a shared object or a cycle")


@mutant(
    catches="errors.unsupported-structure", control=TreeOnlyAdapter, by="test_partition_refuses_a_cycle_it_disclaims"
)
class RefusalLeavesTheWalkLocked(TreeOnlyAdapter):
    """Partition sets a "walk in progress" flag on the adapter and clears it only when the walk succeeds,
    so after one refused cycle every later partition raises "a partition is already running": a refusal
    that breaks the implementation for the rest of the process. errors.unsupported-structure must catch it
    (in the child interpreter, by partitioning a plain tree afterwards)."""

    def partition(self, module: Any) -> Any:
        if getattr(self, "_walking", False):
            raise RuntimeError("a partition is already running (re-entrant partition is not supported)")
        self._walking = True
        result = super().partition(module)
        self._walking = False
        return result
