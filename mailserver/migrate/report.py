"""What a migration did, per account: counted while it runs (the progress display reads it) and
reported at the end (copied, skipped, failed with reasons, oversized, stopped)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from policy.units import format_size


@dataclass
class Problem:
    folder: str
    uid: int | None
    reason: str
    size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"folder": self.folder, "uid": self.uid, "reason": self.reason, "size": self.size}


@dataclass
class FolderReport:
    source: str
    target: str
    how: str
    copied: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class AccountReport:
    """One source mailbox into one account. `state`: waiting, connecting, planning, copying, done,
    stopped (quota, an error: a rerun continues) or failed (could not start)."""

    source: str
    address: str
    state: str = "waiting"
    reason: str | None = None
    planned_messages: int = 0
    planned_bytes: int = 0
    copied: int = 0
    copied_bytes: int = 0
    skipped: int = 0
    recovered: int = 0  # pending after an interruption, found already stored (not copied again)
    failed: list[Problem] = field(default_factory=list)
    oversized: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    folders: list[FolderReport] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None

    # ---------------------------------------------------------------- progress figures

    def begin(self) -> None:
        self.started = time.monotonic()

    def end(self, state: str, reason: str | None = None) -> None:
        self.state = state
        if reason:
            self.reason = reason
        self.finished = time.monotonic()

    @property
    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    @property
    def done_messages(self) -> int:
        return self.copied + len(self.failed)

    def rates(self) -> tuple[float, float]:
        """(messages/s, bytes/s) since the copying started."""
        t = self.elapsed
        if t <= 0:
            return 0.0, 0.0
        return self.copied / t, self.copied_bytes / t

    def eta(self) -> float | None:
        """Seconds left at the byte rate so far (None before there is a rate)."""
        _, bps = self.rates()
        left = self.planned_bytes - self.copied_bytes
        if self.state != "copying" or bps <= 0 or left <= 0:
            return None
        return left / bps

    @property
    def ok(self) -> bool:
        return self.state == "done" and not self.failed

    def as_dict(self) -> dict[str, Any]:
        mps, bps = self.rates()
        return {
            "source": self.source, "address": self.address, "state": self.state, "reason": self.reason,
            "copied": self.copied, "copied_bytes": self.copied_bytes, "skipped": self.skipped,
            "recovered": self.recovered, "failed": [p.as_dict() for p in self.failed],
            "oversized": [p.as_dict() for p in self.oversized], "warnings": [p.as_dict() for p in self.warnings],
            "folders": [vars(f) for f in self.folders], "seconds": round(self.elapsed, 3),
            "messages_per_second": round(mps, 1), "mb_per_second": round(bps / 1e6, 2),
        }


def human_report(reports: list[AccountReport]) -> str:
    """The final report an operator reads (and keeps): one block per account, then the totals."""
    lines: list[str] = []
    for r in reports:
        head = f"{r.address} ← {r.source}: {r.state}"
        if r.reason:
            head += f" — {r.reason}"
        lines.append(head)
        lines.append(f"  copied {r.copied} ({format_size(r.copied_bytes)}), skipped {r.skipped} (already here), "
                     f"failed {len(r.failed)}, oversized {len(r.oversized)}"
                     + (f", recovered {r.recovered} after an interruption" if r.recovered else ""))
        for f in r.folders:
            lines.append(f"    {f.source} → {f.target} ({f.how}): copied {f.copied}, skipped {f.skipped}, "
                         f"failed {f.failed}")
        for p in r.failed:
            lines.append(f"  failed: {p.folder} UID {p.uid}: {p.reason}")
        for p in r.oversized:
            lines.append(f"  oversized (imported, Đ7.3.b): {p.folder} UID {p.uid}: {p.reason}")
        for p in r.warnings:
            lines.append(f"  note: {p.folder}{f' UID {p.uid}' if p.uid else ''}: {p.reason}")
    total_copied = sum(r.copied for r in reports)
    total_bytes = sum(r.copied_bytes for r in reports)
    failed = sum(len(r.failed) for r in reports)
    not_done = [r for r in reports if r.state != "done"]
    lines.append(f"total: {len(reports)} mailboxes, copied {total_copied} messages ({format_size(total_bytes)}), "
                 f"skipped {sum(r.skipped for r in reports)}, failed {failed}, "
                 f"not finished {len(not_done)}")
    if not_done or failed:
        lines.append("Run the same command again: it continues where it stopped and retries the failed messages.")
    return "\n".join(lines)
