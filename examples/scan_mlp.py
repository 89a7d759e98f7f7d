"""The seed notebook's scan-over-layers example, on the reference core.

Builds ``ScanMLP(hidden_size=10, n_layers=5)`` (4 stacked Blocks plus a final Linear), runs one training
call, prints the state's shapes and the ModuleDef, then splits the state into ``params`` and
``batch_stats`` and joins it back. Unlike the seed, the stacked batch statistics stay ``(4, 10)`` after
training (the seed printed ``(4, 1, 10)``).

Run: ``python examples/scan_mlp.py``.
"""

import jax
import jax.numpy as jnp

from nnx_conformance.core import Context, ScanMLP, State


def main():
    module = ScanMLP(hidden_size=10, n_layers=5, ctx=Context(jax.random.key(0)))
    x = jax.random.normal(jax.random.key(0), (2, 10))
    y = module(x, train=True, ctx=Context(jax.random.key(1)))
    print("y.shape =", y.shape)

    state, moduledef = module.partition()
    print("state =", jax.tree_util.tree_map(jnp.shape, state))
    print("moduledef =", moduledef)

    # split by collection ...
    params = state.filter("params")
    batch_stats = state.filter("batch_stats")
    print("params =", jax.tree_util.tree_map(jnp.shape, params))
    print("batch_stats =", jax.tree_util.tree_map(jnp.shape, batch_stats))

    # ... and join back: the union is the original state, in canonical order
    state = State.union(params, batch_stats)
    assert list(state) == list(module.partition()[0])
    assert state["layers", "bn", "mean"].value.shape == (4, 10)

    # the functional round trip: merge gives an independent module that computes the same thing
    y_eval = moduledef.merge(state)(x, train=False, ctx=Context(jax.random.key(2)))
    print("eval output shape =", y_eval.shape)


if __name__ == "__main__":
    main()
