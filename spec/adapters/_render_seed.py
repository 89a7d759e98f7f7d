"""Reproductions in the seed's Tiny NNX (``spec/adapters/_tiny_nnx.py``), as :class:`~.seed.SeedAdapter`
drives it: ``"a/b"`` string keys, ``State({**a, **b})`` unions, legacy ``jax.random.PRNGKey`` keys."""

from __future__ import annotations

import re
from collections.abc import Sequence

from nnx_conformance.spec._render import LibraryRenderer, predicate_source
from nnx_conformance.spec.repro import Call, Lit, Seq, Unsupported

__all__ = ["SeedRenderer"]

_NAMES = ("Module", "Variable", "State", "Context", "Linear", "BatchNorm", "Dropout", "Block")


class SeedRenderer(LibraryRenderer):
    target = "the seed's Tiny NNX"

    def describe_target(self) -> str:
        return "in the seed's Tiny NNX (nnx_conformance.spec.adapters._tiny_nnx, the notebook's code)"

    def library_imports(self, body: str) -> list[str]:
        text = body + "\n".join(f"class {t}(Module)" for t in self.type_names())
        used = [n for n in _NAMES if re.search(rf"\b{n}\b", text)]
        if not used:
            return []
        return [f"from nnx_conformance.spec.adapters._tiny_nnx import {', '.join(used)}"]

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
        items = step.args[0] if step.args else None
        if not isinstance(items, Seq):
            if isinstance(items, Lit) and isinstance(items.value, list | tuple) and not items.value:
                return "State({})"
            raise Unsupported("make_state with items that are not spelled out")
        entries = []
        for item in items.items:
            if not isinstance(item, Seq) or len(item.items) != 2 or not isinstance(item.items[0], Lit):
                raise Unsupported("make_state with an item that is not (path, value)")
            path = item.items[0].value
            entries.append(f"{'/'.join(path)!r}: {self.expr(item.items[1])}")
        return "State({" + ", ".join(entries) + "})  # keys joined with '/'"

    def op_filter(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        parts = []
        for f in step.args[1:]:
            if not isinstance(f, Lit):
                raise Unsupported("a filter that is not a literal")
            if isinstance(f.value, str):
                parts.append(f"{args[0]}.filter({f.value!r})")
            else:
                body = predicate_source(f.value, "tuple(k.split('/'))")
                if body is None:
                    raise Unsupported(f"no source for the filter {f.value!r}")
                parts.append(f"{{k: v for k, v in {args[0]}.items() if {body}}}")
        if len(parts) == 1 and step.args[1:] and isinstance(step.args[1], Lit) and isinstance(step.args[1].value, str):
            return parts[0]
        return "State({" + ", ".join(f"**{p}" for p in parts) + "})"

    def op_union(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return "State({" + ", ".join(f"**{a}" for a in args) + "})"

    def op_new_context(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        """An integer seed is the notebook's ``random.PRNGKey(seed)``; a key is taken as is (``Context(key)``)."""
        if _is_int_seed(step):
            return f"Context(jax.random.PRNGKey({args[0]}))"
        return f"Context({args[0]})"

    def op_make_rng(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.make_rng()"

    def op_fork(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.fork()"

    def op_layer_linear(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        if self.arg(args, kwargs, 3, "sharding", "None") != "None":
            raise Unsupported("the seed's Linear has no sharding argument")
        din, dout = self.arg(args, kwargs, 0, "din"), self.arg(args, kwargs, 1, "dout")
        return f"Linear({din}, {dout}, ctx={self.arg(args, kwargs, 2, 'ctx')})"

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
        return f"{state}[{'/'.join(path)!r}]"

    def obs_value(self, x: str) -> str:
        return f"np.asarray({x}.value)"

    def obs_collection(self, x: str) -> str:
        return f"{x}.collection"

    def obs_sharding(self, x: str) -> str:
        return f"(None if {x}.sharding is None else tuple({x}.sharding))"

    def obs_type_name(self, x: str) -> str:
        return f"type({x}).__name__"

    def obs_attr_names(self, x: str) -> str:
        return f"sorted(vars({x}))"

    def obs_paths(self, x: str) -> str:
        return f"[tuple(key.split('/')) for key in {x}]"

    def obs_key_data(self, x: str) -> str:
        return f"np.asarray({x}).astype(np.uint32)"

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
