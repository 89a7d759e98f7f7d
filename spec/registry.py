"""Finding the implementations a run should check.

An implementation is named by a short name (``core``, ``seed``, ``flax``, or any name a third-party
package registers in the ``nnx_conformance`` entry-point group) or by an import spec
``pkg.module:Attr``. ``Attr`` may be an adapter class (instantiated without arguments), a factory
function, or an adapter instance. The spec string travels with the adapter (``adapter.spec``) so a check
that must run in a subprocess can rebuild the same adapter there.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from nnx_conformance.spec.adapter import Adapter

ENTRY_POINT_GROUP = "nnx_conformance"
ENV_VAR = "NNX_IMPL"
DEFAULT_IMPL = "core"

BUILTINS = {
    "core": "nnx_conformance.spec.adapters.core:CoreAdapter",
    "seed": "nnx_conformance.spec.adapters.seed:SeedAdapter",
    "flax": "nnx_conformance.spec.adapters.flax:FlaxAdapter",
    "flax-tree": "nnx_conformance.spec.adapters.flax_tree:FlaxTreeAdapter",
}

_EXPECTATIONS_DIR = Path(__file__).with_name("expectations")


class ImplementationError(Exception):
    """An ``--nnx-impl`` entry that cannot be turned into an adapter; the message says why."""


@dataclasses.dataclass(frozen=True)
class ImplSpec:
    """One implementation requested for this run."""

    name: str
    target: str
    """``pkg.module:Attr`` to import."""

    def __str__(self) -> str:
        return self.name


def parse_impls(option: str | None, environ: dict[str, str] | None = None) -> list[ImplSpec]:
    """The implementations named by ``--nnx-impl`` (or ``$NNX_IMPL``, or ``core``), in order, deduplicated."""
    env = os.environ if environ is None else environ
    raw = option if option else env.get(ENV_VAR) or DEFAULT_IMPL
    specs: list[ImplSpec] = []
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        spec = resolve(entry)
        if spec.name in {s.name for s in specs}:
            continue
        specs.append(spec)
    if not specs:
        raise ImplementationError(f"--nnx-impl {raw!r} names no implementation")
    return specs


def _registered() -> dict[str, str]:
    found = dict(BUILTINS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = ep.value
    return found


def resolve(entry: str) -> ImplSpec:
    """Turn one ``--nnx-impl`` entry into an :class:`ImplSpec` without importing it yet."""
    if ":" in entry:
        module, _, attr = entry.partition(":")
        if not module or not attr:
            raise ImplementationError(f"--nnx-impl entry {entry!r} must look like 'pkg.module:Attr'")
        return ImplSpec(name=entry, target=entry)
    known = _registered()
    if entry not in known:
        raise ImplementationError(
            f"unknown implementation {entry!r}; known: {', '.join(sorted(known))}, "
            "or give an import spec 'pkg.module:Attr'"
        )
    return ImplSpec(name=entry, target=known[entry])


_CACHE: dict[str, Any] = {}


def _where(err: BaseException) -> str:
    """``file:line`` of the innermost frame of ``err``'s traceback, to point at the user's code."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f" (at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno})" if tb is not None else ""


def load(spec: ImplSpec) -> Adapter:
    """Import and instantiate the adapter (once per process).

    Whatever goes wrong -- a missing package, an exception raised while importing the module or in the
    adapter's constructor -- becomes one :class:`ImplementationError` that names the implementation, the
    step, the original exception and where it was raised.
    """
    if spec.target in _CACHE:
        return _CACHE[spec.target]
    module_name, _, attr = spec.target.partition(":")
    what = f"implementation {spec.name!r}" + (f" ({spec.target})" if spec.target != spec.name else "")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImplementationError(
            f"cannot import {module_name!r} for {what}: {type(err).__name__}: {err}. Install the package "
            "in this environment, or put its folder on sys.path (e.g. run pytest from that folder or set "
            "PYTHONPATH)"
        ) from err
    except Exception as err:
        raise ImplementationError(
            f"importing {module_name!r} for {what} raised {type(err).__name__}: {err}{_where(err)}"
        ) from err
    try:
        obj = getattr(module, attr)
    except AttributeError as err:
        raise ImplementationError(
            f"{module_name!r} has no attribute {attr!r} ({what}); check the name after the ':'"
        ) from err
    if callable(obj) and not _looks_like_adapter(obj):
        try:
            adapter = obj()
        except Exception as err:
            raise ImplementationError(
                f"calling {spec.target}() to make the adapter for {what} raised "
                f"{type(err).__name__}: {err}{_where(err)}"
            ) from err
    else:
        adapter = obj
    with contextlib.suppress(AttributeError):  # a frozen adapter keeps its spec in the ImplSpec only
        adapter.spec = spec.target
    _CACHE[spec.target] = adapter
    return adapter


def adapter_info(adapter: Any) -> dict[str, Any]:
    """What the report says about an adapter: plain JSON data (it travels from xdist workers)."""
    info: dict[str, Any] = {"name": getattr(adapter, "name", None)}
    target = getattr(adapter, "spec", None)
    if target:
        info["target"] = target
    version = getattr(adapter, "version", None)
    if version:
        info["version"] = str(version)
    caps = getattr(adapter, "capabilities", None)
    if dataclasses.is_dataclass(caps) and not isinstance(caps, type):
        info["capabilities"] = {
            k: (sorted(v) if isinstance(v, frozenset) else v)
            for k, v in dataclasses.asdict(caps).items()
            if k != "reserved_names"
        }
        max_depth = info["capabilities"].get("max_depth")
        if isinstance(max_depth, int) and max_depth < 10_000:
            info["note"] = f"declared max_depth {max_depth}"
    return info


def _looks_like_adapter(obj: Any) -> bool:
    return not isinstance(obj, type) and isinstance(obj, Adapter)


def expectations_path(spec: ImplSpec, adapter: Any | None = None) -> Path | None:
    """The known-deviations file for an implementation: the adapter's own, else a built-in one."""
    own = getattr(adapter, "expectations", None)
    if own:
        return Path(own)
    if BUILTINS.get(spec.name) != spec.target:
        return None
    builtin = _EXPECTATIONS_DIR / f"{spec.name}.txt"
    return builtin if builtin.exists() else None
