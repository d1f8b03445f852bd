"""1,000 connected IMAP clients must not mean 1,000 threads or 3,000 file descriptors: every
session of an account shares the account's pooled index, all index work runs on the store's
few threads, and at most `max_open` indexes (3 descriptors each: database, WAL, shared memory)
are open whatever the number of clients.

Real clients over real TLS sockets against the IMAP listeners; the server runs in a thread of
this process (tests/imap_support.py), so its threads and descriptors are this process's.
"""

from __future__ import annotations

import asyncio
import os
import threading

from storage.index import INDEX_NAME
from tests.imap_support import PLAIN_PASSWORD, make_server, message

CLIENTS = 1000
ACCOUNTS = 80  # more than the pool's max_open: indexes are closed and reopened under load
MAX_OPEN = 64  # MailStore's default


def descriptors() -> dict[str, int]:
    """This process's open descriptors by kind: index files, sockets, anything else."""
    out = {"index": 0, "socket": 0, "other": 0}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        kind = "index" if INDEX_NAME in target else "socket" if target.startswith("socket:") else "other"
        out[kind] += 1
    return out


async def connect(port: int, ctx, address: str, gate: asyncio.Semaphore):  # type: ignore[no-untyped-def]
    async with gate:
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        assert (await r.readline()).startswith(b"* OK")
        for tag, command in ((b"a", f"LOGIN {address} {PLAIN_PASSWORD}"), (b"b", "SELECT INBOX")):
            w.write(tag + b" " + command.encode() + b"\r\n")
            await w.drain()
            await until(r, tag)
    return r, w


async def until(r: asyncio.StreamReader, tag: bytes) -> list[bytes]:
    lines = []
    while True:
        line = await asyncio.wait_for(r.readline(), 60)
        assert line, f"connection closed after {lines}"
        lines.append(line)
        if line.startswith(tag + b" "):
            assert line.startswith(tag + b" OK"), lines
            return lines


async def settled() -> None:
    """The pool's limit is soft (indexes busy at the same moment all stay open, or a delivery to
    more recipients than the limit could wait for itself); released ones close right after."""
    for _ in range(200):
        if descriptors()["index"] <= 3 * MAX_OPEN:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"index descriptors stay above 3 x {MAX_OPEN}: {descriptors()}")


def test_a_thousand_imap_clients_share_pooled_indexes(tmp_path):
    with make_server(tmp_path) as srv:
        addresses = [srv.add_person(f"Người Dùng {i}", PLAIN_PASSWORD, address=f"nd{i}") for i in range(ACCOUNTS)]
        threads_before = threading.active_count()
        ctx = srv.client_context()

        async def main() -> None:
            gate = asyncio.Semaphore(50)
            conns = await asyncio.gather(*(connect(srv.ports["imaps"], ctx, addresses[i % ACCOUNTS], gate)
                                           for i in range(CLIENTS)))
            try:
                at_peak = descriptors()
                threads = threading.active_count()
                # every client is logged in with its INBOX selected
                assert at_peak["socket"] >= 2 * CLIENTS  # both ends of each connection live in this process
                assert at_peak["index"] <= 3 * ACCOUNTS, at_peak  # one index per account, not per client
                await settled()  # and no more than max_open once the burst is over
                assert at_peak["other"] < 200, at_peak
                assert threads - threads_before <= 24, (threads_before, threads)  # the store's pool, not 1 per client
                # and the sessions work: a delivery to each account reaches every one of its clients
                for address in addresses:
                    srv.deliver(address, message(f"Thư cho {address}"))
                for _r, w in conns:
                    w.write(b"c NOOP\r\n")
                for r, _w in conns:
                    assert b"* 1 EXISTS\r\n" in await until(r, b"c")
                await settled()
            finally:
                for _r, w in conns:
                    w.close()

        asyncio.run(main())
