"""Running a check in a fresh interpreter.

Some checks can break the interpreter that runs them: a recursive traversal of a 10,000-deep chain can
overflow the C stack (a segfault, not an exception), a recursive pytree flatten of a cycle leaves the
process unusable, and ``PYTHONHASHSEED`` can only be varied across processes. Those checks call
:func:`run_isolated`, which re-creates the adapter in a child process from its import spec and reports
the child's result, exception or crash as data, so the run goes on and the report names what happened.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from typing import Any

_CHILD = "from nnx_conformance.spec.isolation import _child_main; _child_main()"
PARENT_PID = "NNX_CONFORMANCE_PARENT_PID"
"""The variable that tells a child interpreter which process started it (:func:`exit_with_parent`)."""
_WATCH_INTERVAL = 0.5


@dataclasses.dataclass(frozen=True)
class IsolatedResult:
    """What happened in the child: a JSON value, an exception, or a crash."""

    returncode: int
    value: Any = None
    error: str | None = None
    """``"ExceptionType: message"`` when the function raised."""
    stderr: str = ""

    @property
    def crashed(self) -> bool:
        """The interpreter died (signal, abort, stack overflow) instead of returning or raising."""
        return self.returncode != 0

    def describe(self) -> str:
        if self.crashed:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            return f"child interpreter died with return code {self.returncode}:\n{tail}"
        return f"raised {self.error}" if self.error else f"returned {self.value!r}"


def adapter_spec(adapter: Any) -> str | None:
    """The ``pkg.module:Attr`` that rebuilds ``adapter`` in another process, if it has one."""
    spec = getattr(adapter, "spec", None)
    if spec:
        return spec
    cls = type(adapter)
    if cls.__module__ not in ("__main__", "builtins") and "<locals>" not in cls.__qualname__:
        return f"{cls.__module__}:{cls.__qualname__}"
    return None


def run_isolated(
    adapter: Any, func: str, *args: Any, env: dict[str, str] | None = None, timeout: float = 300
) -> IsolatedResult:
    """Run ``func(adapter, *args)`` (``func`` is ``pkg.module:name``) in a child interpreter.

    ``args`` and the return value must be JSON-serialisable. ``env`` adds variables (e.g.
    ``PYTHONHASHSEED``). The child sees the parent's ``sys.path`` so test-local adapters resolve, and runs
    on the parent's JAX platform (``JAX_PLATFORMS`` from ``env``, else from this process's environment,
    else the backend this process's JAX uses) without preallocating accelerator memory.
    """
    spec = adapter_spec(adapter)
    if spec is None:
        raise ValueError(
            f"adapter {adapter!r} cannot be rebuilt in a subprocess: give it a 'spec' attribute "
            "('pkg.module:Attr') or define its class at module level"
        )
    child_env = child_environment(env)
    payload = json.dumps({"adapter": spec, "func": func, "args": list(args)})
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=payload,
            capture_output=True,
            text=True,
            env=child_env,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        partial = err.stderr.decode(errors="replace") if isinstance(err.stderr, bytes) else err.stderr or ""
        return IsolatedResult(returncode=-9, stderr=f"timed out after {timeout}s\n{partial}")
    if proc.returncode != 0:
        return IsolatedResult(returncode=proc.returncode, stderr=proc.stderr)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return IsolatedResult(
        returncode=0, value=result.get("value"), error=result.get("error"), stderr=proc.stderr
    )


def child_environment(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child interpreter: this one's, plus ``env``; this process's ``sys.path`` (so
    test-local adapters resolve); the parent's JAX platform without preallocation; and the parent's pid,
    which the child watches (:func:`exit_with_parent`)."""
    child_env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **(env or {})}
    if "JAX_PLATFORMS" not in child_env:  # neither ``env`` nor this process's environment chose one
        backend = _parent_backend()
        if backend is not None:
            child_env["JAX_PLATFORMS"] = backend
    # The parent already holds the accelerator: a child grabbing 75% of its memory up front would fail.
    child_env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    child_env[PARENT_PID] = str(os.getpid())
    return child_env


def exit_with_parent() -> None:
    """In a child interpreter: exit as soon as the process that started it is gone.

    A child busy in an implementation that loops never reads its input again, so it would not notice the
    end of its pipe; when its parent is killed (a CI time limit, a pytest-xdist worker replaced, ``kill
    -9`` of a benchmark), it would spin on, orphaned. A daemon thread compares ``os.getppid()`` with the
    pid the parent wrote into :data:`PARENT_PID` (re-parenting changes it) twice a second. Portable
    where ``prctl(PR_SET_PDEATHSIG)`` is Linux only, and it cannot miss a parent that died before the
    child started.
    """
    wanted = os.environ.get(PARENT_PID, "")
    if not wanted.isdigit():
        return
    parent = int(wanted)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_INTERVAL)
        os._exit(70)  # EX_SOFTWARE; nothing is left to report to

    threading.Thread(target=watch, name="nnx-conformance-exit-with-parent", daemon=True).start()


def _parent_backend() -> str | None:
    """The platform this process's JAX computes on (``cpu``, ``gpu``, ``tpu``...), for a child to use too.

    ``None`` when JAX is not imported here (the child then picks its platform as this process would) or
    has no backend. A check run in a child judges the implementation on the platform the rest of the run
    uses, e.g. the GPU rather than a CPU fallback.
    """
    jax = sys.modules.get("jax")
    if jax is None:
        return None
    try:
        backend: str = jax.default_backend()
    except Exception:  # no backend could be initialised here; let the child report its own error
        return None
    return backend


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _child_main() -> None:  # pragma: no cover - runs in the child
    from nnx_conformance.spec import registry

    exit_with_parent()
    request = json.loads(sys.stdin.read())
    adapter = registry.load(registry.ImplSpec(name=request["adapter"], target=request["adapter"]))
    func = _resolve(request["func"])
    try:
        value = func(adapter, *request["args"])
        out: dict[str, Any] = {"value": value}
    except BaseException as err:  # reported to the parent as data
        out = {"error": f"{type(err).__name__}: {err}"[:2000]}
    sys.stdout.write("\n" + json.dumps(out) + "\n")
    sys.stdout.flush()
