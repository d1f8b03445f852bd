"""Nothing acknowledged is lost: SIGKILL the server in the middle of many deliveries (DEVELOPERS.md, Đ10.2).

The real `mailserver serve` runs as a subprocess with a real clamd; 10
sessions deliver messages as fast as they can; the process is killed with
SIGKILL (no clean-up runs) while deliveries are in flight. Every message
that received `250` must then be in its recipient's Maildir (`new/` or
`cur/`), byte for byte complete. Messages that never got their 250 may or
may not be there (the sender will retry them).
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

from tests.clamd import Clamd
from tests.helpers import cli, write_config
from tests.server import ServerProcess

SESSIONS = 10


def body_for(n: int, s: int) -> bytes:
    line = f"session {s} message {n}: nội dung kiểm tra độ bền ghi đĩa\r\n".encode()
    return line * 200


async def sender(port: int, rcpt: str, s: int, acked: list[tuple[str, bytes]], stop: asyncio.Event) -> None:
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        await r.readline()
        w.write(b"HELO durability.example.net\r\n")
        await r.readline()
        n = 0
        while not stop.is_set():
            mid = f"<d{s}.{n}@example.org>"
            body = body_for(n, s)
            msg = (f"From: a@example.org\r\nTo: {rcpt}\r\nSubject: d {s} {n}\r\nMessage-ID: {mid}\r\n\r\n").encode()
            w.write(f"MAIL FROM:<a@example.org>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
            for _ in range(3):
                await r.readline()
            w.write(msg + body + b".\r\n")
            line = await r.readline()
            if line.startswith(b"250"):
                acked.append((mid, body))
            elif not line:
                return
            n += 1
    except (ConnectionError, OSError):
        return


async def test_sigkill_during_deliveries_loses_no_acknowledged_message(tmp_path: Path):
    clamd = Clamd(tmp_path / "clamd")
    (tmp_path / "clamd").mkdir()
    clamd.start()
    cfg = write_config(tmp_path, extra=f"clamd: {{socket: {clamd.socket}}}\n"
                                       "dns: {nameservers: [127.0.0.1], port: 9, timeout: 0.2}\n")
    await asyncio.to_thread(cli, cfg, "init", check=True)
    out = await asyncio.to_thread(cli, cfg, "--json", "account", "add", "--name", "Nguyễn Văn Bền",
                                  "--password", "Matkhau@123", check=True)
    rcpt = json.loads(out.stdout)["address"]
    server = ServerProcess(cfg)
    await asyncio.to_thread(server.start)
    port = server.settings.listeners.smtp.port
    acked: list[tuple[str, bytes]] = []
    stop = asyncio.Event()
    try:
        tasks = [asyncio.create_task(sender(port, rcpt, s, acked, stop)) for s in range(SESSIONS)]
        while len(acked) < 60:
            await asyncio.sleep(0.05)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGKILL)  # in the middle of deliveries
        await asyncio.to_thread(server.proc.wait, 30)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
        clamd.stop()

    mail_root = tmp_path / "data" / "mail"
    stored: dict[str, bytes] = {}
    for path in mail_root.rglob("*"):
        if path.is_file() and path.parent.name in ("new", "cur"):
            data = path.read_bytes()
            for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    stored[line.split(b":", 1)[1].strip().decode()] = data
    missing = [mid for mid, _ in acked if mid not in stored]
    assert not missing, f"{len(missing)} acknowledged messages lost: {missing[:5]}"
    for mid, body in acked:
        assert stored[mid].endswith(body), f"{mid} is incomplete on disk"
    assert len(acked) >= 60
