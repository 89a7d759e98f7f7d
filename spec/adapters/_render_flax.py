"""Reproductions in plain ``flax.nnx`` (graph mode), as :class:`~.flax.FlaxAdapter` drives it, or in tree
mode (:class:`FlaxTreeRenderer`, for :class:`~.flax_tree.FlaxTreeAdapter`).

Each protocol operation is written as the flax call the adapter makes: ``nnx.split(m, graph=True)``,
``nnx.merge``, ``nnx.update``, ``nnx.from_flat_state``, ``nnx.filter_state(s, nnx.Any(...))``,
``nnx.merge_state``, ``nnx.Rngs(jax.random.key(seed))``, ``rngs()``, ``rngs.fork()``, ``nnx.Linear`` /
``nnx.BatchNorm(momentum=0.95)`` / ``nnx.Dropout``. Collections are Variable types: ``params`` is
``nnx.Param``, ``batch_stats`` is ``nnx.BatchStat``, any other name a subclass of ``nnx.Variable`` named
after it. The script imports nothing of the conformance suite.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from nnx_conformance.spec._render import LibraryRenderer, identifier
from nnx_conformance.spec.adapters.flax import FEATURES, sharding_metadata
from nnx_conformance.spec.repro import Call, Lit, Unsupported

__all__ = ["FlaxRenderer", "FlaxTreeRenderer"]

_BUILTIN = {"params": "nnx.Param", "batch_stats": "nnx.BatchStat"}
_EAGER = ", 'eager_sharding': False" if FEATURES.eager_sharding_keyword else ""


def _metadata(sharding: tuple[str | None, ...]) -> dict[str, object]:
    """The keyword arguments annotating a Variable with ``sharding`` in the installed flax."""
    return sharding_metadata(sharding)


class FlaxRenderer(LibraryRenderer):
    target = "flax.nnx"
    module_base = "nnx.Module"
    graph_mode: ClassVar[bool] = True
    """The mode ``nnx.split`` is pinned to, as the adapter pins it (:class:`FlaxTreeRenderer`: tree mode)."""

    def describe_target(self) -> str:
        import flax

        mode = "graph mode" if self.graph_mode else "tree mode (graph=False)"
        return f"in plain flax.nnx, {mode} (flax {flax.__version__}); it needs only flax, jax and numpy"

    def library_imports(self, body: str) -> list[str]:
        return ["from flax import nnx"]

    def classes(self) -> list[tuple[str, str]]:
        custom = [(c, "nnx.Variable") for c in self.collections() if c not in _BUILTIN]
        for name, _ in custom:
            if not identifier(name):
                raise Unsupported(f"collection {name!r} is not a Python identifier")
        return [*super().classes(), *custom]

    def variable_type(self, collection: str) -> str:
        return _BUILTIN.get(collection, collection)

    def new_variable(self, collection: str, value: str, sharding: tuple[str | None, ...] | None) -> str:
        extra = "" if sharding is None else "".join(f", {k}={v!r}" for k, v in _metadata(sharding).items())
        return f"{self.variable_type(collection)}({value}{extra})"

    # -- operations --------------------------------------------------------------------------------------
    def op_partition(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str | list[str]:
        mode = f", graph={self.graph_mode}" if FEATURES.graph_keyword else ""  # before 0.12: graph mode only
        split = f"nnx.split({args[0]}{mode})"
        if len(step.outputs) == 2:
            state, graphdef = step.outputs
            return [f"{graphdef}, {state} = {split}"]
        return split

    def op_merge(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"nnx.merge({args[0]}, {args[1]})"

    def op_update(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"nnx.update({args[0]}, {args[1]})"

    def op_make_state(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"nnx.from_flat_state({args[0]})"

    def op_filter(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        parts = []
        for f in step.args[1:]:
            if not isinstance(f, Lit):
                raise Unsupported("a filter that is not a literal")
            if isinstance(f.value, str):
                parts.append(self.variable_type(f.value))
            else:
                parts.append(self.predicate(f.value))
        return f"nnx.filter_state({args[0]}, nnx.Any({', '.join(parts)}))"

    def predicate(self, f: object) -> str:
        from nnx_conformance.spec._render import predicate_source

        body = predicate_source(f, "tuple(str(k) for k in path)")
        if body is None:
            raise Unsupported(f"no source for the filter {f!r}")
        return f"lambda path, variable: {body}"

    def op_union(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"nnx.merge_state({', '.join(args)})" if args else "nnx.State({})"

    def op_new_context(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        """An integer seed becomes ``jax.random.key(seed)``; a key (typed, or raw uint32 data, which flax
        0.12's ``RngStream`` wraps itself) is given to ``nnx.Rngs`` as is, as ``FlaxRngStreams`` does."""
        seed = step.args[0]
        if isinstance(seed, Lit) and isinstance(seed.value, int) and not isinstance(seed.value, bool):
            return f"nnx.Rngs(jax.random.key({args[0]}))"
        # jnp.asarray: raw key data in a script is a numpy array, and RngStream wraps only jax uint32 arrays.
        return f"nnx.Rngs(jnp.asarray({args[0]}))"

    def op_make_rng_stream(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}[{args[1]}]()"

    def op_from_stream(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"nnx.Rngs({args[0]}[{args[1]}])"

    def op_split(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        if FEATURES.rngs_split:
            return f"{args[0]}.split({args[1]})"
        return f"{args[0]}.fork(split={args[1]})"

    def op_make_rng(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}()"

    def op_fork(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        return f"{args[0]}.fork()"

    def op_layer_linear(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        din, dout = self.arg(args, kwargs, 0, "din"), self.arg(args, kwargs, 1, "dout")
        ctx = self.arg(args, kwargs, 2, "ctx")
        sharding = self.arg(args, kwargs, 3, "sharding", "None")
        metadata = f"{{{FEATURES.sharding_key!r}: {sharding}{_EAGER}}}"
        if sharding == "None":
            extra = ""
        elif FEATURES.linear_kernel_metadata:
            extra = f", kernel_metadata={metadata}"
        else:  # before 0.12 the metadata comes with the initialiser
            extra = f", kernel_init=nnx.with_metadata(nnx.initializers.lecun_normal(), **{metadata})"
        return f"nnx.Linear({din}, {dout}, rngs={ctx}{extra})"

    def op_layer_batch_norm(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        din, ctx = self.arg(args, kwargs, 0, "din"), self.arg(args, kwargs, 1, "ctx")
        return f"nnx.BatchNorm({din}, momentum=0.95, rngs={ctx})"

    def op_layer_dropout(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        rate = self.arg(args, kwargs, 0, "rate")
        return f"nnx.Dropout({rate})  # built without rngs: they come with each call"

    def op_layer_block(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        raise Unsupported(
            "the seed's Block has no plain flax.nnx counterpart (the adapter defines FlaxBlock)"
        )

    def op_layer_call(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        layer, x = args[0], self.arg(args, kwargs, 1, "x")
        train, ctx = kwargs.get("train", "False"), kwargs.get("ctx", "None")
        kind = self.layer_kind(step.args[0])
        if kind == "linear":
            call = f"{layer}({x})"
        elif kind == "batch_norm":
            call = f"{layer}({x}, use_running_average=not {train})"
        elif kind == "dropout":
            call = f"{layer}({x}, deterministic=not {train}, rngs={ctx})"
        else:
            raise Unsupported(f"a call of a {kind} layer")
        return call

    # -- observations ------------------------------------------------------------------------------------
    def entry(self, state: str, path: Sequence[str]) -> str:
        return f"dict(nnx.to_flat_state({state}))[{tuple(path)!r}]"

    def obs_value(self, x: str) -> str:
        return f"np.asarray({x}.get_value())" if FEATURES.get_value else f"np.asarray({x}.value)"

    def obs_collection(self, x: str) -> str:
        fn = self.helper(
            "collection",
            "def collection(variable):\n"
            '    """The collection a flax Variable stands for: nnx.Param is "params", nnx.BatchStat\n'
            '    "batch_stats", any other Variable type its class name."""\n'
            '    return {nnx.Param: "params", nnx.BatchStat: "batch_stats"}.get(type(variable), type(variable).__name__)',
        )
        return f"{fn}({x})"

    def obs_sharding(self, x: str) -> str:
        fn = self.helper(
            "sharding_of",
            "def sharding_of(variable):\n"
            f'    """A flax Variable\'s sharding annotation (its {FEATURES.sharding_key} metadata), as a tuple or None."""\n'
            f"    sharding = variable.get_metadata().get({FEATURES.sharding_key!r})\n"
            "    return None if sharding is None else tuple(sharding)",
        )
        return f"{fn}({x})"

    def obs_type_name(self, x: str) -> str:
        return f"type({x}).__name__"

    def obs_attr_names(self, x: str) -> str:
        fn = self.helper(
            "attr_names",
            "def attr_names(module):\n"
            '    """A module\'s graph attributes: vars() minus the bookkeeping every nnx.Module carries."""\n'
            "    return sorted(set(vars(module)) - set(vars(nnx.Module())))",
        )
        return f"{fn}({x})"

    def obs_paths(self, x: str) -> str:
        return f"[tuple(str(k) for k in path) for path, _ in nnx.to_flat_state({x})]"

    def obs_key_data(self, x: str) -> str:
        return f"np.asarray(jax.random.key_data({x}))"

    def obs_is_module(self, x: str) -> str:
        return f"isinstance({x}, nnx.Module)"

    def obs_is_variable(self, x: str) -> str:
        return f"isinstance({x}, nnx.Variable)"


class FlaxTreeRenderer(FlaxRenderer):
    """Reproductions for :class:`~.flax_tree.FlaxTreeAdapter`: ``nnx.split(m, graph=False)``; the other
    operations are spelled alike in both modes (``nnx.merge`` follows the definition's kind)."""

    graph_mode: ClassVar[bool] = False
