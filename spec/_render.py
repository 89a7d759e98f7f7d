"""Turning a :class:`~.repro.Scenario` into a script.

:class:`ScriptRenderer` writes the script in *adapter terms* (``a.partition(root)``): it runs on any
implementation that has an adapter. A library renderer (``spec/adapters/_render_flax.py``...) subclasses it
and overrides the methods that spell an operation, an observation or a graph, so the same scenario reads as
that library's own code. A method that cannot express something raises :class:`~.repro.Unsupported`.
"""

from __future__ import annotations

import ast
import inspect
import keyword
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from nnx_conformance.spec import _script_helpers
from nnx_conformance.spec.repro import (
    At,
    Call,
    Check,
    Code,
    Entry,
    Expr,
    Graph,
    Let,
    Lit,
    Observe,
    Py,
    Ref,
    Refusal,
    Scenario,
    Seq,
    Step,
    Unknown,
    Unsupported,
    bound,
)

__all__ = [
    "ScriptRenderer",
    "adapter_spec_of",
    "missing",
    "partial_script",
    "predicate_source",
    "property_script",
    "py_namespace",
    "raw_adapter",
]

_PLACEHOLDER = re.compile(r"\{(\d+)\}")


def raw_adapter(adapter: Any) -> Any:
    """The adapter itself, under any recording or checking wrappers."""
    from nnx_conformance.spec._recording import Recording
    from nnx_conformance.spec.checked import unwrap

    for _ in range(8):
        if isinstance(adapter, Recording):
            adapter = adapter.wrapped
            continue
        inner = unwrap(adapter)
        if inner is adapter:
            return adapter
        adapter = inner
    return adapter


def adapter_spec_of(adapter: Any) -> str | None:
    """``pkg.module:Attr`` that rebuilds ``adapter`` in a script (a registered short name resolved)."""
    from nnx_conformance.spec.isolation import adapter_spec

    spec = adapter_spec(adapter)
    if spec is None:
        return None
    if ":" not in spec:
        from nnx_conformance.spec.registry import ImplementationError, resolve

        try:
            spec = resolve(spec).target
        except ImplementationError:
            return None
    return spec


def py_namespace() -> dict[str, Any]:
    """What :class:`~.repro.Py` templates and :class:`~.repro.Let` sources may use."""
    import jax
    import jax.numpy as jnp

    return {
        "np": np,
        "jax": jax,
        "jnp": jnp,
        "same_array": _script_helpers.same_array,
        "names_path": _script_helpers.names_path,
    }


def predicate_source(f: Any, path: str) -> str | None:
    """A path predicate filter as a boolean expression over ``path`` (Python source), if known."""
    from nnx_conformance.strategies import Everything, Nothing, PathContains, PathDepth, PathPrefix

    if isinstance(f, PathPrefix):
        return f"{path}[:{len(f.prefix)}] == {tuple(f.prefix)!r}"
    if isinstance(f, PathContains):
        return f"{f.name!r} in {path}"
    if isinstance(f, PathDepth):
        return f"len({path}) <= {f.at_most}"
    if isinstance(f, Everything):
        return "True"
    if isinstance(f, Nothing):
        return "False"
    own = getattr(f, "repro_source", None)
    if callable(own):
        text = own(path)
        return text if isinstance(text, str) else None
    return None


def missing(scenario: Scenario) -> str:
    """Why the scenario cannot be rendered (an unnamed object, a name used before it is bound), or ``""``."""
    defined: set[str] = set()
    for k, step in enumerate((*scenario.steps, scenario.failure)):
        for expr in _exprs(step):
            for sub in _walk(expr):
                if isinstance(sub, Unknown):
                    return f"step {k} uses an object made outside the recorded operations ({sub.description})"
                if isinstance(sub, Ref) and sub.name not in defined:
                    return f"step {k} uses {sub.name!r} before any step binds it"
        defined.update(bound(step))
    return ""


def _single_use_variables(scenario: Scenario) -> set[str]:
    """``new_variable`` results used exactly once afterwards: written at their use (``[(path, Param(...))]``)."""
    uses: dict[str, int] = {}
    for step in (*scenario.steps, scenario.failure):
        for expr in _exprs(step):
            for sub in _walk(expr):
                if isinstance(sub, Ref):
                    uses[sub.name] = uses.get(sub.name, 0) + 1
    return {
        step.outputs[0]
        for step in scenario.steps
        if isinstance(step, Call)
        and step.op == "new_variable"
        and len(step.outputs) == 1
        and not step.raised
        and uses.get(step.outputs[0], 0) == 1
    }


def _exprs(step: Step) -> list[Expr]:
    if isinstance(step, Call):
        return [*step.args, *(v for _, v in step.kwargs)]
    if isinstance(step, Let | Code):
        return list(step.args)
    if isinstance(step, Check):
        return [step.cond]
    if isinstance(step, Refusal):
        return _exprs(step.call)
    return []


def _walk(expr: Expr) -> Iterable[Expr]:
    yield expr
    if isinstance(expr, At):
        yield from _walk(expr.base)
    elif isinstance(expr, Entry):
        yield from _walk(expr.state)
    elif isinstance(expr, Observe):
        yield from _walk(expr.of)
    elif isinstance(expr, Py):
        for arg in expr.args:
            yield from _walk(arg)
    elif isinstance(expr, Seq):
        for item in expr.items:
            yield from _walk(item)


def _helper_source(fn: Any) -> str:
    """A helper's source without its annotations (they name typing imports a script does not have)."""
    lines = inspect.getsource(fn).splitlines()
    head = re.sub(r": (Any|str|Sequence\[str\])(?=[,)])", "", lines[0])
    return "\n".join([re.sub(r" -> \w+:$", ":", head), *lines[1:]])


def _indent(lines: Sequence[str], by: str = "    ") -> list[str]:
    return [by + line if line else line for line in lines]


def _long(message: str) -> list[str] | None:
    """``message`` as one string literal per line, when it is too long for one line."""
    parts = message.splitlines(keepends=True) or [""]
    if len(parts) == 1 and len(message) < 80:
        return None
    return [f"    {part!r}" for part in parts]


def _assert_lines(cond: str, message: str) -> list[str]:
    parts = _long(message)
    return [f"assert {cond}, {message!r}"] if parts is None else [f"assert {cond}, (", *parts, ")"]


def _raise_lines(message: str) -> list[str]:
    parts = _long(message)
    return [f"raise AssertionError({message!r})"] if parts is None else ["raise AssertionError(", *parts, ")"]


class ScriptRenderer:
    """The adapter-terms script: every operation through the adapter ``a`` (``a = Adapter()``)."""

    target = "adapter"
    """What the script is written in (reported with the reproduction)."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.helpers: dict[str, str] = {}
        self.made_by: dict[str, Step] = {}
        self.inline: dict[str, str] = {}
        """Names not bound in the script: a Variable made for one use is written where it is used."""
        self._inlinable = _single_use_variables(scenario)

    # -- the script --------------------------------------------------------------------------------------
    def script(self) -> str:
        problem = missing(self.scenario)
        if problem:
            raise Unsupported(problem)
        body: list[str] = []
        for step in self.scenario.steps:
            if isinstance(step, Graph) and body:
                body.append("")
            body += self.step(step, final=False)
            for name in bound(step):
                self.made_by[name] = step
        body += ["", "# -- the failure --", *self.step(self.scenario.failure, final=True)]
        helpers: list[str] = []
        for source in self.helpers.values():
            helpers += [*source.splitlines(), "", ""]
        head = self.header()
        text = "\n".join([*body, *helpers])
        imports = self.imports(text)
        setup = self.setup()
        lines = [*head, *imports, "", ""]
        if helpers:
            lines += helpers
        if setup:
            lines += [*setup, "", ""] if isinstance(self, LibraryRenderer) else [*setup, ""]
        lines += body
        return "\n".join(lines).rstrip() + "\n"

    def header(self) -> list[str]:
        s = self.scenario
        where = " / ".join(x for x in (s.clause, s.test) if x) or "a conformance property"
        return [
            f"# Reproduction: {where}, failing on {s.implementation}.",
            f"# Written {self.describe_target()}.",
            "# Run: python <this file> -- it ends in the check that failed (exits non-zero while the bug is there).",
        ]

    def describe_target(self) -> str:
        return f"against the conformance adapter {self.scenario.adapter}"

    def imports(self, body: str) -> list[str]:
        lines = []
        if "jax." in body or "jax.numpy" in body:
            lines.append("import jax")
        if "jnp." in body:
            lines.append("import jax.numpy as jnp")
        lines.append("import numpy as np")
        if re.search(r"\bre\.", body):
            lines.insert(0, "import re")
        return [*lines, *self.library_imports(body)]

    def library_imports(self, body: str) -> list[str]:
        module, _, attr = (self.scenario.adapter or "").partition(":")
        if not module or not attr:
            raise Unsupported("the adapter has no import spec (pkg.module:Attr) to rebuild it in a script")
        return [f"from {module} import {attr}"]

    def setup(self) -> list[str]:
        module, _, attr = (self.scenario.adapter or "").partition(":")
        return [f"a = {self.make_adapter(module, attr)}"]

    @staticmethod
    def make_adapter(module: str, attr: str) -> str:
        import sys

        obj = getattr(sys.modules.get(module), attr, None)
        is_instance = obj is not None and not isinstance(obj, type) and hasattr(obj, "new_module")
        return attr if is_instance else f"{attr}()"

    def helper(self, name: str, source: str) -> str:
        self.helpers.setdefault(name, source)
        return name

    def script_helper(self, name: str) -> str:
        return self.helper(name, _helper_source(getattr(_script_helpers, name)))

    # -- steps -------------------------------------------------------------------------------------------
    def step(self, step: Step, *, final: bool) -> list[str]:
        if isinstance(step, Graph):
            lines = self.graph(step)
            if step.raised:
                lines = [f"# building this graph raises {_one_line(step.raised)}", *lines]
            return lines
        if isinstance(step, Call):
            if not final and step.outputs and step.outputs[0] in self._inlinable:
                lines = self.call(Call(step.op, step.args, step.kwargs, ()))
                if len(lines) == 1:
                    self.inline[step.outputs[0]] = lines[0]
                    return []
                return self.guarded(self.call(step), step.raised, final)
            return self.guarded(self.call(step), step.raised, final)
        if isinstance(step, Let):
            lines = [f"{step.output} = {self.template(step.source, step.args)}"]
            return self.guarded(lines, step.raised, final)
        if isinstance(step, Code):
            return self.guarded(self.code(step), step.raised, final)
        if isinstance(step, Check):
            return self.check(step)
        if isinstance(step, Refusal):
            return self.refusal(step, final=final)
        raise Unsupported(f"unknown step {type(step).__name__}")

    def guarded(self, lines: list[str], raised: str | None, final: bool) -> list[str]:
        if not raised:
            return lines
        if final:
            return [f"# the implementation raises here: {_one_line(raised)}", *lines]
        return [
            "try:",
            *_indent(lines),
            "except Exception:",
            f"    pass  # raised {_one_line(raised)}; went on",
        ]

    def code(self, step: Code) -> list[str]:
        if step.adapter_terms and self.target != "adapter":
            raise Unsupported("a step written in adapter terms")
        return self.template(step.source, step.args).splitlines()

    def check(self, step: Check) -> list[str]:
        return _assert_lines(self.expr(step.cond), step.message)

    def refusal(self, step: Refusal, *, final: bool) -> list[str]:
        call = self.call(Call(step.call.op, step.call.args, step.call.kwargs, ()))
        if not final:
            return ["try:", *_indent(call), "except Exception:", "    pass  # refused, as it must be", ""]
        names_path = self.script_helper("names_path")
        paths = ", ".join(repr(p) for p in step.paths)
        return [
            "try:",
            *_indent(call),
            "except Exception as err:",
            "    message = f'{type(err).__name__}: {err}'",
            f"    assert any({names_path}(message, path) for path in [{paths}]), (",
            f"        {step.unnamed!r} + message",
            "    )",
            "else:",
            *_indent(_raise_lines(step.accepted)),
        ]

    # -- graphs ------------------------------------------------------------------------------------------
    def graph(self, step: Graph) -> list[str]:
        from nnx_conformance.strategies import EdgeKind, NodeRef, VarRef, oracle
        from nnx_conformance.strategies._internal.snippet import summary

        bp = step.blueprint
        o = oracle(bp)
        kinds = {(e.src, e.name): e.kind for e in o.edges}
        lines = [f"# a graph of {summary(bp)}"]
        lines += [f"{step.nodes[i]} = {self.new_module(node.type_name)}" for i, node in enumerate(bp.nodes)]
        for j, name in enumerate(step.variables):
            if name is not None:
                var = bp.variables[j]
                lines.append(f"{name} = {self.new_variable_spec(var)}  # shared")
        for i, node in enumerate(bp.nodes):
            for attr, ref in node.attrs:
                comment = ""
                if isinstance(ref, NodeRef):
                    value = step.nodes[ref.index]
                    kind = kinds.get((i, attr))
                    comment = (
                        "  # cycle"
                        if kind is EdgeKind.CYCLE
                        else "  # shared"
                        if kind is EdgeKind.SHARED
                        else ""
                    )
                elif isinstance(ref, VarRef):
                    shared = step.variables[ref.index]
                    value = shared if shared is not None else self.new_variable_spec(bp.variables[ref.index])
                else:
                    value = self.literal(ref.value)
                lines.append(self.set_attr(step.nodes[i], attr, value) + comment)
        return lines

    def new_variable_spec(self, var: Any) -> str:
        sharding = None if var.sharding is None else tuple(var.sharding)
        return self.new_variable(var.collection, self.literal(var.array()), sharding)

    def new_module(self, type_name: str) -> str:
        return f"a.new_module({type_name!r})"

    def new_variable(self, collection: str, value: str, sharding: tuple[str | None, ...] | None) -> str:
        extra = "" if sharding is None else f", {sharding!r}"
        return f"a.new_variable({collection!r}, {value}{extra})"

    def set_attr(self, module: str, name: str, value: str) -> str:
        return f"a.set_attr({module}, {name!r}, {value})"

    # -- operations --------------------------------------------------------------------------------------
    def call(self, step: Call) -> list[str]:
        method = getattr(self, "op_" + step.op.replace("layers.", "layer_"), None)
        if method is None:
            raise Unsupported(f"operation {step.op}")
        args = [self.expr(a) for a in step.args]
        kwargs = {k: self.expr(v) for k, v in step.kwargs}
        result = method(step, args, kwargs)
        lines = result if isinstance(result, list) else [self.assign(step.outputs, result)]
        if step.same_as and lines:
            same = ", ".join(f"{new} is {old}" for new, old in step.same_as)
            lines[-1] += f"  # the same object: {same}"
        return lines

    @staticmethod
    def assign(outputs: Sequence[str], expr: str) -> str:
        return f"{', '.join(outputs)} = {expr}" if outputs else expr

    def generic_call(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str | list[str]:
        """``a.<op>(...)``: an expression (the caller assigns the outputs), or whole lines."""
        parts = [*args, *(f"{k}={v}" for k, v in kwargs.items())]
        owner = "a.layers" if step.op.startswith("layers.") else "a"
        return f"{owner}.{step.op.removeprefix('layers.')}({', '.join(parts)})"

    op_new_module = op_set_attr = op_new_variable = op_partition = op_merge = op_update = generic_call
    op_make_state = op_filter = op_union = generic_call
    op_new_context = op_make_rng = op_fork = generic_call
    op_layer_linear = op_layer_batch_norm = op_layer_dropout = op_layer_block = op_layer_call = generic_call

    # -- expressions -------------------------------------------------------------------------------------
    def expr(self, expr: Expr) -> str:
        if isinstance(expr, Ref):
            return self.inline.get(expr.name, expr.name)
        if isinstance(expr, Lit):
            return self.literal(expr.value)
        if isinstance(expr, At):
            return self.at(self.expr(expr.base), expr.path)
        if isinstance(expr, Entry):
            return self.entry(self.expr(expr.state), expr.path)
        if isinstance(expr, Observe):
            return str(getattr(self, "obs_" + expr.what)(self.expr(expr.of)))
        if isinstance(expr, Py):
            return self.template(expr.template, expr.args)
        if isinstance(expr, Seq):
            inner = ", ".join(self.expr(item) for item in expr.items)
            if expr.kind == "list":
                return f"[{inner}]"
            return f"({inner},)" if len(expr.items) == 1 else f"({inner})"
        if isinstance(expr, Unknown):
            raise Unsupported(f"an object made outside the recorded operations ({expr.description})")
        raise Unsupported(f"unknown expression {type(expr).__name__}")

    def template(self, template: str, args: Sequence[Expr]) -> str:
        rendered = [self.expr(a) for a in args]
        text = _PLACEHOLDER.sub(lambda m: _atom(rendered[int(m.group(1))]), template)
        for name in ("same_array", "names_path"):
            if re.search(rf"\b{name}\(", template):
                self.script_helper(name)
        return text

    def at(self, base: str, path: Sequence[str]) -> str:
        at = self.helper(
            "at",
            "def at(module, *names):\n"
            '    """The object reached from `module` through the attributes `names`."""\n'
            "    for name in names:\n"
            "        module = dict(a.attrs(module))[name]\n"
            "    return module",
        )
        return f"{at}({base}, {', '.join(repr(n) for n in path)})"

    def entry(self, state: str, path: Sequence[str]) -> str:
        entry = self.helper(
            "entry",
            "def entry(state, path):\n"
            '    """The state\'s entry (Variable) at `path`."""\n'
            "    return {tuple(p): v for p, v in a.state_items(state)}[tuple(path)]",
        )
        return f"{entry}({state}, {tuple(path)!r})"

    def obs_value(self, x: str) -> str:
        return f"np.asarray(a.variable_value({x}))"

    def obs_collection(self, x: str) -> str:
        return f"a.variable_collection({x})"

    def obs_sharding(self, x: str) -> str:
        fn = self.helper(
            "sharding_of",
            "def sharding_of(variable):\n"
            "    sharding = a.variable_sharding(variable)\n"
            "    return None if sharding is None else tuple(sharding)",
        )
        return f"{fn}({x})"

    def obs_type_name(self, x: str) -> str:
        return f"a.type_name({x})"

    def obs_attr_names(self, x: str) -> str:
        return f"sorted(name for name, _ in a.attrs({x}))"

    def obs_paths(self, x: str) -> str:
        return f"[tuple(p) for p, _ in a.state_items({x})]"

    def obs_hash(self, x: str) -> str:
        return f"hash({x})"

    def obs_key_data(self, x: str) -> str:
        return f"np.asarray(a.key_data({x}))"

    def obs_leaves(self, x: str) -> str:
        return f"[np.asarray(leaf) for leaf in jax.tree_util.tree_leaves({x})]"

    def obs_tree_keys(self, x: str) -> str:
        return f"[jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path({x})[0]]"

    def obs_is_module(self, x: str) -> str:
        return f"a.is_module({x})"

    def obs_is_variable(self, x: str) -> str:
        return f"a.is_variable({x})"

    # -- literals ----------------------------------------------------------------------------------------
    def literal(self, value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "float('nan')"
            if math.isinf(value):
                return "float('inf')" if value > 0 else "-float('inf')"
            return repr(value)
        if value is None or isinstance(value, bool | int | str | bytes | complex):
            return repr(value)
        if isinstance(value, tuple):
            inner = ", ".join(self.literal(v) for v in value)
            return f"({inner},)" if len(value) == 1 else f"({inner})"
        if isinstance(value, list):
            return "[" + ", ".join(self.literal(v) for v in value) + "]"
        if isinstance(value, frozenset):  # members sorted by their text: the same script on every run
            return (
                "frozenset({" + ", ".join(sorted(self.literal(v) for v in value)) + "})"
                if value
                else "frozenset()"
            )
        if isinstance(value, np.ndarray):
            dtype = _np_dtype(value.dtype)
            return f"np.array({self.literal(value.tolist())}, {dtype})"
        if isinstance(value, np.generic):
            return f"{_np_dtype(value.dtype)}({self.literal(value.item())})"
        if callable(value):
            return self.predicate(value)
        raise Unsupported(f"no literal for {type(value).__name__}")

    def predicate(self, f: Any) -> str:
        body = predicate_source(f, "path")
        if body is None:
            raise Unsupported(f"no source for the filter {f!r}")
        return f"lambda path, variable: {body}"


def _np_dtype(dtype: Any) -> str:
    name = np.dtype(dtype).name
    return "np.bool_" if name == "bool" else (f"np.{name}" if hasattr(np, name) else f"np.dtype({name!r})")


_ATOMS = (
    ast.Name,
    ast.Attribute,
    ast.Call,
    ast.Subscript,
    ast.Constant,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Set,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
)


def _atom(text: str) -> str:
    """``text`` parenthesized unless it is already an atom (a name, call, subscript, literal...)."""
    try:
        node = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return f"({text})"
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and text.strip().startswith("-")
    ):
        return f"({text})"
    return text if isinstance(node, _ATOMS) else f"({text})"


def _one_line(text: str, limit: int = 160) -> str:
    first = " ".join(text.split())
    return first if len(first) <= limit else first[: limit - 3] + "..."


# ---------------------------------------------------------------------------------------------------------
# The other two kinds of script
# ---------------------------------------------------------------------------------------------------------


def property_script(
    function: str,
    kwargs: dict[str, Any],
    adapter: str,
    *,
    implementation: str,
    clause: str | None,
    why: str = "",
    hypothesis: bool = True,
) -> str | None:
    """The property ``function`` (``pkg.module:name``) called on the adapter with ``kwargs``: for checks
    that run in traced functions or a child interpreter, where no step-by-step script exists. A
    Hypothesis property's body runs once inside a one-example ``@given`` (so that ``note()`` works)."""
    module, _, name = function.partition(":")
    renderer = ScriptRenderer.__new__(ScriptRenderer)
    try:
        args = [f"{k}={renderer.literal(v)}" for k, v in kwargs.items()]
    except Unsupported:
        return None
    a_module, _, a_attr = adapter.partition(":")
    where = " / ".join(x for x in (clause, name) if x)
    lines = [
        f"# Reproduction: {where}, failing on {implementation}.",
        "# The property's own body, run on the failing arguments: its checks are not written out step by step",
        f"# here ({_one_line(why, 90) if why else 'they run inside traced functions or a child interpreter'}).",
        "# Run: python <this file> -- it ends in the check that failed (exits non-zero while the bug is there).",
    ]
    if hypothesis:
        lines += [
            "from hypothesis import Phase, given, settings",
            "from hypothesis import strategies as st",
            "",
        ]
    lines += [
        f"from {a_module} import {a_attr}",
        f"from {module} import {name} as prop",
        "",
        f"a = {ScriptRenderer.make_adapter(a_module, a_attr)}",
    ]
    call = f"prop({', '.join(['impl=a', *args])})"
    if not hypothesis:
        return "\n".join([*lines, call]) + "\n"
    lines += [
        "prop = prop.hypothesis.inner_test  # the body, without its own search",
        "",
        "",
        "@settings(max_examples=1, phases=[Phase.generate], database=None, deadline=None)",
        "@given(st.just(None))  # run once, inside Hypothesis: the body may call note()",
        "def run(_):",
        f"    {call}",
        "",
        "",
        "run()",
    ]
    return "\n".join(lines) + "\n"


def partial_script(scenario: Scenario | None, reason: str, *, clause: str | None = None) -> str:
    """Not a reproduction: says why none could be written, and exits non-zero (with the failure's text)."""
    where = clause or "a conformance property"
    message = ""
    if scenario is not None:
        where = " / ".join(x for x in (scenario.clause, scenario.test) if x) or where
        message = scenario.message
    lines = [
        f"# No reproduction could be written for {where}: {_one_line(reason)}.",
        "# Rerun the test itself to see the failure.",
        "import sys",
        "",
        f"sys.exit({('no reproduction: ' + _one_line(message or reason, 400))!r})",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------
# A base for scripts in a library's own code
# ---------------------------------------------------------------------------------------------------------


def identifier(name: str) -> bool:
    """Whether ``name`` can be written as ``obj.name``: an identifier, no keyword, and unchanged by the NFKC
    normalisation Python applies to identifiers in source (``ａ`` would silently become ``a``)."""
    return name.isidentifier() and not keyword.iskeyword(name) and unicodedata.normalize("NFKC", name) == name


class LibraryRenderer(ScriptRenderer):
    """What library renderers share: one class per module type name (``class A(<module_base>)``),
    attributes read and set with Python syntax (``root.a.b``, ``setattr(m, 'a/b', v)`` for other names),
    and the layer a ``layers.call`` calls found from the step that made it."""

    module_base = "Module"

    def setup(self) -> list[str]:
        lines: list[str] = []
        for name, base in self.classes():
            lines += [f"class {name}({base}):", "    pass", "", ""]
        return lines[:-2]

    def classes(self) -> list[tuple[str, str]]:
        """``(class name, base)`` of every class the script defines, in order."""
        return [(t, self.module_base) for t in self.type_names()]

    def type_names(self) -> list[str]:
        names: list[str] = []
        for step in (*self.scenario.steps, self.scenario.failure):
            found: list[str] = []
            if isinstance(step, Graph):
                found = [node.type_name for node in step.blueprint.nodes]
            elif isinstance(step, Call) and step.op == "new_module" and step.args:
                arg = step.args[0]
                if not isinstance(arg, Lit) or not isinstance(arg.value, str):
                    raise Unsupported("new_module with a type name that is not a literal")
                found = [arg.value]
            for t in found:
                if not identifier(t):
                    raise Unsupported(f"module type name {t!r} is not a Python identifier")
                if t not in names:
                    names.append(t)
        return names

    def collections(self) -> list[str]:
        """Every Variable collection the script creates, in order."""
        names: list[str] = []
        for step in (*self.scenario.steps, self.scenario.failure):
            found: list[str] = []
            if isinstance(step, Graph):
                found = [v.collection for v in step.blueprint.variables]
            elif isinstance(step, Call) and step.op == "new_variable" and step.args:
                arg = step.args[0]
                if not isinstance(arg, Lit) or not isinstance(arg.value, str):
                    raise Unsupported("new_variable with a collection that is not a literal")
                found = [arg.value]
            elif isinstance(step, Call | Refusal):
                call = step.call if isinstance(step, Refusal) else step
                if call.op == "filter":  # a collection filter names a collection that may hold nothing
                    found = [
                        f.value for f in call.args[1:] if isinstance(f, Lit) and isinstance(f.value, str)
                    ]
            names += [c for c in found if c not in names]
        return names

    def new_module(self, type_name: str) -> str:
        if not identifier(type_name):
            raise Unsupported(f"module type name {type_name!r}")
        return f"{type_name}()"

    def set_attr(self, module: str, name: str, value: str) -> str:
        if identifier(name):
            return f"{module}.{name} = {value}"
        return f"setattr({module}, {name!r}, {value})"

    def at(self, base: str, path: Sequence[str]) -> str:
        out = base
        for name in path:
            out = f"{out}.{name}" if identifier(name) else f"getattr({out}, {name!r})"
        return out

    # -- operations that construct values from literal arguments ----------------------------------------
    def op_new_module(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        arg = step.args[0] if step.args else None
        if not isinstance(arg, Lit) or not isinstance(arg.value, str):
            raise Unsupported("new_module with a non-literal type name")
        return self.new_module(arg.value)

    def op_set_attr(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        name = step.args[1] if len(step.args) > 1 else None
        if not isinstance(name, Lit) or not isinstance(name.value, str) or len(args) != 3:
            raise Unsupported("set_attr with a non-literal name")
        return self.set_attr(args[0], name.value, args[2])

    def op_new_variable(self, step: Call, args: list[str], kwargs: dict[str, str]) -> str:
        collection = step.args[0] if step.args else None
        if not isinstance(collection, Lit) or not isinstance(collection.value, str) or len(args) < 2:
            raise Unsupported("new_variable with a non-literal collection")
        sharding_expr = step.args[2] if len(step.args) > 2 else dict(step.kwargs).get("sharding")
        if sharding_expr is None:
            sharding = None
        elif isinstance(sharding_expr, Lit) and (
            sharding_expr.value is None or isinstance(sharding_expr.value, tuple)
        ):
            sharding = sharding_expr.value
        else:
            raise Unsupported("new_variable with a non-literal sharding")
        return self.new_variable(collection.value, args[1], sharding)

    def layer_kind(self, expr: Expr) -> str:
        """``linear``, ``batch_norm``, ``dropout`` or ``block``: which layers method made ``expr``."""
        if isinstance(expr, Ref):
            made = self.made_by.get(expr.name)
            if isinstance(made, Call) and made.op.startswith("layers."):
                return made.op.removeprefix("layers.")
        raise Unsupported("a layer call on a layer not made by a recorded layers.* call")

    @staticmethod
    def arg(
        args: list[str], kwargs: dict[str, str], index: int, name: str, default: str | None = None
    ) -> str:
        if index < len(args):
            return args[index]
        if name in kwargs:
            return kwargs[name]
        if default is not None:
            return default
        raise Unsupported(f"missing argument {name}")
