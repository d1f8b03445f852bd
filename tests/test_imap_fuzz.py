"""Fuzz targets for every IMAP parser (the Mox rule): random and mutated input never
raises anything but the parser's own error, and never reads past its input.

Targets: each grammar entry point of `imap_gateway.parse.Parser`, modified
UTF-7 decoding, the command framing of `imap_gateway.conn.read_command`
(literals, line limits) over a real socket pair, and the RFC 5322 address
and header-field parsers behind ENVELOPE and HEADER.FIELDS. The whole server is fuzzed
over TCP in `test_imap_protocol.py`.
"""

from __future__ import annotations

import asyncio
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imap_gateway import utf7
from imap_gateway.conn import Closed, Connection, Rejected, read_command
from imap_gateway.parse import ParseError, Parser
from imap_gateway.structure import address_list, filter_header, parse_addresses

FIRST_SYNC = b"(FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)])"
CORPUS: dict[str, list[bytes]] = {
    "fetch_atts": [FIRST_SYNC, b"BODY[1.2.MIME]<0.100>", b"(UID FLAGS MODSEQ BODYSTRUCTURE ENVELOPE)", b"FULL",
                   b"(BINARY.PEEK[1]<0.10> BINARY.SIZE[2] BODY[HEADER.FIELDS.NOT (X-A)])"],
    "search_keys": [b"OR SUBJECT {5}\r\nhello FROM x NOT SEEN 1:5,7 SINCE 1-Feb-1994",
                    b'(HEADER "X-Y" "z" UID 1:*) MODSEQ "/flags/\\\\draft" all 5 LARGER 4 KEYWORD $Work',
                    b"TEXT \"c\xc3\xb4ng v\xc4\x83n\" BEFORE \"01-Jan-2020\""],
    "seqset": [b"1:*,5,7:3", b"*", b"4294967295"],
    "astring": [b'"a \\"b\\""', b"{3}\r\nabc", b"{3+}\r\nabc", b"atom]x", b"~{2}\r\n\x00\x01"],
    "mailbox": [b'"C&APQ-ng v&AQM-n &AREevw-n"', b"INBOX/Sub.Folder", b"&ZeVnLIqe-"],
    "list_mailbox": [b"%", b"*", b'"Th&AbA-/%"', b"INBOX/*"],
    "flag_list": [b"(\\Seen \\Answered $Label1)", b"\\Deleted", b"()"],
    "date": [b"1-Feb-1994", b'"17-Jul-1996"'],
    "date_time": [b'"17-Jul-1996 02:44:25 -0700"', b'" 7-Jul-1996 02:44:25 +0000"'],
}
TOKENS = [b"(", b")", b"[", b"]", b"<", b">", b"{5}\r\n", b"{0+}\r\n", b"~{2}\r\n", b"{99999999999999999999}\r\n",
          b'"', b"\\", b"*", b":", b",", b" ", b"\r\n", b"NIL", b"\x00", b"\xff\xfe", b"4294967296", b"0", b".",
          b"-", b"&", b"&-", b"NOT ", b"OR ", b"HEADER.FIELDS", b"$"]


def run_target(fn: str, data: bytes, flag: bool) -> None:
    p = Parser(data, utf8=flag, literal8=flag)
    try:
        getattr(p, fn)()
    except ParseError as e:
        assert str(e)  # every error has a reason for the client
    assert 0 <= p.pos <= len(data)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(CORPUS)), st.binary(max_size=120), st.booleans())
def test_random_bytes_into_every_parser(fn, data, flag):
    run_target(fn, data, flag)


@st.composite
def mutated(draw):
    fn = draw(st.sampled_from(sorted(CORPUS)))
    data = bytearray(draw(st.sampled_from(CORPUS[fn])))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["insert", "delete", "replace", "token", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "insert":
            data[pos:pos] = bytes([draw(st.integers(0, 255))])
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 4))]
        elif op == "replace" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "token":
            data[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == "truncate":
            del data[pos:]
    return fn, bytes(data)


@settings(max_examples=1500, deadline=None)
@given(mutated(), st.booleans())
def test_mutated_commands_into_every_parser(case, flag):
    fn, data = case
    run_target(fn, data, flag)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_modified_utf7_decoder(text):
    try:
        name = utf7.decode(text)
    except utf7.Utf7Error:
        return
    assert utf7.encode(name) == text  # what decodes is canonical: one spelling per name


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_modified_utf7_round_trip(name):
    encoded = utf7.encode(name)
    assert encoded.isascii()
    assert utf7.decode(encoded) == name


# ---------------------------------------------------------------- command framing over a socket


async def frame(chunks: list[bytes]) -> list[bytes]:
    """Feed `chunks` through a real socket into read_command; return what the server wrote and read."""
    a, b = socket.socketpair()
    loop = asyncio.get_running_loop()
    results: list[bytes] = []
    done = asyncio.Event()

    async def serve(conn: Connection) -> None:
        try:
            while True:
                try:
                    cmd = await read_command(conn, append_limit=1000, max_command=2048)
                except Rejected as r:
                    results.append(b"REJECTED " + r.response)
                    if r.fatal:
                        return
                    continue
                results.append(b"COMMAND " + cmd)
        except Closed:
            pass
        finally:
            done.set()

    await loop.connect_accepted_socket(lambda: Connection(serve), a)
    b.setblocking(False)
    for chunk in chunks:
        await loop.sock_sendall(b, chunk)
    b.shutdown(socket.SHUT_WR)
    try:
        await asyncio.wait_for(done.wait(), 10)
    finally:
        b.close()
    return results


def test_framing_literals_and_limits():
    out = asyncio.run(frame([b"a LOGIN {3}\r\n", b"abc {4+}\r\nd\r\nf\r\n", b"b APPEND INBOX {2000}\r\n",
                             b"c NOOP " + b"x" * 3000 + b"\r\n", b"d NOOP\r\n"]))
    assert out[0] == b"COMMAND a LOGIN {3}\r\nabc {4+}\r\nd\r\nf"
    assert out[1].startswith(b"REJECTED b NO [TOOBIG]")
    assert out[2] == b"REJECTED c BAD command line too long\r\n"
    assert out[3] == b"COMMAND d NOOP"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=60), st.sampled_from([*TOKENS, b"a NOOP\r\n", b"{3}\r\n"])),
                max_size=12))
def test_random_input_into_command_framing(chunks):
    out = asyncio.run(frame(chunks))
    for item in out:
        assert item.startswith((b"COMMAND ", b"REJECTED "))
        if item.startswith(b"COMMAND "):
            assert len(item) <= 2048 + 1000 + 16


ADDRESS_CORPUS = ['"Lê, Văn" <le@example.com>, Nhóm: a@b.vn, "c d" <c@d.vn>;, x@y.vn (chú thích)',
                  "undisclosed-recipients:;", "<@route,@r2:user@host>", "J. Smith <js@x>", "a@[10.0.0.1]"]


@settings(max_examples=600, deadline=None)
@given(st.one_of(st.text(max_size=80), st.sampled_from(ADDRESS_CORPUS).flatmap(
    lambda base: st.builds(lambda cut, junk: base[:cut] + junk + base[cut:], st.integers(0, len(base)),
                           st.text(alphabet='<>@,;:."()[]\\ ab', max_size=6)))))
def test_address_list_parser(text):
    """ENVELOPE's RFC 5322 address parser: any header value gives a well-formed address list."""
    addrs = parse_addresses(text)
    ends = sum(1 for a in addrs if a.mailbox is None and a.host is None)
    starts = sum(1 for a in addrs if a.host is None and a.mailbox is not None and a.name is None)
    assert ends <= starts  # every group end closes a group start
    encoded = address_list(text)
    assert encoded == b"NIL" or (encoded.startswith(b"((") and encoded.endswith(b"))"))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.sampled_from(["subject", "from", "x-a", "to"]), max_size=3),
       st.booleans())
def test_header_filter(block, names, exclude):
    out = filter_header(block, tuple(names), exclude)
    assert out.endswith(b"\r\n")
