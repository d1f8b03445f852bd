"""SELECT, EXAMINE, STATUS, CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE.

SELECT and STATUS come from the store's index (`snapshot`, `status`); no
message file is opened. With CONDSTORE they report HIGHESTMODSEQ, and
`SELECT ... (QRESYNC (uidvalidity modseq [known-uids]))` (RFC 7162 §3.2.5)
replays what changed since the client's last visit as VANISHED (EARLIER)
and FETCH responses, so Thunderbird resynchronises a large folder without
refetching its flags.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imap_gateway import wire
from imap_gateway.commands import AUTH, SELECTED, State, command
from imap_gateway.parse import Parser, SeqSet, seqset_of
from imap_gateway.responses import No, Ok
from imap_gateway.selected import Selected

if TYPE_CHECKING:
    from imap_gateway.session import Session

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE", "DELETED",
                "APPENDLIMIT")


def _flags_list(names: tuple[str, ...] | list[str]) -> str:
    return "(" + " ".join(names) + ")"


@command("SELECT", AUTH)
async def cmd_select(s: Session, tag: str, p: Parser) -> Ok:
    return await _select(s, p, readonly=False)


@command("EXAMINE", AUTH)
async def cmd_examine(s: Session, tag: str, p: Parser) -> Ok:
    return await _select(s, p, readonly=True)


async def _select(s: Session, p: Parser, readonly: bool) -> Ok:
    p.sp()
    name = p.mailbox()
    qresync: tuple[int, int, SeqSet | None] | None = None
    if p.take_sp():
        p.open_paren()
        while not p.close_paren():
            word = p.word("a select parameter")
            if word == "CONDSTORE":
                s.enabled.add("CONDSTORE")  # RFC 7162 §3.1: a CONDSTORE-enabling command
            elif word == "QRESYNC":
                if not s.qresync:
                    raise No(None, "QRESYNC must be enabled first (ENABLE QRESYNC)", status="BAD")
                p.sp()
                p.open_paren()
                uidvalidity = p.nz_number("a UIDVALIDITY")
                p.sp()
                modseq = p.modseq()
                known = None
                if p.take_sp():
                    if p.peek_is(b"("):
                        _skip_seq_match(p)
                    else:
                        known = p.seqset()
                        if p.take_sp():
                            _skip_seq_match(p)
                p.expect(b")")
                qresync = (uidvalidity, modseq, known)
            else:
                raise No(None, f"unknown SELECT parameter {word}", status="BAD")
            p.take_sp()
    p.end()
    # Leaving the old folder first: RFC 3501 §6.3.1 (a failed SELECT leaves none selected),
    # RFC 7162 §3.2.11 ([CLOSED] tells a QRESYNC client where the old folder's responses end).
    if s.selected is not None:
        s.selected = None
        s.state = State.authenticated
        if s.qresync:
            s.untagged("OK [CLOSED] previous folder closed")
    snap = await s.mbox.snapshot(name, claim_recent=not readonly)
    sel = Selected(name, readonly, snap)
    kws = [k for k in sel.keywords if k]
    s.untagged("FLAGS " + _flags_list([*SYSTEM_FLAGS, *kws]))
    if readonly:
        s.untagged("OK [PERMANENTFLAGS ()] read-only")
    else:
        perm = [*SYSTEM_FLAGS, *kws] + ([] if sel.keywords_full else ["\\*"])
        s.untagged(f"OK [PERMANENTFLAGS {_flags_list(perm)}] flags permitted")
    s.untagged(f"{len(sel)} EXISTS")
    s.untagged(f"{len(sel.recent)} RECENT")
    first_unseen = next((i for i, m in enumerate(sel.msgs) if "\\Seen" not in m[1]), None)
    if first_unseen is not None:
        s.untagged(f"OK [UNSEEN {first_unseen + 1}] first unseen message")
    s.untagged(f"OK [UIDVALIDITY {sel.uidvalidity}] UIDs valid")
    s.untagged(f"OK [UIDNEXT {sel.uidnext}] predicted next UID")
    s.untagged(f"OK [HIGHESTMODSEQ {sel.modseq}] highest mod-sequence")
    if qresync is not None and qresync[0] == sel.uidvalidity:
        await _qresync_replay(s, sel, qresync[1], qresync[2])
    s.selected = sel
    s.state = State.selected
    return Ok("EXAMINE completed" if readonly else "SELECT completed", "READ-ONLY" if readonly else "READ-WRITE")


def _skip_seq_match(p: Parser) -> None:
    """seq-match-data (RFC 7162 §3.2.5): a hint for servers without exact expunge history; ours has it."""
    p.open_paren()
    p.seqset()
    p.sp()
    p.seqset()
    p.expect(b")")


async def _qresync_replay(s: Session, sel: Selected, modseq: int, known: SeqSet | None) -> None:
    changes = await s.mbox.changes_since(sel.folder, modseq)
    vanished = changes.expunged
    if known is not None:
        top = max(vanished, default=0)
        vanished = [u for u in vanished if known.contains(u, top)]
    if vanished:
        s.untagged("VANISHED (EARLIER) " + seqset_of(sorted(vanished)))
    for uid, _flags, _modseq in changes.changed:
        i = sel.index_of(uid)
        if i is not None:
            s.send(sel.fetch_flags_line(s, i))


@command("STATUS", AUTH)
async def cmd_status(s: Session, tag: str, p: Parser) -> str:
    p.sp()
    name = p.mailbox()
    p.sp()
    items = p.keywords(STATUS_ITEMS, "STATUS item")
    p.end()
    if "HIGHESTMODSEQ" in items:
        s.enabled.add("CONDSTORE")
    s.send(await status_line(s, name, items))
    return "STATUS completed"


async def status_line(s: Session, name: str, items: list[str]) -> bytes:
    """`* STATUS name (...)` from the index (also used by LIST-STATUS)."""
    st = await s.mbox.status(name)
    values = {
        "MESSAGES": st.messages, "RECENT": st.recent, "UIDNEXT": st.uidnext, "UIDVALIDITY": st.uidvalidity,
        "UNSEEN": st.unseen, "HIGHESTMODSEQ": st.highestmodseq, "SIZE": st.size,
        "DELETED": getattr(st, "deleted", 0), "APPENDLIMIT": s.server.append_limit,
    }
    body = " ".join(f"{item} {values[item]}" for item in items)
    return b"* STATUS " + wire.mailbox(name, s.utf8) + b" (" + body.encode() + b")\r\n"


@command("CHECK", SELECTED)
async def cmd_check(s: Session, tag: str, p: Parser) -> str:
    p.end()
    assert s.selected is not None
    s.selected.dirty = True
    return "CHECK completed"


@command("CLOSE", SELECTED)
async def cmd_close(s: Session, tag: str, p: Parser) -> str:
    """Expunges silently (no untagged EXPUNGE, RFC 3501 §6.4.2) unless the folder is read-only."""
    p.end()
    sel = s.selected
    assert sel is not None
    s.selected = None
    s.state = State.authenticated
    if not sel.readonly:
        await s.mbox.expunge(sel.folder)
    return "CLOSE completed"


@command("UNSELECT", SELECTED)
async def cmd_unselect(s: Session, tag: str, p: Parser) -> str:
    """RFC 3691: close without expunging."""
    p.end()
    s.selected = None
    s.state = State.authenticated
    return "UNSELECT completed"


@command("EXPUNGE", SELECTED)
async def cmd_expunge(s: Session, tag: str, p: Parser) -> str:
    p.end()
    await expunge(s, None)
    return "EXPUNGE completed"


@command("UID EXPUNGE", SELECTED)
async def cmd_uid_expunge(s: Session, tag: str, p: Parser) -> str:
    """RFC 4315 §2.1: only the named messages, so another client's \\Deleted marks survive."""
    p.sp()
    seqset = p.seqset()
    p.end()
    sel = s.selected
    assert sel is not None
    uids = [sel.uids[i] for i in sel.indexes(seqset, uid=True)]
    if uids:
        await expunge(s, uids)
    return "UID EXPUNGE completed"


async def expunge(s: Session, uids: list[int] | None) -> None:
    sel = s.selected
    assert sel is not None
    if sel.readonly:
        raise No("READ-ONLY", "the folder is open read-only (EXAMINE)")
    removed = await s.mbox.expunge(sel.folder, uids)
    sel.pending_expunge.update(u for u in removed if sel.index_of(u) is not None)
    sel.dirty = True  # pick up expunges of others too; reported right away as EXPUNGE is allowed now
