"""FETCH and UID FETCH (RFC 3501 §6.4.5, CONDSTORE/QRESYNC modifiers RFC 7162 §3.1.4, §3.2.6,
BINARY RFC 3516).

What each item costs decides where it comes from:

| items                                            | source                                  |
|--------------------------------------------------|-----------------------------------------|
| UID, FLAGS, MODSEQ                               | the session's own view (no store call)  |
| RFC822.SIZE, INTERNALDATE, ENVELOPE, BODYSTRUCTURE, cached HEADER.FIELDS | the store's index (`metadata`) |
| BODY[...] and RFC822 bodies, BINARY              | `read_range` of exactly the bytes asked |

So Thunderbird's first sync (`FLAGS RFC822.SIZE INTERNALDATE
BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)]`) never opens
a message file, and `BODY[2]<0.4096>` reads 4 KiB of the file, located by
the byte offsets the store recorded when the message arrived.
"""

from __future__ import annotations

import asyncio
import binascii
import quopri
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING, Any

from imap_gateway import structure, wire
from imap_gateway.commands import SELECTED, uid_pair
from imap_gateway.parse import FetchAtt, Parser, Section, seqset_of
from imap_gateway.responses import No
from imap_gateway.structure import NoSuchPart
from storage.mime import CACHED_HEADERS

if TYPE_CHECKING:
    from imap_gateway.selected import Selected
    from imap_gateway.session import Session

BATCH = 1000  # messages per metadata call and per write
META_ITEMS = frozenset({"RFC822.SIZE", "INTERNALDATE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822",
                        "RFC822.HEADER", "RFC822.TEXT", "BINARY", "BINARY.SIZE"})
MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")
# The body items that RFC822.* abbreviate (RFC 3501 §6.4.5).
RFC822_SECTIONS = {"RFC822": Section(), "RFC822.HEADER": Section((), "HEADER"), "RFC822.TEXT": Section((), "TEXT")}


class DateFormatter:
    """RFC 3501 date-time in the province's time zone: "28-Nov-2026 10:00:00 +0700".

    One per FETCH: the zone's offset is looked up once per quarter hour of arrival
    times and the date part once per day, since a first sync formats
    thousands of dates that share both.
    """

    def __init__(self, tz: tzinfo = UTC) -> None:
        self.tz = tz
        self._offsets: dict[int, tuple[int, bytes]] = {}
        self._days: dict[int, bytes] = {}

    def __call__(self, when: datetime) -> bytes:
        ts = int(when.timestamp())
        zone = self._offsets.get(ts // 900)  # offsets change on quarter hours (DST, :30 and :45 zones)
        if zone is None:
            off = int((datetime.fromtimestamp(ts, self.tz).utcoffset() or timedelta(0)).total_seconds())
            sign, m = (b"-", -off // 60) if off < 0 else (b"+", off // 60)
            zone = self._offsets[ts // 900] = (off, b"%s%02d%02d" % (sign, m // 60, m % 60))
        day, sec = divmod(ts + zone[0], 86400)
        prefix = self._days.get(day)
        if prefix is None:
            t = time.gmtime(day * 86400)
            prefix = self._days[day] = b'"%02d-%s-%04d ' % (t.tm_mday, MONTHS[t.tm_mon - 1], t.tm_year)
        return b'%s%02d:%02d:%02d %s"' % (prefix, sec // 3600, sec // 60 % 60, sec % 60, zone[1])


@uid_pair("FETCH", SELECTED, expunge_ok=False)
async def cmd_fetch(s: Session, tag: str, p: Parser, uid: bool) -> str:
    p.sp()
    seqset = p.seqset()
    p.sp()
    atts = p.fetch_atts()
    changedsince: int | None = None
    vanished = False
    if p.take_sp():
        p.open_paren()
        while not p.close_paren():
            word = p.word("a fetch modifier")
            if word == "CHANGEDSINCE":
                p.sp()
                changedsince = p.modseq(zero_ok=True)
            elif word == "VANISHED":
                vanished = True
            else:
                raise No(None, f"unknown FETCH modifier {word}", status="BAD")
            p.take_sp()
    p.end()
    if vanished and (not uid or not s.qresync or changedsince is None):
        raise No(None, "VANISHED needs UID FETCH, ENABLE QRESYNC and CHANGEDSINCE (RFC 7162 §3.2.6)",
                 status="BAD")
    names = {a.name for a in atts}
    if changedsince is not None or "MODSEQ" in names:
        s.enabled.add("CONDSTORE")  # RFC 7162 §3.1: CONDSTORE-enabling
        if "MODSEQ" not in names:
            atts.append(FetchAtt("MODSEQ"))
    if uid and "UID" not in names:
        atts.insert(0, FetchAtt("UID"))  # RFC 3501 §6.4.8: UID FETCH always returns UIDs
    sel = s.selected
    assert sel is not None
    idxs = sel.live(seqset, uid)
    if vanished:
        await _report_vanished(s, sel, seqset, changedsince or 0)
    if changedsince is not None:
        idxs = [i for i in idxs if sel.msgs[i][2] > changedsince]
    if not idxs:
        return "FETCH completed"
    # \Seen is set before the data is sent, and the new FLAGS go in the same response (RFC 3501 §6.4.5).
    seen_changed: set[int] = set()
    if not sel.readonly and any(a.sets_seen for a in atts):
        unseen = [sel.msgs[i][0] for i in idxs if "\\Seen" not in sel.msgs[i][1]]
        if unseen:
            changed, _ = await s.mbox.store_flags(sel.folder, unseen, ["\\Seen"], mode="add")
            seen_changed = set(sel.update(changed))
    needs_meta = bool(names & META_ITEMS)
    plan = [_renderer(s, sel, a) for a in atts]
    batches = [idxs[k : k + BATCH] for k in range(0, len(idxs), BATCH)]
    pending = _metadata(s, sel, batches[0]) if needs_meta else None
    try:
        for n, batch in enumerate(batches):
            metas: dict[int, Any] = {}
            if pending is not None:
                metas = {m.uid: m for m in await pending}
                # The index works on its own thread: let it read the next batch while we format this one.
                pending = _metadata(s, sel, batches[n + 1]) if n + 1 < len(batches) else None
            for i in batch:
                meta = metas.get(sel.msgs[i][0])
                if needs_meta and meta is None:
                    continue  # expunged meanwhile by another session: nothing to show (RFC 2180 §4.1.1)
                items = []
                for render, a in zip(plan, atts, strict=True):
                    item = render(i, meta)
                    items.append(item if item is not None else await _body_item(s, sel, a, meta))
                if i in seen_changed and "FLAGS" not in names:
                    items.append(b"FLAGS " + wire.flag_list(sel.flags_of(i)))
                s.send(b"* %d FETCH (%s)\r\n" % (i + 1, b" ".join(items)))
            await s.drain()
    finally:
        if pending is not None:  # an error mid-way: drop the prefetch, and its result or error with it
            pending.cancel()
            pending.add_done_callback(lambda t: t.cancelled() or t.exception())
    return "FETCH completed"


def _metadata(s: Session, sel: Selected, batch: list[int]) -> asyncio.Task[Any]:
    msgs = sel.msgs
    return asyncio.ensure_future(s.mbox.metadata(sel.folder, [msgs[i][0] for i in batch]))


async def _report_vanished(s: Session, sel: Selected, seqset: Any, changedsince: int) -> None:
    changes = await s.mbox.changes_since(sel.folder, changedsince)
    top = max(changes.expunged, default=0)
    gone = sorted(u for u in changes.expunged if seqset.contains(u, top))
    if gone:
        s.untagged("VANISHED (EARLIER) " + seqset_of(gone))


Render = Callable[[int, Any], "bytes | None"]


def _renderer(s: Session, sel: Selected, a: FetchAtt) -> Render:
    """How to render one item for message i: from the session, from the index, or None (read the file).

    Decided once per command, not per message: Thunderbird's first sync asks
    the same five items for every message of the folder.
    """
    name = a.name
    if name == "UID":
        return lambda i, meta: b"UID %d" % sel.msgs[i][0]
    if name == "FLAGS":
        return lambda i, meta: b"FLAGS " + wire.flag_list(sel.flags_of(i))
    if name == "MODSEQ":
        return lambda i, meta: b"MODSEQ (%d)" % sel.msgs[i][2]
    if name == "RFC822.SIZE":
        return lambda i, meta: b"RFC822.SIZE %d" % meta.size
    if name == "INTERNALDATE":
        fmt = DateFormatter(s.server.timezone)
        return lambda i, meta: b"INTERNALDATE " + fmt(meta.internal_date)
    if name == "ENVELOPE":
        return lambda i, meta: b"ENVELOPE " + structure.envelope(meta.envelope, s.utf8)
    if name == "BODYSTRUCTURE":
        return lambda i, meta: b"BODYSTRUCTURE " + structure.bodystructure(meta.structure, True, s.utf8)
    if name == "BODY" and a.section is None:
        return lambda i, meta: b"BODY " + structure.bodystructure(meta.structure, False, s.utf8)
    section = a.section
    if name == "BODY" and section is not None and section.text == "HEADER.FIELDS" and not section.part \
            and {f.lower() for f in section.fields} <= CACHED_HEADERS:
        # Every field asked for is kept by the index: no file is opened (the first-sync case).
        wanted = frozenset(f.lower() for f in section.fields)
        prefix = a.response_name().encode() + b" "

        def cached(i: int, meta: Any) -> bytes:
            text = "".join([raw for field, raw in meta.header_fields.items() if field in wanted])
            data = _partial(text.encode("utf-8", "surrogateescape") + b"\r\n", a.partial)
            return prefix + b"{%d}\r\n" % len(data) + data

        return cached
    return lambda i, meta: None


async def _body_item(s: Session, sel: Selected, a: FetchAtt, meta: Any) -> bytes:
    name = a.name
    if name in RFC822_SECTIONS:
        data = await section_data(s, sel.folder, meta, RFC822_SECTIONS[name])
        return name.encode() + b" " + wire.nstring(data)
    if name in ("BINARY", "BINARY.SIZE"):
        return await _binary(s, sel.folder, meta, a)
    # BODY[section]<partial>
    assert a.section is not None
    data = await section_data(s, sel.folder, meta, a.section, a.partial)
    return a.response_name().encode() + b" " + (b"NIL" if data is None else wire.literal(data))


async def section_data(s: Session, folder: str, meta: Any, section: Section,
                       partial: tuple[int, int] | None = None) -> bytes | None:
    """The bytes of BODY[section]<partial>, reading only the range needed (None: no such part)."""
    try:
        span = structure.locate(meta.structure, meta.size, section)
    except NoSuchPart:
        return None
    if span.header_fields or section.text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        block = await s.mbox.read_range(folder, meta.uid, span.start, span.end - span.start)
        return _partial(structure.filter_header(block, span.header_fields, span.exclude), partial)
    start, length = span.start, span.end - span.start
    if partial is not None:
        origin, want = partial
        if origin >= length:
            return b""
        start, length = start + origin, min(want, length - origin)
    if length <= 0:
        return b""
    return await s.mbox.read_range(folder, meta.uid, start, length)


def _partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is None:
        return data
    origin, length = partial
    return data[origin : origin + length]


async def _binary(s: Session, folder: str, meta: Any, a: FetchAtt) -> bytes:
    """RFC 3516: the part's content with its transfer encoding undone."""
    assert a.section is not None
    try:
        part = structure.find_part(meta.structure, a.section.part) if a.section.part else meta.structure
    except NoSuchPart:
        raise No("NONEXISTENT", "no such body part") from None
    if part.type in ("multipart", "message"):
        raise No("CANNOT", "BINARY applies to leaf parts only (RFC 3516 §4.2)", status="NO")
    raw = await s.mbox.read_range(folder, meta.uid, part.body_start, part.end - part.body_start)
    encoding = (part.encoding or "7bit").lower()
    try:
        if encoding == "base64":
            data = binascii.a2b_base64(raw)
        elif encoding == "quoted-printable":
            data = quopri.decodestring(raw)
        elif encoding in ("7bit", "8bit", "binary"):
            data = raw
        else:
            raise No("UNKNOWN-CTE", f"cannot decode transfer encoding {encoding}")
    except (binascii.Error, ValueError):
        raise No("PARSE", "the part's content is not valid for its transfer encoding") from None
    spec = a.section.spec()
    if a.name == "BINARY.SIZE":
        return b"BINARY.SIZE[%s] %d" % (spec.encode(), len(data))
    data = _partial(data, a.partial)
    origin = b"<%d>" % a.partial[0] if a.partial else b""
    prefix = b"~" if b"\x00" in data else b""
    return b"BINARY[%s]%s %s{%d}\r\n%s" % (spec.encode(), origin, prefix, len(data), data)
