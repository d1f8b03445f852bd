"""Real components for the SMTP tests: clamd with an EICAR signature, a DNS server on loopback, the server.

Nothing here is mocked: clamd is Debian's `clamav-daemon` started in a temp
folder (Foreground, a LocalSocket, one custom `.ndb` signature; it starts in
under a second), DNS answers come from a dnslib server bound to a free
loopback port, and the SMTP listeners are the production ones.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dnslib import QTYPE, RR, TXT, A
from dnslib.server import BaseResolver, DNSServer

EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
PASSWORD = "Matkhau@123"


class Clamd:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "clamd.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        exe = shutil.which("clamd") or "/usr/sbin/clamd"
        if not Path(exe).exists():
            raise RuntimeError("clamd is not installed: `make test` installs clamav-daemon (.ci/test-packages.txt)")
        db = self.folder / "db"
        db.mkdir(parents=True, exist_ok=True)
        (db / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
        conf = self.folder / "clamd.conf"
        conf.write_text(
            "Foreground yes\n"
            f"DatabaseDirectory {db}\n"
            f"LocalSocket {self.socket}\n"
            f"PidFile {self.folder / 'clamd.pid'}\n"
            f"LogFile {self.folder / 'clamd.log'}\n"
            "StreamMaxLength 64M\nMaxFileSize 64M\nMaxScanSize 128M\nMaxThreads 8\n"
        )
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        log = (self.folder / "clamd.log").read_text() if (self.folder / "clamd.log").exists() else ""
        self.stop()
        raise RuntimeError(f"clamd did not start:\n{log[-2000:]}")

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(self.socket))
                s.sendall(b"zPING\0")
                return s.recv(16).startswith(b"PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Zone(BaseResolver):
    """A tiny authoritative zone: TXT and A records, everything else NXDOMAIN; `slow` names never answer."""

    txt: dict[str, list[str]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
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
        if not reply.rr and qname not in self.txt and qname not in self.a:
            reply.header.rcode = 3  # NXDOMAIN
        return reply


class DnsServer:
    def __init__(self) -> None:
        self.zone = Zone()
        self.server = DNSServer(self.zone, address="127.0.0.1", port=0)
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
