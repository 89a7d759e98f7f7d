"""The conformance report: clause-by-clause outcomes per implementation.

Test outcomes arrive one report at a time (from xdist workers too); :class:`Conformance` folds them into a
status per (implementation, clause) and renders the terminal summary, the JSON file and the Markdown
matrix. A clause's status is the worst of its tests' (:data:`STATUSES`, worst first): one crashed test
makes the clause ``crash``, a test that never ran makes it at best ``not run``, and a clause that passed
with some tests skipped (a disclaimed capability) is ``partial``, never a plain ``pass``.

The report must stay true when the run does not finish: :meth:`Conformance.write` is called before and
after every test, with ``"complete": false`` and the tests running at that moment counted as ``crash``.
If the process dies (an abort, a segfault, the CI job's time limit), the file left behind says so and
names the test. Rendering is deterministic -- sorted, no durations, no addresses, no worker ids -- so two
identical runs give byte-identical JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

STATUSES = ("crash", "fail", "suite-error", "not run", "xpass", "xfail", "partial", "pass", "skip")
"""Worst first. ``suite-error``: the suite itself could not run the check (an API missing from the installed
jax or Hypothesis); ``partial``: passed, but some tests were skipped for a capability not claimed; ``skip``:
nothing ran (every test skipped)."""
_RANK = {status: rank for rank, status in enumerate(STATUSES)}
_SYMBOL = {
    "pass": "pass",
    "fail": "**FAIL**",
    "crash": "**CRASH**",
    "suite-error": "suite error",
    "not run": "not run",
    "xfail": "xfail",
    "xpass": "XPASS",
    "skip": "skip",
    "partial": "partial",
}
_LOUD = {"fail", "crash", "xpass", "suite-error", "not run"}
_MESSAGE_LINES = 60
_ADDRESS = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")
_WORKER = re.compile(r"\[?\bgw\d+\]?\s*")
_CAPABILITY = re.compile(r"does not claim capability ([\w, ]+?) \(clause")
RUNNING_MESSAGE = "the run ended while this test was running: the process crashed or was killed"


@dataclasses.dataclass
class Outcome:
    nodeid: str
    status: str
    message: str = ""


def _stable(text: str) -> str:
    return _WORKER.sub("", _ADDRESS.sub("0x…", text))


@dataclasses.dataclass
class Conformance:
    """Accumulated outcomes; ``clause_order`` fixes the row order (SPEC.md's)."""

    clause_order: list[str]
    implementations: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    tests: dict[tuple[str, str], dict[str, Outcome]] = dataclasses.field(default_factory=dict)
    header: dict[str, Any] = dataclasses.field(default_factory=dict)
    expected: dict[str, tuple[str, str]] = dataclasses.field(default_factory=dict)
    """nodeid -> (implementation, clause) of every spec test the run is going to run."""
    running: set[str] = dataclasses.field(default_factory=set)
    complete: bool = False
    impl_order: list[str] = dataclasses.field(default_factory=list)
    """The run's own order of implementations (``--nnx-impl``); others follow, sorted."""

    def _impls(self) -> list[str]:
        rank = {name: i for i, name in enumerate(self.impl_order)}
        return sorted(self.implementations, key=lambda n: (rank.get(n, len(rank)), n))

    def expect(self, nodeid: str, impl: str, clause_id: str) -> None:
        self.expected[nodeid] = (impl, clause_id)
        self.implementations.setdefault(impl, {})

    def add(self, impl: str, clause_id: str, outcome: Outcome) -> None:
        """Record a phase's outcome; a test's status is the worst over its phases (setup, call, teardown)."""
        self.implementations.setdefault(impl, {})
        self.running.discard(outcome.nodeid)
        tests = self.tests.setdefault((impl, clause_id), {})
        old = tests.get(outcome.nodeid)
        if old is None or _RANK[outcome.status] < _RANK[old.status]:
            tests[outcome.nodeid] = dataclasses.replace(outcome, message=_stable(outcome.message))

    def _outcomes(self, impl: str, clause_id: str) -> list[Outcome]:
        got = dict(self.tests.get((impl, clause_id), {}))
        for nodeid, (i, c) in self.expected.items():
            if i == impl and c == clause_id and nodeid not in got:
                running = nodeid in self.running
                got[nodeid] = Outcome(nodeid, "crash" if running else "not run", RUNNING_MESSAGE if running else "")
        return [got[k] for k in sorted(got)]

    def status(self, impl: str, clause_id: str) -> str | None:
        outcomes = self._outcomes(impl, clause_id)
        if not outcomes:
            return None
        worst = min((o.status for o in outcomes), key=_RANK.__getitem__)
        if worst == "pass" and self.unchecked(impl, clause_id):
            return "partial"
        return worst

    def unchecked(self, impl: str, clause_id: str) -> list[str]:
        """The capabilities whose skipped tests a ``partial`` clause did not check. Other skips (a check
        that does not apply, e.g. nothing lies beyond a declared depth) leave nothing unchecked."""
        names: set[str] = set()
        for o in self._outcomes(impl, clause_id):
            m = _CAPABILITY.search(o.message) if o.status == "skip" else None
            if m:
                names.update(n.strip() for n in m.group(1).split(","))
        return sorted(names)

    def counts(self, impl: str) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for clause_id in self.clause_order:
            status = self.status(impl, clause_id)
            if status is not None:
                counts[status] += 1
        return counts

    def _cell(self, impl: str, clause_id: str, symbols: bool) -> str:
        status = self.status(impl, clause_id)
        if status is None:
            return "-"
        text = _SYMBOL[status] if symbols else (status.upper() if status in _LOUD else status)
        if status == "partial":
            text += f" (not checked: {', '.join(self.unchecked(impl, clause_id))})"
        return text

    # -- rendering ---------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        running = sorted(self.running)
        out: dict[str, Any] = {"complete": self.complete}
        if not self.complete:
            out["running"] = running
        out["header"] = dict(sorted(self.header.items()))
        out["implementations"] = {}
        for impl in self._impls():
            clauses: dict[str, Any] = {}
            for clause_id in self.clause_order:
                status = self.status(impl, clause_id)
                if status is None:
                    continue
                entry: dict[str, Any] = {"status": status}
                if status == "partial":
                    entry["not_checked"] = self.unchecked(impl, clause_id)
                entry["tests"] = [
                    {"nodeid": o.nodeid, "status": o.status, **({"message": o.message} if o.message else {})}
                    for o in self._outcomes(impl, clause_id)
                ]
                clauses[clause_id] = entry
            info = dict(sorted(self.implementations[impl].items()))
            out["implementations"][impl] = {**info, "summary": self.counts(impl), "clauses": clauses}
        return out

    def write(self, path: Path) -> list[Path]:
        """Write the JSON report at ``path`` and the Markdown matrix beside it (``.md``), each atomically
        (a reader never sees half a file, even if the process dies mid-write)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        md = path.with_suffix(".md")
        _atomic_write(path, json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n")
        _atomic_write(md, self.markdown())
        return [path, md]

    def markdown(self) -> str:
        impls = self._impls()
        lines = ["# NNX conformance", ""]
        if not self.complete:
            lines += [
                "**Incomplete run**: the process ended before the run finished"
                + (f" while running {', '.join(f'`{n}`' for n in sorted(self.running))}." if self.running else "."),
                "",
            ]
        for key, value in sorted(self.header.items()):
            lines.append(f"- {key}: {value}")
        lines += ["", "| clause | " + " | ".join(impls) + " |", "|---|" + "---|" * len(impls)]
        for clause_id in self.clause_order:
            row = [self._cell(impl, clause_id, symbols=True) for impl in impls]
            if any(cell != "-" for cell in row):
                lines.append(f"| `{clause_id}` | " + " | ".join(row) + " |")
        lines.append("")
        for impl in impls:
            counts = self.counts(impl)
            lines.append(f"- **{impl}**: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        return "\n".join(lines) + "\n"

    def terminal_lines(self) -> list[str]:
        impls = self._impls()
        if not impls:
            return []
        width = max(len(c) for c in self.clause_order) + 2
        cells = {(i, c): self._cell(i, c, symbols=False) for i in impls for c in self.clause_order}
        cols = max(10, *(len(i) + 2 for i in impls), *(len(v) + 2 for v in cells.values()))
        lines = ["clause".ljust(width) + "".join(i.ljust(cols) for i in impls)]
        for clause_id in self.clause_order:
            row = [cells[(i, clause_id)] for i in impls]
            if any(cell != "-" for cell in row):
                lines.append(clause_id.ljust(width) + "".join(c.ljust(cols) for c in row).rstrip())
        for impl in impls:
            counts = self.counts(impl)
            summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            extra = self.implementations[impl].get("adapter", {}).get("note")
            lines.append(f"{impl}: {summary}" + (f" ({extra})" if extra else ""))
        return lines


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def short_message(text: str) -> str:
    """A failure's text for the report, cause first: the exception's own lines (pytest's ``E   ...``, where
    Hypothesis also puts the falsifying example), then the reproduction section (its head and its end, the
    failing check), without the frames that led there. Text in another shape keeps its last lines."""
    lines = text.rstrip().splitlines()
    cause = [line[4:] for line in lines if line.startswith("E   ")]
    if not cause:
        return "\n".join(lines[-_MESSAGE_LINES:])
    cause = cause[:20] + (["..."] if len(cause) > 20 else [])
    start = next((i for i, line in enumerate(lines) if line.startswith("---") and "reproduction" in line), None)
    script = lines[start:] if start is not None else []
    room = _MESSAGE_LINES - len(cause)
    if len(script) > room:
        script = [*script[:4], "# ... (shortened: the whole script is in the failure output)", *script[-(room - 5) :]]
    return "\n".join(cause + script)


def main(argv: list[str] | None = None) -> int:
    """``python -m nnx_conformance.spec.report nnx.json``: the clause table of a report, also of a run
    that died (exit status 1 if the run was incomplete or any clause is worse than xfail)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m nnx_conformance.spec.report REPORT.json", file=sys.stderr)
        return 2
    data = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    bad = not data.get("complete", False)
    if bad:
        print(f"INCOMPLETE RUN; running at the end: {', '.join(data.get('running', [])) or '?'}")
    for impl, info in data.get("implementations", {}).items():
        for clause_id, entry in info.get("clauses", {}).items():
            print(f"{impl:24} {clause_id:28} {entry['status']}")
            bad = bad or _RANK.get(entry["status"], 0) < _RANK["xpass"]
    return 1 if bad else 0


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in tests
    sys.exit(main())
