"""Folders: LIST (RFC 3501, LIST-EXTENDED RFC 5258, LIST-STATUS RFC 5819, SPECIAL-USE RFC 6154,
CHILDREN RFC 3348), LSUB, NAMESPACE (RFC 2342), CREATE (with USE, RFC 6154 §3),
DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE.

The hierarchy separator is `/`; names travel as modified UTF-7 (or UTF-8
after ENABLE UTF8=ACCEPT) and are Unicode everywhere else, so a folder
named "Công văn đến" or "Báo cáo 2026.Q1" is just a string to the store.
Special-use attributes (\\Sent, \\Drafts, \\Trash, \\Junk, \\Archive) are
always returned: Thunderbird and Outlook pick their folders from them.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from imap_gateway import wire
from imap_gateway.commands import AUTH, command
from imap_gateway.mailbox import STATUS_ITEMS, status_line
from imap_gateway.parse import Parser, normalise_inbox
from imap_gateway.responses import No

if TYPE_CHECKING:
    from imap_gateway.session import Session

SEP = "/"
SPECIAL_USES = frozenset({"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"})


def pattern_regex(reference: str, pattern: str) -> re.Pattern[str]:
    """RFC 3501 §6.3.8: `*` matches anything, `%` anything but the separator; INBOX is case-insensitive."""
    full = normalise_inbox(reference + pattern) if reference and not pattern.startswith(SEP) else pattern
    out = []
    for ch in full:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append("[^/]*")
        else:
            out.append(re.escape(ch))
    text = "".join(out)
    if full.upper().startswith("INBOX"):
        text = "(?i:INBOX)" + "".join(out[5:])
    return re.compile(text, re.DOTALL)


def _attributes(info: Any, *, subscribed_flag: bool, children: bool = True) -> list[str]:
    attrs: list[str] = []
    if not getattr(info, "selectable", True):
        attrs.append("\\Noselect")
    if children:
        attrs.append("\\HasChildren" if info.has_children else "\\HasNoChildren")
    if info.special_use:
        attrs.append(info.special_use)
    if subscribed_flag and info.subscribed:
        attrs.append("\\Subscribed")
    return attrs


def list_line(s: Session, name: str, attrs: list[str], extra: bytes = b"", verb: str = "LIST") -> bytes:
    return (f"* {verb} ({' '.join(attrs)}) \"/\" ".encode() + wire.mailbox(name, s.utf8) + extra + b"\r\n")


@command("LIST", AUTH)
async def cmd_list(s: Session, tag: str, p: Parser) -> str:
    p.sp()
    select: set[str] = set()
    if p.peek_is(b"("):  # LIST-EXTENDED selection options
        select = set(p.keywords(("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"), "LIST selection option"))
        p.sp()
        if select == {"RECURSIVEMATCH"} or ("RECURSIVEMATCH" in select and "SUBSCRIBED" not in select
                                             and "SPECIAL-USE" not in select):
            raise No(None, "RECURSIVEMATCH needs another selection option (RFC 5258 §3.1)", status="BAD")
    reference = p._name(p.astring("a reference name"), "the reference name")
    p.sp()
    patterns: list[str] = []
    if p.take(b"("):
        while not p.close_paren():
            patterns.append(p.list_mailbox())
            p.take_sp()
    else:
        patterns.append(p.list_mailbox())
    returns: set[str] = set()
    status_items: list[str] = []
    if p.take_sp():
        p.expect(b"RETURN", "RETURN")
        p.sp()
        p.open_paren()
        while not p.close_paren():
            word = p.word("a return option")
            if word == "STATUS":  # RFC 5819 LIST-STATUS
                p.sp()
                status_items = p.keywords(STATUS_ITEMS, "STATUS item")
            elif word not in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE"):
                raise No(None, f"unknown LIST return option {word}", status="BAD")
            returns.add(word)
            p.take_sp()
    p.end()

    if patterns == [""]:
        # RFC 3501 §6.3.8: an empty pattern asks for the separator and the root.
        s.send(b'* LIST (\\Noselect) "/" ""\r\n')
        return "LIST completed"
    folders = await s.mbox.list_folders()
    regexes = [pattern_regex(reference, pat) for pat in patterns]
    subscribed_flag = "SUBSCRIBED" in returns or "SUBSCRIBED" in select
    lines: list[tuple[str, bytes, bool]] = []
    by_name = {f.name: f for f in folders}
    for f in folders:
        if not any(r.fullmatch(f.name) for r in regexes):
            continue
        if "SPECIAL-USE" in select and not f.special_use:
            continue
        if "SUBSCRIBED" in select and not f.subscribed:
            if "RECURSIVEMATCH" in select and _has_subscribed_child(f.name, folders):
                attrs = _attributes(f, subscribed_flag=False)
                lines.append((f.name, list_line(s, f.name, attrs, b' ("CHILDINFO" ("SUBSCRIBED"))'), False))
            continue
        lines.append((f.name, list_line(s, f.name, _attributes(f, subscribed_flag=subscribed_flag)),
                      getattr(f, "selectable", True)))
    if "SUBSCRIBED" in select:
        # Subscriptions to folders that no longer exist are still listed (RFC 5258 §3.1).
        for name in await _dangling_subscriptions(s, by_name):
            if any(r.fullmatch(name) for r in regexes):
                lines.append((name, list_line(s, name, ["\\NonExistent", "\\Subscribed"]), False))
    for name, line_bytes, selectable in sorted(lines, key=lambda x: (x[0] != "INBOX", x[0])):
        s.send(line_bytes)
        if status_items and selectable:
            s.send(await status_line(s, name, status_items))
    return "LIST completed"


def _has_subscribed_child(name: str, folders: list[Any]) -> bool:
    prefix = name + SEP
    return any(f.subscribed and f.name.startswith(prefix) for f in folders)


async def _dangling_subscriptions(s: Session, existing: dict[str, Any]) -> list[str]:
    subs = getattr(s.mbox, "subscriptions", None)
    if subs is None:
        return []
    return [n for n in await subs() if n not in existing]


@command("LSUB", AUTH)
async def cmd_lsub(s: Session, tag: str, p: Parser) -> str:
    """RFC 3501 §6.3.9 (kept for Outlook and older clients)."""
    p.sp()
    reference = p._name(p.astring("a reference name"), "the reference name")
    p.sp()
    pattern = p.list_mailbox()
    p.end()
    regex = pattern_regex(reference, pattern)
    for f in await s.mbox.list_folders():
        if f.subscribed and regex.fullmatch(f.name):
            attrs = [] if getattr(f, "selectable", True) else ["\\Noselect"]
            s.send(list_line(s, f.name, attrs, verb="LSUB"))
    return "LSUB completed"


@command("NAMESPACE", AUTH)
async def cmd_namespace(s: Session, tag: str, p: Parser) -> str:
    """One personal namespace with `/`; no shared or other users' folders."""
    p.end()
    s.untagged('NAMESPACE (("" "/")) NIL NIL')
    return "NAMESPACE completed"


@command("CREATE", AUTH)
async def cmd_create(s: Session, tag: str, p: Parser) -> str:
    p.sp()
    name = p.mailbox().rstrip(SEP)  # RFC 3501 §6.3.3: a trailing separator only declares intent
    use: str | None = None
    if p.take_sp():  # RFC 6154 §3: CREATE name (USE (\Sent))
        p.open_paren()
        p.expect(b"USE", "USE")
        p.sp()
        p.open_paren()
        uses = []
        while not p.close_paren():
            uses.append(_special_use(p))
            p.take_sp()
        p.expect(b")")
        if len(uses) > 1:
            raise No("USEATTR", "one special use per folder")
        use = uses[0] if uses else None
    p.end()
    _check_name(name)
    if name.upper() == "INBOX":
        raise No("ALREADYEXISTS", "INBOX always exists")
    await s.mbox.create_folder(name, special_use=use)
    return "CREATE completed"


def _special_use(p: Parser) -> str:
    p.expect(b"\\")
    word = "\\" + p.atom("a special-use attribute")
    canon = next((u for u in SPECIAL_USES if u.lower() == word.lower()), None)
    if canon is None:
        raise No("USEATTR", f"{word} is not a special use this server supports")
    return canon


def _check_name(name: str) -> None:
    if not name or any(part == "" for part in name.split(SEP)):
        raise No("CANNOT", "a folder name needs a name between the separators")
    if any(c in name for c in "%*") or any(ord(c) < 0x20 for c in name):
        raise No("CANNOT", "folder names cannot contain %, * or control characters")


@command("DELETE", AUTH)
async def cmd_delete(s: Session, tag: str, p: Parser) -> str:
    name = p.sole_mailbox()
    if name == "INBOX":
        raise No("CANNOT", "INBOX cannot be deleted")
    await s.mbox.delete_folder(name)
    return "DELETE completed"


@command("RENAME", AUTH)
async def cmd_rename(s: Session, tag: str, p: Parser) -> str:
    p.sp()
    old = p.mailbox()
    p.sp()
    new = p.mailbox().rstrip(SEP)
    p.end()
    _check_name(new)
    if new == "INBOX":
        raise No("ALREADYEXISTS", "INBOX always exists")
    await s.mbox.rename_folder(old, new)
    return "RENAME completed"


@command("SUBSCRIBE", AUTH)
async def cmd_subscribe(s: Session, tag: str, p: Parser) -> str:
    await s.mbox.subscribe(p.sole_mailbox(), True)
    return "SUBSCRIBE completed"


@command("UNSUBSCRIBE", AUTH)
async def cmd_unsubscribe(s: Session, tag: str, p: Parser) -> str:
    await s.mbox.subscribe(p.sole_mailbox(), False)
    return "UNSUBSCRIBE completed"
