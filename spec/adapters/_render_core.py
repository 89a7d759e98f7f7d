"""Reproductions in the reference core's own code (``from nnx_conformance.core import ...``).

``m.partition()``, ``graphdef.merge(state)``, ``m.update_state(state)``, ``State(items)``,
``state.filter(...)``, ``State.union(...)``, ``Context(jax.random.key(seed))``, ``ctx.make_rng()``,
``ctx.fork()``, and the core's layers, as :class:`~.core.CoreAdapter` calls them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from nnx_conformance.spec._render import LibraryRenderer
from nnx_conformance.spec.repro import Call, Lit, Unsupported

__all__ = ["CoreRenderer"]

_NAMES = ("Module", "Variable", "State", "Context", "Linear", "BatchNorm", "Dropout", "Block")


class CoreRenderer(LibraryRenderer):
    target = "nnx_conformance.core"

    def describe_target(self) -> str:
        return "in the reference core's own code (nnx_conformance.core)"

    def library_imports(self, body: str) -> list[str]:
        text = body + "\n".join(f"class {t}(Module)" for t in self.type_names())
        used = [n for n in _NAMES if re.search(rf"\b{n}\b", text)]
        return [f"from nnx_conformance.core import {', '.join(used)}"] if used else []

    def new_variable(self, collection: str, value: str, sharding: tuple[str | None, ...] | None) -> str:
        extra = "" if sharding is None else f", sharding={sharding!r}"
        return f"Variable({collection!r}, {value}{extra})"

    def op_partition(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.partition()"

    def op_merge(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.merge({args[1]})"

    def op_update(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.update_state({args[1]})"

    def op_make_state(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"State({args[0]})"

    def op_filter(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        for f in step.args[1:]:
            if not isinstance(f, Lit):
                raise Unsupported("a filter that is not a literal")
        return f"{args[0]}.filter({', '.join(args[1:])})"

    def op_union(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"State.union({', '.join(args)})" if args else "State()"

    def op_new_context(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        """An integer seed is ``jax.random.key(seed)``; a key (a drawn key, or raw uint32 data as a literal)
        is the Context's key as is, as :meth:`~.core.CoreAdapter.new_context` does."""
        if _is_int_seed(step):
            return f"Context(jax.random.key({args[0]}))"
        return f"Context({args[0]})"

    def op_make_rng(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.make_rng()"

    def op_fork(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.fork()"

    def op_make_rng_stream(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.make_rng({args[1]})"

    def op_from_stream(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.from_stream({args[1]})"

    def op_split(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.split({args[1]})"

    def op_layer_linear(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        din, dout = self.arg(args, kwargs, 0, "din"), self.arg(args, kwargs, 1, "dout")
        ctx = self.arg(args, kwargs, 2, "ctx")
        sharding = self.arg(args, kwargs, 3, "sharding", "None")
        extra = "" if sharding == "None" else f", sharding={sharding}"
        return f"Linear({din}, {dout}, ctx={ctx}{extra})"

    def op_layer_batch_norm(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"BatchNorm({self.arg(args, kwargs, 0, 'din')})"

    def op_layer_dropout(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"Dropout({self.arg(args, kwargs, 0, 'rate')})"

    def op_layer_block(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        din, dout = self.arg(args, kwargs, 0, "din"), self.arg(args, kwargs, 1, "dout")
        return f"Block({din}, {dout}, ctx={self.arg(args, kwargs, 2, 'ctx')})"

    def op_layer_call(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        layer, x = args[0], self.arg(args, kwargs, 1, "x")
        train, ctx = kwargs.get("train", "False"), kwargs.get("ctx", "None")
        kind = self.layer_kind(step.args[0])
        if kind == "linear":
            call = f"{layer}({x})"
        elif kind == "batch_norm":
            call = f"{layer}({x}, train={train})"
        else:
            call = f"{layer}({x}, train={train}, ctx={ctx})"
        return call

    def entry(self, state: str, path: Sequence[str]) -> str:
        return f"{state}[{tuple(path)!r}]"

    def obs_value(self, x: str) -> str:
        return f"np.asarray({x}.value)"

    def obs_collection(self, x: str) -> str:
        return f"{x}.collection"

    def obs_sharding(self, x: str) -> str:
        return f"{x}.sharding"

    def obs_type_name(self, x: str) -> str:
        return f"type({x}).__name__"

    def obs_attr_names(self, x: str) -> str:
        return f"sorted(vars({x}))"

    def obs_paths(self, x: str) -> str:
        return f"list({x})"

    def obs_key_data(self, x: str) -> str:
        return f"np.asarray(jax.random.key_data({x}))"

    def obs_is_module(self, x: str) -> str:
        return f"isinstance({x}, Module)"

    def obs_is_variable(self, x: str) -> str:
        return f"isinstance({x}, Variable)"


def _is_int_seed(step: Call) -> bool:
    """Whether a recorded ``new_context`` was given an integer seed (a literal int), not a key."""
    if not step.args or not isinstance(step.args[0], Lit):
        return False
    value = step.args[0].value
    return isinstance(value, int) and not isinstance(value, bool)
