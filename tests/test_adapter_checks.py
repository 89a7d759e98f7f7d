"""``nnx_conformance.spec.checked``: adapters are validated where they enter the suite.

Static problems (:func:`problems` / :func:`validate`), the proxy's transparency (every attribute forwarded,
return values unchanged, ``spec`` pointing at the real adapter), one test per return-shape check (each
raises :class:`AdapterError` naming the adapter and the method), and end to end: the reference core passes
real properties through ``checked()``, while adapters with the three bugs that motivated the module (``"a/b"``
string paths, ``partition`` returning one value, a dict as ``capabilities``) are stopped with the method's
name instead of passing or failing three calls later.
"""

from __future__ import annotations

import pickle
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from mutants.harness import leaf_exceptions, run_property

from nnx_conformance.spec.adapter import Adapter, Capabilities
from nnx_conformance.spec.adapters.core import CoreAdapter, CoreLayers
from nnx_conformance.spec.checked import (
    ADAPTER_METHODS,
    LAYERS_METHODS,
    RNG_SPLIT_METHODS,
    RNG_STREAMS_METHODS,
    AdapterError,
    CheckedAdapter,
    checked,
    problems,
    take_violations,
    unwrap,
    validate,
)
from nnx_conformance.spec.clauses import properties
from nnx_conformance.spec.isolation import adapter_spec

# ---------------------------------------------------------------------------------------------------------
# Adapters with one defect each (module level, so a child process could rebuild them from their spec)
# ---------------------------------------------------------------------------------------------------------


class StrPaths(CoreAdapter):
    """Keys its state by ``"a/b"`` strings: iterated as characters, they used to pass graph.roundtrip."""

    def state_items(self, state: Any) -> list[tuple[Any, Any]]:
        return [("/".join(path), var) for path, var in state.items()]


class PartitionReturnsOne(CoreAdapter):
    """Returns the state alone: used to fail later with ``'tuple' object has no attribute 'merge'``."""

    def partition(self, module: Any) -> Any:
        state, _ = module.partition()
        return state


class DictCapabilities(CoreAdapter):
    """A dict as capabilities: used to crash the terminal summary."""

    def __init__(self) -> None:
        self.capabilities = {"cycles": True, "layers": True}  # type: ignore[assignment]


def _returning(method: str, value: Any, base: type = CoreAdapter) -> Any:
    """An adapter whose ``method`` returns ``value`` whatever it is given."""
    return type(f"Returns_{method}", (base,), {method: lambda self, *a, **k: value})()


def _graph(impl: Any) -> Any:
    """``root.child.w`` (a Variable) and ``root.n = 3`` (a static), built through ``impl``."""
    root, child = impl.new_module("Root"), impl.new_module("Child")
    impl.set_attr(root, "child", child)
    impl.set_attr(child, "w", impl.new_variable("params", np.float32(1.0)))
    impl.set_attr(root, "n", 3)
    return root


def _raises(call: Any, method: str, *needles: str) -> AdapterError:
    with pytest.raises(AdapterError) as info:
        call()
    message = str(info.value)
    assert info.value.method == method
    assert f"{method}()" in message, message
    assert message.startswith("adapter 'core' ("), message
    for needle in needles:
        assert needle in message, f"{needle!r} not in: {message}"
    assert "\n" not in message, message
    return info.value


# ---------------------------------------------------------------------------------------------------------
# problems() and validate()
# ---------------------------------------------------------------------------------------------------------


def test_protocol_methods_are_read_from_the_protocol() -> None:
    assert ADAPTER_METHODS[0] == "new_module" and ADAPTER_METHODS[-1] == "vmap"
    assert {"partition", "merge", "state_items", "key_data", "fork"} <= set(ADAPTER_METHODS)
    assert len(ADAPTER_METHODS) == 23
    assert LAYERS_METHODS == ("linear", "batch_norm", "dropout", "block", "call")


@pytest.mark.parametrize(
    "target",
    [
        "nnx_conformance.spec.adapters.core:CoreAdapter",
        "nnx_conformance.spec.adapters.seed:SeedAdapter",
        "nnx_conformance.spec.adapters.flax:FlaxAdapter",
    ],
)
def test_builtin_adapters_have_no_problem(target: str) -> None:
    module, _, attr = target.partition(":")
    adapter = getattr(pytest.importorskip(module), attr)()
    assert problems(adapter) == []
    validate(adapter, target)  # does not raise
    assert problems(checked(adapter)) == []


class _Bare:
    """Declares nothing at all."""


def test_missing_methods_are_named_in_one_message() -> None:
    found = problems(_Bare())
    missing = [p for p in found if p.startswith("missing methods ")]
    assert len(missing) == 1
    for method in ADAPTER_METHODS:
        assert method in missing[0]
    assert "nnx_conformance.spec.adapter.Adapter" in missing[0]
    assert any(p.startswith("has no name") for p in found)
    assert any(p.startswith("has no capabilities") and "Capabilities(" in p for p in found)
    assert any(p.startswith("has no layers") and "layers = None" in p for p in found)


OPTIONAL_RNG_METHODS = (*RNG_STREAMS_METHODS, *RNG_SPLIT_METHODS)
"""The core claims rng_streams and rng_split: a stub copying its capabilities needs these too."""


def test_one_missing_method_and_a_non_callable_one() -> None:
    class NoFork(CoreAdapter):
        fork = None  # type: ignore[assignment]

    assert problems(NoFork()) == [
        "fork is None (a NoneType), not a method: define def fork(self, ...) as in "
        "nnx_conformance.spec.adapter.Adapter"
    ]

    no_key_data = type(
        "NoKeyData",
        (),
        {m: getattr(CoreAdapter, m) for m in (*ADAPTER_METHODS, *OPTIONAL_RNG_METHODS) if m != "key_data"},
    )
    stub = no_key_data()
    stub.name, stub.capabilities, stub.layers = "stub", CoreAdapter.capabilities, CoreAdapter.layers
    assert problems(stub) == [
        "missing method key_data: every method of nnx_conformance.spec.adapter.Adapter is required (one for "
        "a feature disclaimed in capabilities may just raise NotImplementedError)"
    ]


@pytest.mark.parametrize("name", ["", 3, None, b"core"])
def test_name_must_be_a_non_empty_str(name: Any) -> None:
    adapter = CoreAdapter()
    adapter.name = name  # type: ignore[assignment]
    [problem] = problems(adapter)
    assert problem.startswith(f"name is {name!r} (a") and "non-empty str" in problem


def test_capabilities_as_a_dict_names_the_type_and_the_fix() -> None:
    [problem] = problems(DictCapabilities())
    assert "capabilities is {'cycles': True, 'layers': True} (a dict)" in problem
    assert "Capabilities(**{'cycles': True, 'layers': True})" in problem
    with pytest.raises(AdapterError) as info:
        validate(DictCapabilities(), "mylib_conformance:Adapter")
    message = str(info.value)
    assert message.startswith(
        "adapter 'core' (mylib_conformance:Adapter): 1 problem with the adapter protocol"
    )
    assert "\n- capabilities is {" in message


def test_capabilities_as_the_class_or_another_object() -> None:
    class ClassCaps(CoreAdapter):
        capabilities = Capabilities  # type: ignore[assignment]

    class TupleCaps(CoreAdapter):
        capabilities = (True, True)  # type: ignore[assignment]

    assert problems(ClassCaps()) == [
        "capabilities is the Capabilities class itself: instantiate it, capabilities = Capabilities()"
    ]
    [problem] = problems(TupleCaps())
    assert "(True, True) (a tuple), not a nnx_conformance.spec.adapter.Capabilities" in problem
    assert "Capabilities(...)" in problem


def test_capability_fields_have_their_declared_types() -> None:
    class Mistyped(CoreAdapter):
        capabilities = Capabilities(  # type: ignore[arg-type]
            cycles=1, rng="yes", max_depth=0, reserved_names={"x"}
        )

    found = problems(Mistyped())
    assert found == [
        "capabilities.cycles is 1 (an int), not a bool: write Capabilities(cycles=True) or "
        "Capabilities(cycles=False)",
        "capabilities.max_depth is 0 (an int), not a positive int: write Capabilities(max_depth=N) with N >= 1",
        "capabilities.rng is 'yes' (a str), not a bool: write Capabilities(rng=True) or Capabilities(rng=False)",
        "capabilities.reserved_names is {'x'} (a set), not a frozenset of str: write "
        "Capabilities(reserved_names=frozenset({'name', ...}))",
    ]
    for bad in (True, 2.5, -1):
        adapter = CoreAdapter()
        adapter.capabilities = Capabilities(max_depth=bad)  # type: ignore[arg-type]
        [problem] = problems(adapter)
        assert problem.startswith("capabilities.max_depth is ")
    adapter.capabilities = Capabilities(reserved_names=frozenset({"ok", 3}))  # type: ignore[arg-type]
    [problem] = problems(adapter)
    assert problem.startswith("capabilities.reserved_names is frozenset(")


def test_layers_none_exactly_when_layers_are_disclaimed() -> None:
    claimed_but_none = CoreAdapter()
    claimed_but_none.layers = None  # type: ignore[assignment]
    [problem] = problems(claimed_but_none)
    assert problem.startswith("layers is None but capabilities.layers is true")
    assert "Capabilities(..., layers=False)" in problem and "provide a LayersAdapter" in problem

    disclaimed_but_given = CoreAdapter()
    disclaimed_but_given.capabilities = Capabilities(layers=False)
    [problem] = problems(disclaimed_but_given)
    assert "but capabilities.layers is false: set layers = None" in problem
    assert "Capabilities(..., layers=True)" in problem

    consistent = CoreAdapter()
    consistent.capabilities = Capabilities(layers=False)
    consistent.layers = None  # type: ignore[assignment]
    assert problems(consistent) == []


def test_claimed_layers_need_every_layers_method() -> None:
    class HalfLayers:
        def linear(self, din: int, dout: int, ctx: Any, sharding: Any = None) -> Any: ...

        block = "not a method"

    adapter = CoreAdapter()
    adapter.layers = HalfLayers()  # type: ignore[assignment]
    assert problems(adapter) == [
        "layers (HalfLayers) has no batch_norm, dropout, call: a LayersAdapter "
        "(nnx_conformance.spec.adapter.LayersAdapter) needs linear, batch_norm, dropout, block, call",
        "layers.block is 'not a method' (a str), not a method: define def block(self, ...)",
        "capabilities.scan_mlp is true but layers (HalfLayers) has no scan_mlp: define def scan_mlp(self, "
        "hidden, n_layers, ctx) (nnx_conformance.spec.adapter.ScanMLPLayers), or leave scan_mlp=False (the "
        "default) so that layers.scan-mlp is skipped",
    ]


def test_scan_mlp_is_optional_but_a_claim_needs_the_method() -> None:
    class OldLayers(CoreLayers):  # written before scan_mlp existed: valid, the clause is skipped
        scan_mlp = None  # type: ignore[assignment]

    assert Capabilities().scan_mlp is False
    old = CoreAdapter()
    old.capabilities = Capabilities(reserved_names=CoreAdapter.capabilities.reserved_names)
    old.layers = OldLayers()  # type: ignore[assignment]
    assert problems(old) == []
    claimed = CoreAdapter()
    claimed.layers = OldLayers()  # type: ignore[assignment]
    assert problems(claimed) == [
        "layers.scan_mlp is None (a NoneType), not a method: define def scan_mlp(self, ...)"
    ]
    without_layers = CoreAdapter()
    without_layers.capabilities = Capabilities(layers=False, scan_mlp=True)
    without_layers.layers = None  # type: ignore[assignment]
    [problem] = problems(without_layers)
    assert problem.startswith("capabilities.scan_mlp is true but capabilities.layers is false")


def test_rng_streams_and_split_are_optional_but_a_claim_needs_the_methods() -> None:
    assert Capabilities().rng_streams is False and Capabilities().rng_split is False
    assert CoreAdapter.capabilities.rng_streams and CoreAdapter.capabilities.rng_split
    assert problems(CoreAdapter()) == []

    class Old(CoreAdapter):  # written before the optional methods existed: valid, the clauses are skipped
        capabilities = Capabilities(reserved_names=CoreAdapter.capabilities.reserved_names, scan_mlp=True)
        from_stream = None  # type: ignore[assignment]

    assert problems(Old()) == []

    class Claims(Old):
        capabilities = CoreAdapter.capabilities

    assert problems(Claims()) == [
        "from_stream is None (a NoneType), not a method: define def from_stream(self, ...)"
    ]
    no_split = type(
        "NoSplit", (), {m: getattr(CoreAdapter, m) for m in (*ADAPTER_METHODS, *RNG_STREAMS_METHODS)}
    )
    stub = no_split()
    stub.name, stub.capabilities, stub.layers = "stub", CoreAdapter.capabilities, CoreAdapter.layers
    assert problems(stub) == [
        "capabilities.rng_split is true but the adapter has no split: define def split(self, ...) "
        "(nnx_conformance.spec.adapter.RngSplit), or leave rng_split=False (the default) so that rng.split is "
        "skipped"
    ]
    no_rng = CoreAdapter()
    no_rng.capabilities = Capabilities(rng=False, rng_split=True)
    assert problems(no_rng)[0].startswith("capabilities.rng_split is true but capabilities.rng is false")


def test_batch_norm_without_momentum_is_named_with_the_fix() -> None:
    class NoMomentum(CoreLayers):
        def batch_norm(self, din: int, ctx: Any) -> Any:  # type: ignore[override]
            return super().batch_norm(din, ctx)

    adapter = CoreAdapter()
    adapter.layers = NoMomentum()  # type: ignore[assignment]
    proxy = checked(adapter)
    ctx = adapter.new_context(0)
    assert proxy.layers.batch_norm(2, ctx) is not None  # the default needs no momentum
    err = _raises(lambda: proxy.layers.batch_norm(2, ctx, momentum=0.9), "layers.batch_norm", "momentum")
    assert "def batch_norm(self, din, ctx, momentum=0.95)" in str(err)


def test_spec_and_expectations_when_set() -> None:
    adapter = CoreAdapter()
    adapter.spec = "no_colon"  # type: ignore[attr-defined]
    adapter.expectations = 42  # type: ignore[attr-defined]
    found = problems(adapter)
    assert len(found) == 2
    assert found[0].startswith("spec is 'no_colon' (a str)") and "'pkg.module:Attr'" in found[0]
    assert found[1].startswith("expectations is 42 (an int)")
    adapter.spec = "pkg.mod:Attr"  # type: ignore[attr-defined]
    adapter.expectations = None  # type: ignore[attr-defined]
    assert problems(adapter) == []


def test_a_class_is_not_an_adapter() -> None:
    [problem] = problems(CoreAdapter)
    assert "nnx_conformance.spec.adapters.core:CoreAdapter is a class" in problem
    assert "CoreAdapter()" in problem
    with pytest.raises(AdapterError, match="instantiate it"):
        checked(CoreAdapter)


def test_validate_lists_every_problem_one_bullet_per_line() -> None:
    with pytest.raises(AdapterError) as info:
        validate(_Bare(), "mylib_conformance:Adapter")
    lines = str(info.value).splitlines()
    assert lines[0] == (
        "adapter (mylib_conformance:Adapter): 4 problems with the adapter protocol "
        "(nnx_conformance.spec.adapter.Adapter):"
    )
    assert len(lines) == 5 and all(line.startswith("- ") for line in lines[1:])
    assert info.value.method is None
    assert isinstance(info.value, TypeError)


def test_validate_labels_with_the_spec_when_no_target_is_given() -> None:
    with pytest.raises(AdapterError) as info:
        validate(DictCapabilities())
    assert str(info.value).startswith(f"adapter 'core' ({DictCapabilities.__module__}:DictCapabilities): 1 ")


# ---------------------------------------------------------------------------------------------------------
# The proxy is transparent
# ---------------------------------------------------------------------------------------------------------


def test_proxy_forwards_every_attribute() -> None:
    adapter = CoreAdapter()
    adapter.version = "1.2"  # type: ignore[attr-defined]
    adapter.expectations = "/tmp/x.txt"  # type: ignore[attr-defined]
    adapter.scan_mlp = "extra"  # type: ignore[attr-defined]
    proxy = checked(adapter)
    assert proxy.name == "core"
    assert proxy.capabilities is adapter.capabilities
    assert proxy.version == "1.2" and proxy.expectations == "/tmp/x.txt" and proxy.scan_mlp == "extra"
    assert unwrap(proxy.layers) is adapter.layers
    assert proxy.layers is proxy.layers  # one view, not a new one per access
    with pytest.raises(AttributeError):
        proxy.no_such_attribute  # noqa: B018
    proxy.spec = "pkg.mod:Attr"  # writes go to the adapter (registry.load sets adapter.spec)
    assert adapter.spec == "pkg.mod:Attr"  # type: ignore[attr-defined]
    assert proxy.spec == "pkg.mod:Attr"
    del proxy.version
    assert not hasattr(adapter, "version")
    assert set(ADAPTER_METHODS) <= set(dir(proxy)) and "scan_mlp" in dir(proxy)
    assert isinstance(proxy, Adapter)


def test_layers_extras_are_forwarded() -> None:
    seed = pytest.importorskip("nnx_conformance.spec.adapters.seed")
    proxy = checked(seed.SeedAdapter())
    assert proxy.layers.scan_mlp.__func__ is seed.SeedLayers.scan_mlp


def test_spec_names_the_wrapped_adapter_not_the_proxy() -> None:
    proxy = checked(CoreAdapter())
    assert proxy.spec == "nnx_conformance.spec.adapters.core:CoreAdapter"
    assert adapter_spec(proxy) == "nnx_conformance.spec.adapters.core:CoreAdapter"
    assert checked(StrPaths()).spec == f"{StrPaths.__module__}:StrPaths"

    def local() -> Any:
        class Local(CoreAdapter):
            pass

        return Local()

    assert checked(local()).spec is None  # not importable: no spec invented
    with pytest.raises(TypeError, match="has no import spec"):
        CheckedAdapter()  # what a child process would meet if isolation fell back to the proxy class


def test_no_double_wrapping_unwrap_repr_equality() -> None:
    adapter = CoreAdapter()
    proxy = checked(adapter)
    assert checked(proxy) is proxy
    assert unwrap(proxy) is adapter and unwrap(adapter) is adapter
    assert repr(proxy) == f"checked({adapter!r})"
    assert repr(proxy.layers) == f"checked({adapter.layers!r})"
    again = checked(adapter)
    assert again == proxy and hash(again) == hash(proxy)  # a jax.jit static argument must hit the cache
    assert proxy != checked(CoreAdapter()) and proxy != adapter
    restored = pickle.loads(pickle.dumps(proxy))
    assert isinstance(restored, CheckedAdapter) and type(unwrap(restored)) is CoreAdapter


def test_return_values_are_the_adapters_own_objects() -> None:
    adapter = CoreAdapter()
    proxy = checked(adapter)
    root = _graph(proxy)
    state, graphdef = proxy.partition(root)
    items = adapter.state_items(state)
    var = items[0][1]
    assert proxy.state_items(state)[0][1] is var
    assert proxy.variable_value(var) is adapter.variable_value(var)
    assert proxy.is_variable(var) is True and proxy.is_module(var) is False
    assert proxy.variable_collection(var) == "params" and proxy.variable_sharding(var) is None
    assert proxy.type_name(root) == "Root"
    assert dict(proxy.attrs(root))["n"] == 3
    merged = proxy.merge(graphdef, state)
    assert proxy.type_name(merged) == "Root"
    proxy.update(merged, state)
    union = proxy.union(proxy.filter(state, "params"), proxy.make_state([]))
    assert [p for p, _ in proxy.state_items(union)] == [("child", "w")]


def test_rng_and_transforms_work_on_tracers() -> None:
    proxy = checked(CoreAdapter())

    def draw(seed: Any) -> Any:
        ctx = proxy.new_context(seed)
        child = proxy.fork(ctx)
        return proxy.key_data(proxy.make_rng(child))

    eager = draw(0)
    assert eager.dtype == jnp.uint32
    assert np.array_equal(proxy.jit(draw)(0), eager)
    assert np.array_equal(proxy.vmap(draw)(jnp.arange(2))[0], eager)
    assert np.array_equal(jax.lax.scan(lambda c, s: (c, draw(s)), 0, jnp.arange(2))[1][0], eager)


# ---------------------------------------------------------------------------------------------------------
# Each return-shape check
# ---------------------------------------------------------------------------------------------------------

_ARGS: dict[str, tuple[Any, ...]] = {
    "new_module": ("T",),
    "attrs": (None,),
    "is_module": (None,),
    "is_variable": (None,),
    "type_name": (None,),
    "new_variable": ("params", 1.0),
    "variable_collection": (None,),
    "variable_sharding": (None,),
    "partition": (None,),
    "merge": (None, None),
    "state_items": (None,),
    "make_state": ([],),
    "filter": (None, "params"),
    "union": (),
    "new_context": (0,),
    "make_rng": (None,),
    "fork": (None,),
    "key_data": (None,),
    "jit": (abs,),
    "vmap": (abs,),
}

_KEY = jax.random.key(0)

BAD_RETURNS: list[tuple[str, Any, tuple[str, ...]]] = [
    # (method, what it returns, what the message must say)
    ("partition", "only-one", ("returned 'only-one' (a str), not a (state, graphdef) pair", "2-tuple")),
    ("partition", (1, 2, 3), ("(1, 2, 3) (a tuple) of length 3, not a (state, graphdef) pair",)),
    ("partition", None, ("returned None (a NoneType), not a (state, graphdef) pair",)),
    ("partition", (None, 1), ("returned None as the state",)),
    ("partition", [1, None], ("returned None as the graphdef",)),
    (
        "state_items",
        [("a/b", 1)],
        ("returned path 'a/b' (a str) for entry 0", "a path is a tuple of str such as ('a', 'b')"),
    ),
    ("state_items", [(("a",), 1), (["a", "b"], 2)], ("path ['a', 'b'] (a list) for entry 1", "no dict key")),
    ("state_items", [(("layers", 0), 1)], ("path ('layers', 0) for entry 0, which holds 0 (an int)", "str")),
    ("state_items", {("a",): 1}, ("returned a mapping", "list(mapping.items())")),
    ("state_items", None, ("returned None", "(path, variable) pairs")),
    ("state_items", "ab", ("returned 'ab' (a str)",)),
    ("state_items", 3, ("returned 3 (an int)",)),
    ("state_items", [(("a",), 1, 2)], ("as entry 0, not a (path, variable) pair",)),
    ("state_items", [("a",)], ("('a',) (a tuple) as entry 0, not a (path, variable) pair",)),
    ("attrs", {"a": 1}, ("returned a mapping", "list(mapping.items())")),
    ("attrs", [(1, 2)], ("returned the name 1 (an int) for entry 0",)),
    ("attrs", ["ab"], ("'ab' (a str) as entry 0, not a (name, value) pair",)),
    ("type_name", None, ("returned None (a NoneType), not a str",)),
    ("type_name", b"T", ("returned b'T' (a bytes), not a str",)),
    ("variable_collection", 3, ("returned 3 (an int), not a str", "'params'")),
    ("variable_sharding", [None, "model"], ("[None, 'model'] (a list)", "return tuple([None, 'model'])")),
    ("variable_sharding", (None, 1), ("holds 1 (an int)", "(None, 'model')")),
    ("variable_sharding", "model", ("returned 'model' (a str)",)),
    ("is_module", None, ("returned None (a NoneType), not a bool", "bool(...)")),
    ("is_module", 1, ("returned 1 (an int), not a bool",)),
    ("is_variable", jnp.asarray(True), ("not a bool",)),
    ("key_data", _KEY, ("dtype key<fry>, not uint32", "jax.random.key_data(key)")),
    ("key_data", jnp.zeros(2, jnp.int32), ("dtype int32, not uint32",)),
    ("key_data", [0, 1], ("[0, 1] (a list), which has no dtype",)),
    ("jit", None, ("returned None (a NoneType), which is not callable",)),
    ("vmap", 3, ("which is not callable",)),
] + [
    (method, None, ("returned None", "a missing 'return'"))
    for method in (
        "merge",
        "new_module",
        "new_variable",
        "new_context",
        "fork",
        "make_rng",
        "make_state",
        "filter",
        "union",
    )
]


@pytest.mark.parametrize(
    ("method", "value", "needles"), BAD_RETURNS, ids=[f"{m}-{i}" for i, (m, _, _) in enumerate(BAD_RETURNS)]
)
def test_each_bad_return_raises_adapter_error_naming_the_method(
    method: str, value: Any, needles: tuple
) -> None:
    proxy = checked(_returning(method, value))
    err = _raises(lambda: getattr(proxy, method)(*_ARGS[method]), method, *needles)
    assert take_violations(proxy) == [err]
    assert take_violations(proxy) == []


def test_every_checked_method_has_a_bad_return_case() -> None:
    unchecked = {"set_attr", "update", "variable_value"}  # return nothing the suite uses, or anything
    assert {m for m, _, _ in BAD_RETURNS} == set(ADAPTER_METHODS) - unchecked


@pytest.mark.parametrize(
    ("method", "value"),
    [
        ("state_items", [[("a",), 1]]),  # a list pair unpacks the same
        ("state_items", ()),
        ("attrs", (("a", 1),)),
        ("is_module", np.bool_(True)),  # numpy bools are bools in every use the spec makes
        ("is_variable", False),
        ("type_name", type("Name", (str,), {})("T")),  # str subclasses are str
        ("variable_sharding", ()),
        ("variable_sharding", (None, "model")),
        ("partition", ["state", "graphdef"]),  # a list pair unpacks the same
        ("key_data", np.zeros(2, np.uint32)),
        ("merge", 0),  # only None is refused: a falsy module is still a module
    ],
)
def test_accepted_shapes_are_returned_unchanged(method: str, value: Any) -> None:
    proxy = checked(_returning(method, value))
    assert getattr(proxy, method)(*_ARGS[method]) is value


def test_an_iterator_is_materialised_once_into_a_list() -> None:
    proxy = checked(_returning("state_items", None))
    type(unwrap(proxy)).state_items = lambda self, state: ((("a", str(i)), i) for i in range(3))
    items = proxy.state_items(None)
    assert items == [(("a", "0"), 0), (("a", "1"), 1), (("a", "2"), 2)]
    names = checked(_returning("attrs", None))
    type(unwrap(names)).attrs = lambda self, m: iter({"x": 1}.items())
    assert names.attrs(None) == [("x", 1)]


def test_key_data_is_checked_inside_jit_by_dtype_only() -> None:
    good = checked(CoreAdapter())
    assert good.jit(lambda k: good.key_data(k))(_KEY).dtype == jnp.uint32
    bad = checked(_returning("key_data", None))
    type(unwrap(bad)).key_data = lambda self, key: key  # forgets to unwrap the typed key
    with pytest.raises(AdapterError, match=r"key_data\(\) returned an array of dtype key<fry>"):
        jax.jit(lambda k: bad.key_data(k))(_KEY)


def test_layer_constructors_must_return_a_layer() -> None:
    class NoneLayers(CoreLayers):
        def batch_norm(self, din: int, ctx: Any) -> Any:
            return None

    adapter = CoreAdapter()
    adapter.layers = NoneLayers()  # type: ignore[assignment]
    proxy = checked(adapter)
    ctx = proxy.new_context(0)
    assert proxy.layers.linear(2, 3, ctx) is not None
    _raises(lambda: proxy.layers.batch_norm(2, ctx), "layers.batch_norm", "returned None")
    layer = proxy.layers.dropout(0.5, ctx)
    assert proxy.layers.call(layer, jnp.ones(2), train=False, ctx=ctx).shape == (2,)


def test_methods_looked_up_at_call_time() -> None:
    """A monkeypatch of the adapter after wrapping applies through the proxy (and is checked)."""
    adapter = CoreAdapter()
    proxy = checked(adapter)
    adapter.type_name = lambda module: 7  # type: ignore[method-assign,assignment]
    _raises(lambda: proxy.type_name(None), "type_name", "returned 7 (an int)")


# ---------------------------------------------------------------------------------------------------------
# End to end, through real properties
# ---------------------------------------------------------------------------------------------------------

_CLAUSES = ("graph.roundtrip", "state.union-laws")


def _properties(*clauses: str) -> list[Any]:
    found = properties()
    return [fn for cid in clauses for fn in found[cid]]


@pytest.mark.parametrize("fn", _properties(*_CLAUSES), ids=lambda fn: fn.__name__)
def test_core_passes_through_checked(fn: Any) -> None:
    proxy = checked(CoreAdapter())
    outcome = run_property(fn, proxy, shrink=False, derandomize=True, max_examples=10)
    assert not outcome.failed, outcome.describe()
    assert take_violations(proxy) == []


def _stopped(adapter: Any, method: str, clause: str) -> list[str]:
    """The properties of ``clause`` that use ``method`` fail on ``adapter`` with the AdapterError for it
    (possibly turned into an assertion by the property's own ``attempt()``, which keeps the message); the
    others pass without a violation. The proxy remembers what it raised, even where a property swallowed it.
    Returns the names of the properties that stopped."""
    proxy = checked(adapter)
    stopped = []
    for fn in _properties(clause):
        outcome = run_property(fn, proxy, shrink=False, derandomize=True, max_examples=10)
        violations = take_violations(proxy)
        if not outcome.failed:
            assert violations == [], f"{fn.__name__} passed, but the adapter broke the protocol: {violations}"
            continue
        text = " ".join(f"{type(e).__name__}: {e}" for e in leaf_exceptions(outcome.error))
        assert "AdapterError" in text and f"{method}()" in text, text
        assert violations and {v.method for v in violations} == {method}
        stopped.append(fn.__name__)
    return stopped


def test_str_paths_are_stopped_at_state_items() -> None:
    stopped = _stopped(StrPaths(), "state_items", "graph.roundtrip")
    assert "test_repartition_gives_the_same_state_and_an_equal_definition" in stopped
    assert len(_stopped(StrPaths(), "state_items", "state.union-laws")) >= 3


def test_partition_returning_one_value_is_stopped_at_partition() -> None:
    stopped = _stopped(PartitionReturnsOne(), "partition", "graph.roundtrip")
    assert len(stopped) == len(properties()["graph.roundtrip"])


def test_str_paths_used_to_be_reinterpreted() -> None:
    """Why the check exists: unchecked, the characters of ``'child/w'`` pass for a path."""
    raw = StrPaths()
    state, _ = raw.partition(_graph(raw))
    [(path, _)] = raw.state_items(state)
    assert tuple(path) == ("c", "h", "i", "l", "d", "/", "w")
    with pytest.raises(AdapterError):
        checked(raw).state_items(state)


def test_adapter_error_carries_its_parts() -> None:
    err = AdapterError("m", adapter="adapter 'x' (p:A)", method="fork")
    assert (str(err), err.adapter, err.method) == ("m", "adapter 'x' (p:A)", "fork")
    assert isinstance(err, TypeError)
