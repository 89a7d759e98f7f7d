"""A long-lived child interpreter for checks an implementation may not survive.

A partition that walks a cycle recursively ends in ``RecursionError`` at best, and a ``RecursionError``
raised deep inside JAX's tree flattening leaves the thread's trace state broken: every later flax module
construction or ``jax.jit`` in that thread raises again, which would poison every later test of the run.
Such checks run here instead, in a child interpreter that rebuilds the adapter from its import spec.

One child serves a whole property run (one per process and adapter: starting JAX and flax takes seconds,
an example milliseconds). Each check body runs in a fresh thread of the child, under a recorder
(:func:`~nnx_conformance.spec._recording.run_recorded`), so breakage that is local to a thread counts
against the example that caused it and not the next one; the child's main thread then checks itself and
the child quits when it is broken too. A body that does not return in time, or kills the child, is a
crash of that example; the next one gets a fresh child. The child exits with its parent
(:func:`~nnx_conformance.spec.isolation.exit_with_parent`).

A failing body's recording travels back with its message, and :func:`run_in_sandbox` makes it the
example's own (:func:`~nnx_conformance.spec._recording.adopt`): the reproduction is the script of the
steps the body took, which a user runs in a fresh interpreter of their own.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import pickle
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from hypothesis import note

from nnx_conformance.spec import _recording
from nnx_conformance.spec.isolation import adapter_spec, child_environment, exit_with_parent
from nnx_conformance.strategies import Blueprint, NodeRef, NodeSpec, VarRef, VarSpec, build, canonical, read

__all__ = ["PLAIN_TREE", "jit_plus_one", "run_in_sandbox"]

PLAIN_TREE = Blueprint(
    (NodeSpec("A", (("a", VarRef(0)), ("c", NodeRef(1)))), NodeSpec("B", (("b", VarRef(1)),))),
    (VarSpec.of("params", np.arange(2, dtype=np.float32)), VarSpec.of("batch_stats", np.float32(3.0))),
)
"""A tree every implementation handles: a module, a submodule, two Variables (the health check)."""

_REPLY = "nnx-conformance-sandbox:"
"""Prefix of the child's reply lines (anything else the implementation prints is ignored)."""
START_TIMEOUT = 180.0
"""Seconds for the child to import the implementation (JAX and flax take a few)."""
BODY_TIMEOUT = 60.0
"""Seconds for one check body on a graph of a few modules: milliseconds when it works; past this it
loops."""


def run_in_sandbox(impl: Any, body: Callable[..., None], *args: Any) -> None:
    """Run ``body(impl, *args, say=...)`` in the sandbox child for ``impl`` (``body`` a module-level
    function, ``args`` picklable; ``say`` takes the notes a property would make with ``hypothesis.note``).

    Returns if the body passed; raises ``AssertionError`` with its message if it failed, carrying its
    recording into this example's (a property's reproduction); raises ``AssertionError`` saying how if
    the child died or did not answer within :data:`BODY_TIMEOUT`.
    """
    reply = _sandbox(impl).run(body, args)
    for line in reply.get("notes", ()):
        note(line)
    if "crashed" in reply:
        raise AssertionError(f"in the sandbox interpreter, {body.__name__} {reply['crashed']}")
    if "error" not in reply:
        raise AssertionError(f"in the sandbox interpreter, {body.__name__} ended without a verdict: {reply}")
    if reply["error"] is None:
        return
    transcript = reply.get("transcript")
    recorded = (
        pickle.loads(base64.b64decode(transcript))
        if transcript
        else _recording.Transcript((), None, reply.get("unpicklable", "the recording did not come back"))
    )
    raise _recording.adopt(recorded, reply["error"])


class Sandbox:
    """The child interpreter for one adapter (see the module docstring); :meth:`run` returns the child's
    reply as data, or ``{"crashed": why}``."""

    def __init__(self, impl: Any) -> None:
        spec = adapter_spec(impl)
        if spec is None:
            raise ValueError(
                f"adapter {impl!r} cannot be rebuilt in a child interpreter (needed for checks it might not "
                "survive): give it a 'spec' attribute ('pkg.module:Attr') or define its class at module level"
            )
        self.spec = spec
        self.timed_out: float | None = None
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the child, closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from {__name__} import sandbox_main; sandbox_main()", spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=child_environment(),
        )
        ready = self._read(START_TIMEOUT)
        if ready is None or "ready" not in ready:
            why = self._death("starting")
            self.close()
            raise RuntimeError(f"the sandbox interpreter for {spec} did not start: {why}")

    def run(self, body: Callable[..., None], args: tuple[Any, ...]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        request = base64.b64encode(pickle.dumps((body, args)))
        try:
            self.proc.stdin.write(request + b"\n")
            self.proc.stdin.flush()
        except OSError:
            return {"crashed": self._death("receiving the check")}
        reply = self._read(BODY_TIMEOUT)
        if reply is None:
            return {"crashed": self._death("running the check")}
        if reply.get("main_broken"):
            self.close()  # the next example gets a fresh child
        return reply

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _read(self, timeout: float) -> dict[str, Any] | None:
        """The next reply, or ``None`` if the child died or took longer than ``timeout`` seconds."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if not ready:
                break
            line = self.proc.stdout.readline()
            if not line:
                return None
            if line.startswith(_REPLY.encode()):
                return dict(json.loads(line[len(_REPLY) :]))
        self.proc.kill()
        self.proc.wait()
        self.timed_out = timeout
        return None

    def _death(self, doing: str) -> str:
        if self.timed_out is not None:
            return f"did not return within {self.timed_out:.0f} s (it loops, or recurses without bound)"
        code = self.proc.wait()
        self.stderr.seek(0)
        tail = "\n".join(self.stderr.read().decode(errors="replace").strip().splitlines()[-12:])
        return f"killed the child interpreter while {doing} (return code {code}):\n{tail}"

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.stderr.close()


_SANDBOXES: dict[str, Sandbox] = {}


def _sandbox(impl: Any) -> Sandbox:
    """The live child for ``impl``'s import spec, started on first use (one per process and adapter)."""
    key = adapter_spec(impl) or repr(impl)
    box = _SANDBOXES.get(key)
    if box is None or not box.alive():
        if box is not None:
            box.close()
        box = _SANDBOXES[key] = Sandbox(impl)
    return box


@atexit.register
def _close_all() -> None:
    for box in _SANDBOXES.values():
        box.close()


# -- in the child ---------------------------------------------------------------------------------------------


def sandbox_main() -> None:  # pragma: no cover - runs in the child
    """The child's loop: one pickled ``(body, args)`` per stdin line, one reply line each; after each, the
    main thread checks itself and the child quits if it is broken."""
    from nnx_conformance.spec import registry

    exit_with_parent()
    spec = sys.argv[1]
    impl = registry.load(registry.ImplSpec(name=spec, target=spec))
    out = sys.stdout
    sys.stdout = sys.stderr  # whatever the implementation prints must not garble the replies
    out.write(_REPLY + json.dumps({"ready": True}) + "\n")
    out.flush()
    for line in sys.stdin:
        body, args = pickle.loads(base64.b64decode(line))
        reply: dict[str, Any] = {}
        worker = threading.Thread(target=_run_into, args=(impl, body, args, reply))
        worker.start()
        worker.join()
        _pack(reply)
        main_broken = health(impl)
        reply["main_broken"] = main_broken
        out.write(_REPLY + json.dumps(reply) + "\n")
        out.flush()
        if main_broken:
            return


def _run_into(impl: Any, body: Callable[..., None], args: tuple[Any, ...], reply: dict[str, Any]) -> None:
    notes: list[str] = []
    reply["notes"] = notes
    try:
        error, transcript = _recording.run_recorded(impl, body, *args, say=notes.append)
    except BaseException as err:  # SystemExit, KeyboardInterrupt... from the implementation: a verdict too
        reply["error"] = err
        return
    reply["error"] = error
    if error is not None:
        reply["transcript"] = transcript


def _pack(reply: dict[str, Any]) -> None:
    """Make the reply JSON in the main thread: a thread that a ``RecursionError`` inside JAX broke may not
    even format an error or pickle a transcript (its recursion depth no longer unwinds)."""
    error = reply.get("error")
    if error is not None and not isinstance(error, AssertionError):
        reply["error"] = (
            f"{_recording.describe_error(error)}\n  (raised in the sandbox interpreter outside the property's "
            f"checks, at {_recording.short_trace(error)}: the implementation left the thread unable to run them)"
        )
    elif error is not None:
        reply["error"] = str(error)
    transcript = reply.pop("transcript", None)
    if transcript is None:
        return
    try:
        reply["transcript"] = base64.b64encode(pickle.dumps(transcript)).decode()
    except Exception as err:  # an unpicklable literal: the failure still counts, its script is incomplete
        reply["unpicklable"] = f"the recording could not be sent back ({_recording.describe_error(err)})"


def jit_plus_one() -> Any:
    """``jax.jit`` of a new function (a fresh trace, not a cache hit) on 1.0, which is 2.0 in a working
    thread; in one whose trace state a ``RecursionError`` inside JAX broke, this raises."""
    return jax.jit(lambda x: x + 1)(np.float32(1.0))


def health(impl: Any) -> str | None:
    """``None`` if this thread can still build, partition and merge a plain tree and run ``jax.jit``;
    otherwise what failed."""
    try:
        root = build(PLAIN_TREE, impl).root
        state, graphdef = impl.partition(root)
        merged = impl.merge(graphdef, state)
        if read(merged, impl) != canonical(PLAIN_TREE):
            return "a plain tree partitioned and merged is not the same tree"
        if float(jit_plus_one()) != 2.0:
            return "jax.jit(lambda x: x + 1)(1.0) is not 2.0"
    except BaseException as err:
        return f"{type(err).__name__}: {err}"[:1000]
    return None
