"""COPY and MOVE, with UID forms (RFC 3501 §6.4.7, MOVE RFC 6851, COPYUID RFC 4315 §3).

The store copies with hard links and moves by renaming, in one transaction
each, and returns the new UIDs, so the client learns them from COPYUID
without refetching. MOVE reports `* OK [COPYUID ...]` first and then the
expunges of the moved messages, as RFC 6851 §4.3 orders it. A destination
that does not exist gets `NO [TRYCREATE]` (Thunderbird then creates it).

Every COPY or MOVE that filed messages somewhere is announced to the
backend's `transfer_observers` as a `Transfer` (which messages now sit in
which folder, and where they came from). The composition root subscribes
the spam filter's training to it (a message moved into Junk is spam, one
moved out of Junk is ham): this module knows nothing about spam, and the
observer only queues work, so the tagged OK is not delayed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from imap_gateway.commands import SELECTED, uid_pair
from imap_gateway.parse import Parser, seqset_of
from imap_gateway.responses import No, Ok
from policy.errors import NotFound

if TYPE_CHECKING:
    from imap_gateway.session import Session


@dataclass(frozen=True)
class Transfer:
    """A COPY or MOVE that succeeded: `uids` are the messages' UIDs in `dest` now."""

    account: Any  # storage.records.Account
    source: str
    dest: str
    uids: tuple[int, ...]
    moved: bool


@uid_pair("COPY", SELECTED)
async def cmd_copy(s: Session, tag: str, p: Parser, uid: bool) -> Ok:
    return await copy_or_move(s, p, uid=uid, move=False)


@uid_pair("MOVE", SELECTED)
async def cmd_move(s: Session, tag: str, p: Parser, uid: bool) -> Ok:
    return await copy_or_move(s, p, uid=uid, move=True)


async def copy_or_move(s: Session, p: Parser, uid: bool, move: bool) -> Ok:
    p.sp()
    seqset = p.seqset()
    p.sp()
    dest = p.mailbox()
    p.end()
    sel = s.selected
    assert sel is not None
    verb = "MOVE" if move else "COPY"
    if move and sel.readonly:
        raise No("READ-ONLY", "the folder is open read-only (EXAMINE)")
    uids = [sel.uids[i] for i in sel.live(seqset, uid)]
    if not uids:
        return Ok(f"{verb} completed (no messages)")
    try:
        if move:
            result = await s.mbox.move(sel.folder, uids, dest)
        else:
            result = await s.mbox.copy(sel.folder, uids, dest)
    except NotFound as e:
        if getattr(e, "name", None) == dest or type(e).__name__ == "FolderNotFound":
            raise No("TRYCREATE", f"no folder {dest!r}; create it first") from None
        raise
    if not result.pairs:
        return Ok(f"{verb} completed (no messages)")
    s.server.transferred(Transfer(s.account, sel.folder, dest, tuple(b for _, b in result.pairs), move))
    src = seqset_of(sorted(a for a, _ in result.pairs))
    dst = seqset_of(sorted(b for _, b in result.pairs))
    code = f"COPYUID {result.dest_uidvalidity} {src} {dst}"
    if not move:
        return Ok(f"{verb} completed", code)
    s.untagged(f"OK [{code}] moved")
    sel.report_expunged(s, [a for a, _ in result.pairs])
    return Ok(f"{verb} completed")
