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

Cost: the view is a shallow copy of the snapshot's list of (uid, flags,
modseq) tuples. The tuples and flag sets belong to the store (which may keep
the list for the next SELECT) and are never changed in place; a change
replaces one tuple in our list. So SELECT of a 100,000-message folder
copies 100,000 pointers (0.8 MB, well under a millisecond) instead of
building a second copy of the folder's state.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, overload

from imap_gateway import wire
from imap_gateway.parse import ParseError, SeqSet, seqset_of

if TYPE_CHECKING:
    from imap_gateway.session import Session


Message = tuple[int, frozenset[str], int]  # (uid, flags and keywords, modseq), as the store gives them
_uid = itemgetter(0)


class _Column(Sequence[Any]):
    """One field of the view's tuples as a read-only sequence: `sel.uids[i]`, `sel.flags[-1]`."""

    __slots__ = ("_field", "_sel")

    def __init__(self, sel: Selected, field: int) -> None:
        self._sel = sel
        self._field = field

    @overload
    def __getitem__(self, i: int) -> Any: ...

    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...

    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return [m[self._field] for m in self._sel.msgs[i]]
        return self._sel.msgs[i][self._field]

    def __len__(self) -> int:
        return len(self._sel.msgs)


class Selected:
    def __init__(self, folder: str, readonly: bool, snapshot: Any) -> None:
        self.folder = folder
        self.readonly = readonly
        self.uidvalidity: int = snapshot.uidvalidity
        self.uidnext: int = snapshot.uidnext
        self.modseq: int = snapshot.highestmodseq  # everything up to here has been reported
        self.msgs: list[Message] = list(snapshot.messages)
        self.uids = _Column(self, 0)
        self.flags = _Column(self, 1)
        self.modseqs = _Column(self, 2)
        self.recent: frozenset[int] = frozenset(getattr(snapshot, "recent", ()))
        self.keywords: tuple[str, ...] = tuple(getattr(snapshot, "keywords", ()))
        self.keywords_full: bool = bool(getattr(snapshot, "keywords_full", False))
        self.pending_expunge: set[int] = set()  # gone from the store, not yet reported
        self.dirty = False

    # ------------------------------------------------------------ numbers

    def __len__(self) -> int:
        return len(self.msgs)

    def index_of(self, uid: int) -> int | None:
        msgs = self.msgs
        i = bisect_left(msgs, uid, key=_uid)
        return i if i < len(msgs) and msgs[i][0] == uid else None

    def indexes(self, seqset: SeqSet, uid: bool) -> list[int]:
        """0-based positions a sequence set names, ascending, each once.

        UID sets name what exists (`*` is the highest UID; a range past it
        still includes that one, RFC 3501 §6.4.8); message numbers beyond the
        mailbox are an error the client must hear about.
        """
        msgs = self.msgs
        n = len(msgs)
        if n == 0:
            if not uid and any(a != 0 or b != 0 for a, b in seqset.ranges):
                raise ParseError("no such message (the folder is empty)")
            return []
        out: set[int] = set()
        if uid:
            largest = msgs[-1][0]
            for a, b in seqset.resolve(largest):
                lo, hi = bisect_left(msgs, a, key=_uid), bisect_right(msgs, b, key=_uid)
                out.update(range(lo, hi))
        else:
            for a, b in seqset.resolve(n):
                if b > n:
                    raise ParseError(f"no message {b} (the folder has {n})")
                out.update(range(a - 1, b))
        return sorted(out)

    def live(self, seqset: SeqSet | None, uid: bool = False) -> list[int]:
        """Like `indexes`, without messages another session expunged that we have not reported
        yet (they have no data left to show, RFC 2180 §4.1); None means every message."""
        idxs = list(range(len(self.msgs))) if seqset is None else self.indexes(seqset, uid)
        gone = self.pending_expunge
        if not gone:
            return idxs
        msgs = self.msgs
        return [i for i in idxs if msgs[i][0] not in gone]

    # ------------------------------------------------------------ updates

    def flags_of(self, i: int) -> frozenset[str]:
        uid, f, _ = self.msgs[i]
        return f | {"\\Recent"} if uid in self.recent else f

    def fetch_flags_line(self, s: Session, i: int) -> bytes:
        """An unsolicited `* n FETCH (UID u FLAGS (...) [MODSEQ (m)])`."""
        extra = b" MODSEQ (%d)" % self.modseqs[i] if s.condstore else b""
        return b"* %d FETCH (UID %d FLAGS %s%s)\r\n" % (i + 1, self.msgs[i][0], wire.flag_list(self.flags_of(i)), extra)

    async def sync(self, s: Session, expunge_ok: bool) -> None:
        """Report what changed since `self.modseq`, as far as this moment allows."""
        new: list[tuple[int, frozenset[str], int]] = []
        if self.dirty:
            self.dirty = False
            changes = await s.mbox.changes_since(self.folder, self.modseq)
            last = self.msgs[-1][0] if self.msgs else 0
            for change in changes.changed:
                uid, flags, modseq = change
                if uid > last:
                    new.append(change)
                    continue
                i = self.index_of(uid)
                if i is None or uid in self.pending_expunge:
                    continue
                _, old_flags, old_modseq = self.msgs[i]
                if old_flags != flags or old_modseq != modseq:
                    self.msgs[i] = (uid, flags, modseq)
                    if old_flags != flags or s.condstore:
                        s.send(self.fetch_flags_line(s, i))
            for uid in changes.expunged:
                if self.index_of(uid) is not None:
                    self.pending_expunge.add(uid)
            self.modseq = max(self.modseq, changes.highestmodseq)
        if expunge_ok and self.pending_expunge:
            self.report_expunged(s, self.pending_expunge)
            self.pending_expunge = set()
        if new:
            self.msgs.extend(new)
            self.uidnext = max(self.uidnext, new[-1][0] + 1)
            s.untagged(f"{len(self.msgs)} EXISTS")

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
        self.recent = self.recent - {self.msgs[i][0] for i in gone}
        self.msgs = [m for i, m in enumerate(self.msgs) if i not in drop]

    def update(self, changed: list[tuple[int, frozenset[str], int]]) -> list[int]:
        """Apply our own STORE's results; returns their positions."""
        out = []
        for change in changed:
            i = self.index_of(change[0])
            if i is not None:
                self.msgs[i] = change
                out.append(i)
        return out
