"""A time bound on every spec property that a hanging implementation cannot turn into a hung run.

pytest-timeout does the bookkeeping (the ``timeout`` marker, per-test settings, set/cancel around each
test); this module implements its ``pytest_timeout_set_timer`` hook for spec properties only, because its
own ``signal`` method raises ``pytest.fail``'s exception, which Hypothesis catches as an ordinary failure
and then *shrinks*: it replays the hanging example with no timer armed, and the run hangs again. Here:

1. at the limit, ``SIGALRM`` raises :class:`SpecTimeout`, a ``BaseException`` that Hypothesis does not
   catch, so the property stops at once; its message holds the stack where the implementation was stuck;
2. if the implementation swallows it (a bare ``except BaseException``) the alarm fires again every few
   seconds;
3. if the process still has not returned to Python after a grace period (stuck in C code holding the
   interpreter), a watchdog thread prints every thread's stack and ends the process: under xdist the
   worker is replaced and the test recorded as a crash, serially the report on disk says which test.

Where ``SIGALRM`` is unavailable (Windows, or a test not on the main thread), pytest-timeout's own
``thread`` method applies.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from types import FrameType
from typing import Any

GRACE_S = float(os.environ.get("NNX_CONFORMANCE_TIMEOUT_GRACE_S", "30"))
"""How long after the limit a process stuck outside Python is given before it is ended."""
REPEAT_S = max(0.5, min(5.0, GRACE_S / 4))
"""How often the alarm fires again after the limit, should the implementation swallow it."""
_STACK_FRAMES = 12


class SpecTimeout(BaseException):
    """A spec property ran past ``--nnx-timeout``. ``BaseException``: Hypothesis must not shrink a hang."""


def stuck_at(frame: FrameType | None) -> str:
    """The innermost frames of the main thread when the alarm fired: where the implementation hangs."""
    if frame is None:
        return "(no Python frame)"
    stack = traceback.format_stack(frame)[-_STACK_FRAMES:]
    return "".join(stack).rstrip()


class Timer:
    """One armed bound: :meth:`disarm` at the end of the test; :meth:`stop_repeating` once the timeout has
    left the test, so a repeated alarm cannot hit pytest's own reporting."""

    def __init__(self, disarm: Callable[[], None], fired: threading.Event) -> None:
        self.disarm = disarm
        self._fired = fired

    def stop_repeating(self) -> None:
        if self._fired.is_set():
            signal.setitimer(signal.ITIMER_REAL, 0)


def arm(limit: float, nodeid: str, on_hard_stop: Callable[[], None] | None = None) -> Timer:
    """Arm the bound for one test. Main thread, POSIX only."""
    fired = threading.Event()
    done = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        first = not fired.is_set()
        fired.set()
        signal.setitimer(signal.ITIMER_REAL, REPEAT_S)  # again, should the implementation swallow it
        again = "" if first else " (again: the first SpecTimeout was swallowed)"
        raise SpecTimeout(
            f"timed out after {limit:g} s (--nnx-timeout){again}; the implementation was stuck in:\n"
            f"{stuck_at(frame)}"
        )

    def watchdog() -> None:
        if done.wait(limit + GRACE_S):
            return
        sys.stderr.write(
            f"\nnnx-conformance: {nodeid} did not return to Python {GRACE_S:g} s after its time limit "
            f"({limit:g} s); ending the process. Stacks of every thread:\n"
        )
        faulthandler.dump_traceback(all_threads=True)
        if on_hard_stop is not None:
            try:
                on_hard_stop()
            except Exception as err:  # the process ends either way
                sys.stderr.write(f"nnx-conformance: could not write the report: {err!r}\n")
        sys.stderr.flush()
        os._exit(70)  # EX_SOFTWARE

    previous: Any = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, limit)
    thread = threading.Thread(target=watchdog, name=f"nnx-timeout {nodeid}", daemon=True)
    thread.start()

    def disarm() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        done.set()

    return Timer(disarm, fired)


def available() -> bool:
    """Whether :func:`arm` can work here (POSIX signals, main thread)."""
    return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()
