"""The selected folder as this session has told the client about it, and bringing it up to date.

IMAP numbers messages 1..n (message sequence numbers) and a client's view
may only change at moments the RFC allows: new messages (EXISTS) and flag
changes (FETCH) before any tagged reply, removals (EXPUNGE, or VANISHED with
QRESYNC) only when the command is not FETCH, STORE or SEARCH (RFC 3501
§7.4.1), and anything during IDLE. So each session keeps its own list of
UIDs, flags and mod-sequences, taken from the store's snapshot at SELECT.

How other sessions' changes arrive: the store calls our listener for every
change in the account; that only marks the folder "dirty". At the next
allowed moment the session asks `changes_since(folder, modseq)` for what
changed after the mod-sequence it is synced to, and reports the
differences. The store's answer is the truth, the event only a doorbell,
so a lost or repeated event can never make a session wrong, and changes
made by another worker process are seen at the next NOOP or IDLE poll.

Memory: UIDs and mod-sequences are arrays of machine integers and the flag
sets are shared objects from the store, about 24 bytes per message (2.4 MB
for a 100,000-message folder).
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING, Any

from imap_gateway import wire
from imap_gateway.parse import ParseError, SeqSet, seqset_of

if TYPE_CHECKING:
    from imap_gateway.session import Session


class Selected:
    def __init__(self, folder: str, readonly: bool, snapshot: Any) -> None:
        self.folder = folder
        self.readonly = readonly
        self.uidvalidity: int = snapshot.uidvalidity
        self.uidnext: int = snapshot.uidnext
        self.modseq: int = snapshot.highestmodseq  # everything up to here has been reported
        msgs = snapshot.messages
        if msgs:
            uids, flags, modseqs = zip(*msgs, strict=True)
        else:
            uids, flags, modseqs = (), (), ()
        self.uids = array("L", uids)
        self.flags: list[frozenset[str]] = list(flags)
        self.modseqs = array("Q", modseqs)
        self.recent: set[int] = set(getattr(snapshot, "recent", ()))
        self.keywords: tuple[str, ...] = tuple(getattr(snapshot, "keywords", ()))
        self.keywords_full: bool = bool(getattr(snapshot, "keywords_full", False))
        self.pending_expunge: set[int] = set()  # gone from the store, not yet reported
        self.dirty = False

    # ------------------------------------------------------------ numbers

    def __len__(self) -> int:
        return len(self.uids)

    def index_of(self, uid: int) -> int | None:
        i = bisect_left(self.uids, uid)
        return i if i < len(self.uids) and self.uids[i] == uid else None

    def indexes(self, seqset: SeqSet, uid: bool) -> list[int]:
        """0-based positions a sequence set names, ascending, each once.

        UID sets name what exists (`*` is the highest UID; a range past it
        still includes that one, RFC 3501 §6.4.8); message numbers beyond the
        mailbox are an error the client must hear about.
        """
        n = len(self.uids)
        if n == 0:
            if not uid and any(a != 0 or b != 0 for a, b in seqset.ranges):
                raise ParseError("no such message (the folder is empty)")
            return []
        out: set[int] = set()
        if uid:
            largest = self.uids[-1]
            for a, b in seqset.resolve(largest):
                lo, hi = bisect_left(self.uids, a), bisect_right(self.uids, b)
                out.update(range(lo, hi))
        else:
            for a, b in seqset.resolve(n):
                if b > n:
                    raise ParseError(f"no message {b} (the folder has {n})")
                out.update(range(a - 1, b))
        return sorted(out)

    # ------------------------------------------------------------ updates

    def flags_of(self, i: int) -> frozenset[str]:
        f = self.flags[i]
        return f | {"\\Recent"} if self.uids[i] in self.recent else f

    def fetch_flags_line(self, s: Session, i: int) -> bytes:
        """An unsolicited `* n FETCH (UID u FLAGS (...) [MODSEQ (m)])`."""
        extra = b" MODSEQ (%d)" % self.modseqs[i] if s.condstore else b""
        return b"* %d FETCH (UID %d FLAGS %s%s)\r\n" % (i + 1, self.uids[i], wire.flag_list(self.flags_of(i)), extra)

    async def sync(self, s: Session, expunge_ok: bool) -> None:
        """Report what changed since `self.modseq`, as far as this moment allows."""
        new: list[tuple[int, frozenset[str], int]] = []
        if self.dirty:
            self.dirty = False
            changes = await s.mbox.changes_since(self.folder, self.modseq)
            last = self.uids[-1] if self.uids else 0
            for uid, flags, modseq in changes.changed:
                if uid > last:
                    new.append((uid, flags, modseq))
                    continue
                i = self.index_of(uid)
                if i is None or uid in self.pending_expunge:
                    continue
                if self.flags[i] != flags or self.modseqs[i] != modseq:
                    report = self.flags[i] != flags or s.condstore
                    self.flags[i] = flags
                    self.modseqs[i] = modseq
                    if report:
                        s.send(self.fetch_flags_line(s, i))
            for uid in changes.expunged:
                if self.index_of(uid) is not None:
                    self.pending_expunge.add(uid)
            self.modseq = max(self.modseq, changes.highestmodseq)
        if expunge_ok and self.pending_expunge:
            self.report_expunged(s, self.pending_expunge)
            self.pending_expunge = set()
        if new:
            self.uids.extend(u for u, _, _ in new)
            self.flags.extend(f for _, f, _ in new)
            self.modseqs.extend(m for _, _, m in new)
            self.uidnext = max(self.uidnext, new[-1][0] + 1)
            s.untagged(f"{len(self.uids)} EXISTS")

    def report_expunged(self, s: Session, uids: set[int] | list[int]) -> None:
        """EXPUNGE per message, highest number first so each stays valid; VANISHED with QRESYNC."""
        gone = sorted(i for i in (self.index_of(u) for u in uids) if i is not None)
        if not gone:
            return
        if s.qresync:
            s.untagged("VANISHED " + seqset_of([self.uids[i] for i in gone]))
        else:
            for i in reversed(gone):
                s.send(b"* %d EXPUNGE\r\n" % (i + 1))
        self.remove(gone)

    def remove(self, gone: list[int]) -> None:
        drop = set(gone)
        keep = [i for i in range(len(self.uids)) if i not in drop]
        self.recent -= {self.uids[i] for i in gone}
        self.uids = array("L", (self.uids[i] for i in keep))
        self.flags = [self.flags[i] for i in keep]
        self.modseqs = array("Q", (self.modseqs[i] for i in keep))

    def update(self, changed: list[tuple[int, frozenset[str], int]]) -> list[int]:
        """Apply our own STORE's results; returns their positions."""
        out = []
        for uid, flags, modseq in changed:
            i = self.index_of(uid)
            if i is not None:
                self.flags[i] = flags
                self.modseqs[i] = modseq
                out.append(i)
        return out
