"""STORE and UID STORE (RFC 3501 §6.4.6), with UNCHANGEDSINCE (RFC 7162 §3.1.3).

Flags live in the store (Maildir file names, keywords in dovecot-keywords);
the store gives every changed message a new MODSEQ and tells the other
sessions. This session answers with the new flags of every message in the
set (unless .SILENT) and, once CONDSTORE is in use, with their MODSEQ even
for .SILENT, because a client that changed flags must learn the new
mod-sequences to stay in sync. Messages that failed UNCHANGEDSINCE are
listed in `OK [MODIFIED set]`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imap_gateway import wire
from imap_gateway.commands import SELECTED, uid_pair
from imap_gateway.parse import Parser, seqset_of
from imap_gateway.responses import No, Ok

if TYPE_CHECKING:
    from imap_gateway.session import Session

MODES = {"": "replace", "+": "add", "-": "remove"}


@uid_pair("STORE", SELECTED, expunge_ok=False)
async def cmd_store(s: Session, tag: str, p: Parser, uid: bool) -> Ok:
    p.sp()
    seqset = p.seqset()
    p.sp()
    unchanged_since: int | None = None
    if p.take(b"("):
        p.expect(b"UNCHANGEDSINCE", "UNCHANGEDSINCE")
        p.sp()
        unchanged_since = p.modseq(zero_ok=True)
        p.expect(b")")
        p.sp()
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1: CONDSTORE-enabling
    sign = "+" if p.take(b"+") else "-" if p.take(b"-") else ""
    p.expect(b"FLAGS", "FLAGS, +FLAGS or -FLAGS")
    silent = p.take(b".SILENT")
    p.sp()
    flags = p.flag_list()
    p.end()
    sel = s.selected
    assert sel is not None
    if sel.readonly:
        raise No("READ-ONLY", "the folder is open read-only (EXAMINE)")
    idxs = sel.live(seqset, uid)
    if not idxs:
        return Ok("STORE completed")
    uids = [sel.uids[i] for i in idxs]
    changed, failed = await s.mbox.store_flags(sel.folder, uids, flags, mode=MODES[sign],
                                               unchanged_since=unchanged_since)
    changed_idx = set(sel.update(changed))
    failed_set = set(failed)
    for i in idxs:
        u = sel.uids[i]
        if u in failed_set:
            continue
        items = [b"UID %d" % u] if uid or s.condstore else []
        if not silent:
            items.append(b"FLAGS " + wire.flag_list(sel.flags_of(i)))
        if s.condstore and (i in changed_idx or not silent):
            items.append(b"MODSEQ (%d)" % sel.modseqs[i])
        if not silent or (s.condstore and i in changed_idx):
            s.send(b"* %d FETCH (%s)\r\n" % (i + 1, b" ".join(items)))
    if failed:
        numbers = sorted(failed) if uid else sorted(i + 1 for i in idxs if sel.uids[i] in failed_set)
        return Ok("conditional STORE failed for some messages", f"MODIFIED {seqset_of(numbers)}")
    return Ok("STORE completed")
