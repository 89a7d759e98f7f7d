"""``FlaxFeatures``: the flax adapter's feature detection, and each branch it selects, on the installed flax.

One adapter serves flax 0.10 to 0.12 by probing features instead of parsing versions. CI installs one flax
(0.12), so the older branches are exercised here by swapping the detected features for an older release's
(0.12 still accepts the older spellings: ``kernel_init=nnx.with_metadata(...)``, ``Rngs.fork(split=n)``).
The full spec on the older releases themselves is ``benchmarks/flax_releases.py``
(``docs/flax_releases.md``).
"""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx", reason="flax is not installed (pip install -e '.[flax]')")
flax = pytest.importorskip("flax")

from nnx_conformance.spec import expectations  # noqa: E402
from nnx_conformance.spec.adapters import _flax_features, _flax_rng, _render_flax  # noqa: E402
from nnx_conformance.spec.adapters import flax as flax_adapter  # noqa: E402
from nnx_conformance.spec.adapters.flax import FEATURES, FlaxAdapter, FlaxFeatures  # noqa: E402
from nnx_conformance.spec.clauses import properties, spec_clauses  # noqa: E402

FLAX_012 = flax.__version__.startswith("0.12.")

OLD_011 = dataclasses.replace(
    FEATURES,
    graph_keyword=False,
    split_rngs_graph_keyword=False,
    get_value=False,
    metadata_by_name=False,
    linear_kernel_metadata=False,
    rngs_split=False,
)
"""What 0.11.2 answers (measured there), bar the two answers the installed flax's Variables depend on: the
sharding metadata name, and ``eager_sharding=False`` (without it 0.12 demands a mesh at construction)."""


@pytest.fixture
def as_older_flax(monkeypatch):
    """Run the adapter as it runs where the installed flax lacks 0.12's additions."""
    for module in (_flax_features, flax_adapter, _flax_rng, _render_flax):
        monkeypatch.setattr(module, "FEATURES", OLD_011)


@pytest.mark.skipif(not FLAX_012, reason="pins what flax 0.12 answers")
def test_flax_012_is_detected_with_every_addition():
    assert FlaxFeatures(
        graph_keyword=True,
        split_rngs_graph_keyword=True,
        variable_leaves=True,
        get_value=True,
        sharding_key="out_sharding",
        eager_sharding_keyword=True,
        metadata_by_name=True,
        linear_kernel_metadata=True,
        rngs_split=True,
    ) == FEATURES


def test_detection_probes_the_class_not_an_instance():
    """``rngs.split`` on an instance is a stream named ``split``, callable whatever the release: the probe
    must ask the class, or 0.11 would claim ``Rngs.split`` and fail ``rng.split`` with a ``TypeError``."""
    assert callable(nnx.Rngs(0).split)
    assert FlaxFeatures.detect().rngs_split == ("split" in vars(nnx.Rngs))


def test_expectations_follow_the_state_leaf_feature():
    assert Path(flax_adapter.expectations_file(FEATURES)).name == "flax.txt"
    snapshots = dataclasses.replace(FEATURES, variable_leaves=False)
    assert Path(flax_adapter.expectations_file(snapshots)).name == "flax-0.10.txt"
    assert FlaxAdapter.expectations == flax_adapter.expectations_file(FEATURES)


@pytest.mark.parametrize("name", ["flax.txt", "flax-0.10.txt"])
def test_every_flax_expectations_file_names_known_clauses_and_properties(name):
    path = Path(flax_adapter.expectations_file()).with_name(name)
    known = set(spec_clauses()) | {fn.__name__ for fns in properties().values() for fn in fns}
    entries = expectations.parse(path)
    assert entries and all(e.key in known for e in entries), [e.key for e in entries if e.key not in known]


def test_flax_tree_keeps_its_own_expectations():
    from nnx_conformance.spec.adapters.flax_tree import FlaxTreeAdapter

    assert FlaxTreeAdapter.expectations is None  # so the registry picks spec/expectations/flax-tree.txt


def test_sharded_linear_without_kernel_metadata_annotates_the_kernel(as_older_flax):
    impl = FlaxAdapter()
    layer = impl.layers.linear(3, 4, impl.new_context(0), sharding=(None, "model"))
    assert impl.variable_sharding(layer.kernel) == (None, "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # .value, as before 0.12 (0.12 warns)
        kernel = np.asarray(impl.variable_value(layer.kernel))
    assert kernel.shape == (3, 4) and float(np.std(kernel)) > 0
    assert impl.variable_sharding(layer.bias) is None


def test_split_without_rngs_split_forks_with_split(as_older_flax):
    impl = FlaxAdapter()
    ctx = impl.new_context(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # 0.12 deprecates fork(split=)
        children = impl.split(ctx, 3)
    keys = np.asarray(jax.random.key_data(children.default.key.get_value()))
    assert keys.shape[0] == 3 and len({tuple(k) for k in keys}) == 3


def test_reproductions_spell_the_older_api_and_run(as_older_flax):
    """A reproduction printed on an older flax uses what that flax has; 0.12 still runs both spellings."""
    FlaxRenderer = _render_flax.FlaxRenderer
    linear = FlaxRenderer.op_layer_linear(FlaxRenderer, None, ["3", "4", "ctx", "(None, 'model')"], {})
    split = FlaxRenderer.op_split(FlaxRenderer, None, ["ctx", "3"], {})
    assert "kernel_init=nnx.with_metadata(" in linear and "kernel_metadata" not in linear
    assert split == "ctx.fork(split=3)"
    namespace = {"nnx": nnx, "ctx": nnx.Rngs(0)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        layer = eval(linear, namespace)
        children = eval(split, namespace)
    assert FlaxAdapter().variable_sharding(layer.kernel) == (None, "model")
    assert np.asarray(jax.random.key_data(children.default.key.get_value())).shape[0] == 3
