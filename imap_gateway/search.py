"""SEARCH and UID SEARCH (RFC 3501 §6.4.4) with ESEARCH (RFC 4731), CONDSTORE's MODSEQ key
(RFC 7162 §3.1.5) and WITHIN's OLDER/YOUNGER (RFC 5032).

What matches (the README says the same to users):
* text keys (SUBJECT, FROM, TO, CC, BCC, BODY, TEXT, HEADER) match
  substrings, ignoring case and Vietnamese diacritics ("cong van" finds
  "Công văn", "đ" matches "d"), after RFC 2047 and transfer decoding; BODY and
  TEXT match whole words by prefix through the store's full-text index;
* date keys compare calendar days in the province's time zone (RFC 3501:
  time and zone are disregarded), SENT* use the Date header;
* CHARSET may be UTF-8 or US-ASCII; anything else gets NO [BADCHARSET].

Evaluation narrows a candidate set key by key, cheapest first: flags,
numbers and UIDs from the session's own view; sizes and dates from the
index (`metadata`); text from the store's search index (`search_text`),
which never reads message files. Only a HEADER search on a field the index
does not keep reads header blocks, of the candidates that are left.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from imap_gateway.commands import SELECTED, uid_pair
from imap_gateway.parse import ParseError, Parser, SearchKey, SeqSet, seqset_of
from imap_gateway.responses import No

if TYPE_CHECKING:
    from imap_gateway.selected import Selected
    from imap_gateway.session import Session

CHARSETS = ("UTF-8", "US-ASCII")
FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "DELETED": ("\\Deleted", True), "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True), "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False), "UNDELETED": ("\\Deleted", False), "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False), "UNSEEN": ("\\Seen", False),
}
TEXT_WHERE = {"SUBJECT": "header:subject", "FROM": "header:from", "TO": "header:to", "CC": "header:cc",
              "BCC": "header:bcc", "BODY": "body", "TEXT": "text"}
META_KEYS = frozenset({"LARGER", "SMALLER", "BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE",
                       "OLDER", "YOUNGER"})
# Cost rank for evaluating an AND: cheap filters first shrink what expensive ones look at.
COST = {"meta": 2, "text": 3, "header": 4}
RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT")


@uid_pair("SEARCH", SELECTED, expunge_ok=False)
async def cmd_search(s: Session, tag: str, p: Parser, uid: bool) -> str:
    p.sp()
    returns: list[str] | None = None
    if p.take(b"RETURN "):
        returns = p.keywords(RETURN_OPTIONS, "SEARCH RETURN option") or ["ALL"]  # RFC 4731 §3.1: () is ALL
        p.sp()
    if p.take(b"CHARSET "):
        charset = p.astring("a charset").decode("ascii", "replace").upper()
        if charset not in CHARSETS:
            raise No(f"BADCHARSET ({' '.join(CHARSETS)})", f"charset {charset} is not supported; use UTF-8")
        p.sp()
    program = p.search_keys()
    p.end()
    sel = s.selected
    assert sel is not None
    uses_modseq = _uses(program, "MODSEQ")
    if uses_modseq:
        s.enabled.add("CONDSTORE")
    ctx = _Context(s, sel)
    everything = sel.live(None)
    found = sorted(await ctx.eval(program, set(everything)))
    numbers = [sel.uids[i] if uid else i + 1 for i in found]
    modseq = max((sel.modseqs[i] for i in found), default=0) if uses_modseq else None
    if returns is None:
        line = "SEARCH" + "".join(f" {n}" for n in numbers)
        if modseq and numbers:
            line += f" (MODSEQ {modseq})"
        s.untagged(line)
        return "SEARCH completed"
    line = f'ESEARCH (TAG "{tag}")' + (" UID" if uid else "")
    if numbers:
        if "MIN" in returns:
            line += f" MIN {numbers[0]}"
        if "MAX" in returns:
            line += f" MAX {numbers[-1]}"
        if "ALL" in returns:
            line += f" ALL {seqset_of(numbers)}"
    if "COUNT" in returns:
        line += f" COUNT {len(numbers)}"
    if modseq and numbers:
        line += f" MODSEQ {modseq}"
    s.untagged(line)
    return "SEARCH completed"


def _uses(key: SearchKey, op: str) -> bool:
    return key.op == op or any(_uses(c, op) for c in key.children)


def _cost(key: SearchKey) -> int:
    if key.op in META_KEYS:
        return COST["meta"]
    if key.op in TEXT_WHERE:
        return COST["text"]
    if key.op == "HEADER":
        return COST["header"]
    return max((_cost(c) for c in key.children), default=0)


def _text(raw: Any) -> str:
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace")
    return str(raw)


class _Context:
    """One SEARCH's evaluation: lazily loaded metadata shared by all keys."""

    def __init__(self, s: Session, sel: Selected) -> None:
        self.s = s
        self.sel = sel
        self.meta: dict[int, Any] = {}
        self.tz = s.server.timezone

    async def eval(self, key: SearchKey, cand: set[int]) -> set[int]:
        if not cand:
            return cand
        sel = self.sel
        msgs = sel.msgs
        op = key.op
        if op == "AND":
            for child in sorted(key.children, key=_cost):
                cand = await self.eval(child, cand)
                if not cand:
                    break
            return cand
        if op == "OR":
            a = await self.eval(key.children[0], cand)
            return a | await self.eval(key.children[1], cand - a)
        if op == "NOT":
            return cand - await self.eval(key.children[0], cand)
        if op == "ALL":
            return cand
        if op in FLAG_KEYS:
            flag, present = FLAG_KEYS[op]
            return {i for i in cand if (flag in msgs[i][1]) == present}
        if op in ("KEYWORD", "UNKEYWORD"):
            word = str(key.arg).lower()
            present = op == "KEYWORD"
            return {i for i in cand if any(f.lower() == word for f in msgs[i][1]) == present}
        if op == "RECENT":
            return {i for i in cand if msgs[i][0] in sel.recent}
        if op == "OLD":
            return {i for i in cand if msgs[i][0] not in sel.recent}
        if op == "NEW":
            return {i for i in cand if msgs[i][0] in sel.recent and "\\Seen" not in msgs[i][1]}
        if op in ("SEQ", "UID"):
            assert isinstance(key.arg, SeqSet)
            return cand & set(self._numbers(key.arg, uid=op == "UID"))
        if op == "MODSEQ":
            return {i for i in cand if msgs[i][2] >= int(key.arg)}  # type: ignore[call-overload]
        if op in META_KEYS:
            return await self._meta_filter(op, key.arg, cand)
        if op in TEXT_WHERE:
            return await self._text(TEXT_WHERE[op], _text(key.arg), cand)
        if op == "HEADER":
            name, value = key.arg  # type: ignore[misc]
            return await self._header(name, _text(value), cand)
        raise ParseError(f"search key {op} is not supported")

    def _numbers(self, seqset: SeqSet, uid: bool) -> list[int]:
        sel = self.sel
        if uid:
            return sel.indexes(seqset, uid=True)
        n = len(sel)  # SEARCH 1:100 on a 10-message folder names what exists (no error)
        out: list[int] = []
        for a, b in seqset.resolve(n):
            out.extend(range(max(a, 1) - 1, min(b, n)))
        return out

    async def _load_meta(self, cand: set[int]) -> None:
        missing = [self.sel.uids[i] for i in sorted(cand) if self.sel.uids[i] not in self.meta]
        for start in range(0, len(missing), 1000):
            for m in await self.s.mbox.metadata(self.sel.folder, missing[start : start + 1000]):
                self.meta[m.uid] = m

    def _day(self, when: datetime) -> date:
        return when.astimezone(self.tz).date()

    async def _meta_filter(self, op: str, arg: Any, cand: set[int]) -> set[int]:
        await self._load_meta(cand)
        out = set()
        now = datetime.now(self.tz)
        for i in cand:
            m = self.meta.get(self.sel.uids[i])
            if m is None:
                continue
            if op == "LARGER":
                ok = m.size > arg
            elif op == "SMALLER":
                ok = m.size < arg
            elif op in ("BEFORE", "ON", "SINCE"):
                ok = _compare(op, self._day(m.internal_date), arg)
            elif op in ("OLDER", "YOUNGER"):
                age = now - m.internal_date
                ok = age >= timedelta(seconds=arg) if op == "OLDER" else age <= timedelta(seconds=arg)
            else:
                sent = _sent_day(m.envelope.get("date"))
                ok = sent is not None and _compare(op[4:], sent, arg)
            if ok:
                out.add(i)
        return out

    async def _text(self, where: str, query: str, cand: set[int]) -> set[int]:
        """The store's search index; the candidates narrow a header search it must read files for."""
        uids = [self.sel.uids[i] for i in cand] if where.startswith("header:") else None
        found = await self.s.mbox.search_text(self.sel.folder, query, where, uids)
        return {i for i in cand if self.sel.uids[i] in found}

    async def _header(self, name: str, query: str, cand: set[int]) -> set[int]:
        return await self._text(f"header:{name.lower()}", query, cand)


def _compare(op: str, day: date, arg: date) -> bool:
    if op == "BEFORE":
        return day < arg
    if op == "ON":
        return day == arg
    return day >= arg  # SINCE


def _sent_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).date()
    except (TypeError, ValueError, IndexError):
        return None
