"""The sandbox interpreter (``spec/properties/_sandbox.py``): checks an implementation may not survive.

What a property relies on: a body that passes returns; a failing body's message and recorded steps come
back, so the example's reproduction is the body's script; a body that hangs or kills the child is a crash
of that example, bounded, and the next example gets a working child; and a child never outlives the
process that started it, even while it is stuck in the implementation.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from nnx_conformance.spec import _recording, _render
from nnx_conformance.spec.adapters.core import CoreAdapter
from nnx_conformance.spec.properties import _sandbox
from nnx_conformance.spec.properties._helpers import E, check

# Bodies run in the child, which imports them by reference: they live at module level here (tests/ is on
# the child's sys.path).


def passing_body(impl: Any, *, say: Any) -> None:
    root = impl.new_module("A")
    impl.set_attr(root, "w", impl.new_variable("params", 1.0))
    impl.partition(root)


def failing_body(impl: Any, value: float, *, say: Any) -> None:
    root = impl.new_module("A")
    impl.set_attr(root, "w", impl.new_variable("params", value))
    state, _ = impl.partition(root)
    entry = dict(impl.state_items(state))[("w",)]
    check(impl, E.eq(E.value(entry), E.lit(value + 1)), f"the entry at ('w',) is not {value + 1}")


def hanging_body(impl: Any, *, say: Any) -> None:
    while True:
        time.sleep(0.05)


def dying_body(impl: Any, *, say: Any) -> None:
    os._exit(41)


def exiting_body(impl: Any, *, say: Any) -> None:
    raise SystemExit(3)  # ends the thread it is raised in, silently, unless caught


def test_a_passing_body_returns():
    _sandbox.run_in_sandbox(CoreAdapter(), passing_body)


def test_a_failing_body_raises_its_message_and_its_steps_become_the_examples_reproduction(tmp_path: Path):
    impl = CoreAdapter()
    rec = _recording.start(_recording.recording(impl))
    try:
        with pytest.raises(AssertionError, match=r"the entry at \('w',\) is not 3.0") as info:
            _sandbox.run_in_sandbox(impl, failing_body, 2.0)
    finally:
        _recording.stop()
    scenario = rec.scenario(info.value, "clause", "test")
    assert scenario is not None and scenario.steps, "the child's recorded steps did not arrive"
    script = _render.ScriptRenderer(scenario).script()
    assert "a.partition(" in script and "3.0" in script
    path = tmp_path / "repro.py"
    path.write_text(script)
    run = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "is not 3.0" in run.stderr, run.stderr


def test_a_body_that_hangs_is_a_bounded_crash_and_the_next_gets_a_fresh_child(monkeypatch):
    impl = CoreAdapter()
    monkeypatch.setattr(_sandbox, "BODY_TIMEOUT", 3.0)
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"hanging_body did not return within 3 s"):
        _sandbox.run_in_sandbox(impl, hanging_body)
    assert time.monotonic() - started < 30
    _sandbox.run_in_sandbox(impl, passing_body)


def test_a_body_that_raises_system_exit_fails_and_never_reads_as_a_pass():
    with pytest.raises(AssertionError, match=r"SystemExit: 3"):
        _sandbox.run_in_sandbox(CoreAdapter(), exiting_body)


def test_a_body_that_kills_the_child_is_a_crash_with_its_return_code():
    impl = CoreAdapter()
    with pytest.raises(AssertionError, match=r"killed the child interpreter while running the check \(return code 41\)"):
        _sandbox.run_in_sandbox(impl, dying_body)
    _sandbox.run_in_sandbox(impl, passing_body)


_PARENT = """
import base64, pickle, sys, time
from nnx_conformance.spec.adapters.core import CoreAdapter
from nnx_conformance.spec.properties import _sandbox
from test_sandbox import hanging_body

box = _sandbox._sandbox(CoreAdapter())
box.proc.stdin.write(base64.b64encode(pickle.dumps((hanging_body, ()))) + b"\\n")
box.proc.stdin.flush()
print(box.proc.pid, flush=True)
time.sleep(600)
"""


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie no one has reaped yet counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL of the parent")
def test_a_child_stuck_in_the_implementation_exits_when_its_parent_is_killed():
    """A harness killed from outside (a CI time limit, a replaced xdist worker) leaves no child spinning."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_PARENT)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        time.sleep(1.0)  # the body is running: the child no longer reads its input
        assert not _gone(child)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 15
    while not _gone(child) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _gone(child), f"the sandbox child {child} still runs 15 s after its parent was killed"
