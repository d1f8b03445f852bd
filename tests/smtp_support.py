"""Real components for the SMTP tests: a DNS server on loopback (clamd is tests/clamd.py).

Nothing here is mocked: clamd is Debian's `clamav-daemon` started in a temp
folder (Foreground, a LocalSocket, one custom `.ndb` signature; it starts in
under a second), DNS answers come from a dnslib server bound to a free
loopback port, and the SMTP listeners are the production ones.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, MX, QTYPE, RR, TXT, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tests.clamd import EICAR, Clamd

__all__ = ["EICAR", "PASSWORD", "Clamd", "DnsServer", "Zone", "wait_port"]

PASSWORD = "Matkhau@123"


@dataclass
class Zone(BaseResolver):
    """A tiny authoritative zone: TXT, A, AAAA and MX records (a name with any record exists; the others
    are NXDOMAIN); `slow` names never answer. MX values are (preference, host); host "." is a null MX."""

    txt: dict[str, list[str]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    mx: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    slow: set[str] = field(default_factory=set)

    def resolve(self, request: Any, handler: Any) -> Any:
        reply = request.reply()
        qname = str(request.q.qname).rstrip(".").lower()
        if qname in self.slow:
            time.sleep(3)
            return None  # no answer at all: the client times out
        qtype = QTYPE[request.q.qtype]
        if qtype == "TXT":
            for value in self.txt.get(qname, []):
                data = value.encode()
                reply.add_answer(RR(qname, QTYPE.TXT, rdata=TXT([data[i:i + 255] for i in range(0, len(data), 255)]),
                                    ttl=60))
        elif qtype == "A":
            for ip in self.a.get(qname, []):
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=60))
        elif qtype == "AAAA":
            for ip in self.aaaa.get(qname, []):
                reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(ip), ttl=60))
        elif qtype == "MX":
            for pref, host in self.mx.get(qname, []):
                reply.add_answer(RR(qname, QTYPE.MX, rdata=MX(host, pref), ttl=60))
        if not reply.rr and not any(qname in table for table in (self.txt, self.a, self.aaaa, self.mx)):
            reply.header.rcode = 3  # NXDOMAIN
        return reply


class DnsServer:
    def __init__(self) -> None:
        self.zone = Zone()
        # DNSLogger("-request,-reply,..."): quiet; its default prints every query
        quiet = DNSLogger("-send,-recv,-request,-reply,-truncated,-data")
        self.server = DNSServer(self.zone, address="127.0.0.1", port=0, logger=quiet)
        self.server.start_thread()
        self.port = self.server.server.server_address[1]

    def stop(self) -> None:
        self.server.stop()


async def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise AssertionError(f"port {port} not listening")
