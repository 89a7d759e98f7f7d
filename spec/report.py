"""The conformance report: clause-by-clause outcomes per implementation.

Test outcomes arrive one report at a time (from xdist workers too); :class:`Conformance` folds them into a
status per (implementation, clause) and renders the terminal summary, the JSON file and the Markdown
matrix. A clause's status is the worst of its tests': ``fail`` > ``xpass`` > ``xfail`` > ``pass`` >
``skip``, so one failing property fails the clause and a clause is ``skip`` only if nothing ran.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

STATUSES = ("fail", "xpass", "xfail", "pass", "skip")
_RANK = {status: rank for rank, status in enumerate(STATUSES)}
_SYMBOL = {"pass": "pass", "fail": "**FAIL**", "xfail": "xfail", "xpass": "XPASS", "skip": "skip"}
_MESSAGE_LINES = 60


@dataclasses.dataclass
class Outcome:
    nodeid: str
    status: str
    duration: float
    message: str = ""


@dataclasses.dataclass
class Conformance:
    """Accumulated outcomes; ``clause_order`` fixes the row order (SPEC.md's)."""

    clause_order: list[str]
    implementations: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    tests: dict[tuple[str, str], list[Outcome]] = dataclasses.field(default_factory=dict)
    header: dict[str, Any] = dataclasses.field(default_factory=dict)

    def add(self, impl: str, clause_id: str, outcome: Outcome) -> None:
        self.implementations.setdefault(impl, {})
        self.tests.setdefault((impl, clause_id), []).append(outcome)

    def status(self, impl: str, clause_id: str) -> str | None:
        outcomes = self.tests.get((impl, clause_id))
        if not outcomes:
            return None
        return min((o.status for o in outcomes), key=_RANK.__getitem__)

    def counts(self, impl: str) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for clause_id in self.clause_order:
            status = self.status(impl, clause_id)
            if status is not None:
                counts[status] += 1
        return counts

    # -- rendering ---------------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"header": self.header, "implementations": {}}
        for impl, info in self.implementations.items():
            clauses: dict[str, Any] = {}
            for clause_id in self.clause_order:
                status = self.status(impl, clause_id)
                if status is None:
                    continue
                outcomes = self.tests[(impl, clause_id)]
                clauses[clause_id] = {
                    "status": status,
                    "tests": [
                        {
                            "nodeid": o.nodeid,
                            "status": o.status,
                            "duration_s": round(o.duration, 4),
                            **({"message": o.message} if o.message else {}),
                        }
                        for o in outcomes
                    ],
                }
            out["implementations"][impl] = {**info, "summary": self.counts(impl), "clauses": clauses}
        return out

    def write(self, path: Path) -> list[Path]:
        """Write the JSON report at ``path`` and the Markdown matrix beside it (``.md``)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        md = path.with_suffix(".md")
        md.write_text(self.markdown(), encoding="utf-8")
        return [path, md]

    def markdown(self) -> str:
        impls = list(self.implementations)
        lines = ["# NNX conformance", ""]
        for key, value in self.header.items():
            lines.append(f"- {key}: {value}")
        lines += ["", "| clause | " + " | ".join(impls) + " |", "|---|" + "---|" * len(impls)]
        for clause_id in self.clause_order:
            row = [_SYMBOL.get(self.status(impl, clause_id) or "", "-") for impl in impls]
            if any(cell != "-" for cell in row):
                lines.append(f"| `{clause_id}` | " + " | ".join(row) + " |")
        lines.append("")
        for impl in impls:
            counts = self.counts(impl)
            lines.append(f"- **{impl}**: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
        return "\n".join(lines) + "\n"

    def terminal_lines(self) -> list[str]:
        impls = list(self.implementations)
        if not impls:
            return []
        width = max(len(c) for c in self.clause_order) + 2
        cols = max(10, *(len(i) + 2 for i in impls))
        lines = ["clause".ljust(width) + "".join(i.ljust(cols) for i in impls)]
        for clause_id in self.clause_order:
            row = [self.status(impl, clause_id) or "-" for impl in impls]
            if any(cell != "-" for cell in row):
                cells = (c.upper() if c in ("fail", "xpass") else c for c in row)
                lines.append(clause_id.ljust(width) + "".join(c.ljust(cols) for c in cells))
        for impl in impls:
            counts = self.counts(impl)
            summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
            extra = self.implementations[impl].get("note")
            lines.append(f"{impl}: {summary}" + (f" ({extra})" if extra else ""))
        return lines


def short_message(text: str) -> str:
    """The tail of a failure's text: where Hypothesis puts the falsifying example and our snippet."""
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-_MESSAGE_LINES:])
