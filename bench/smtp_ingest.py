"""SMTP ingest: N parallel sessions deliver M messages of a given size to local mailboxes, clamd scanning on.

Runs the real server (`mailserver serve`, one process) against a temporary
data folder, with its own clamd (EICAR signature only, like the tests), and
drives it from this process with a lean pipelined SMTP client (MAIL, RCPT,
DATA in one write, the message pre-stuffed), so the client costs little of
the two cores. Every message is fsynced into a Maildir and scanned by clamd
before its 250. Prints messages/s and MB/s per run and the median.

    .venv/bin/python bench/smtp_ingest.py --sessions 20 --messages 2000 --size 10KiB --runs 3
    .venv/bin/python bench/smtp_ingest.py --sessions 20 --messages 300 --size 1MiB --runs 3
    .venv/bin/python bench/smtp_ingest.py ... --profile prof.out   # cProfile of the server process
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from policy.units import parse_size  # noqa: E402
from tests.clamd import Clamd  # noqa: E402
from tests.helpers import cli, free_port, write_config  # noqa: E402
from tests.smtp_support import DnsServer  # noqa: E402

PASSWORD = "Matkhau@123"


def make_message(size: int, to: str, n: int) -> bytes:
    head = (f"From: bench@example.org\r\nTo: {to}\r\nSubject: bench {n}\r\nMessage-ID: <bench{n}@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head) - 2)]
    return head + body + b"\r\n"


async def session(port: int, rcpts: list[str], count: int, size: int, counter: list[int]) -> None:
    r, w = await asyncio.open_connection("127.0.0.1", port)

    async def reply() -> bytes:
        while True:
            line = await r.readline()
            if not line:
                raise ConnectionError("closed")
            if line[3:4] != b"-":
                return line

    await reply()
    w.write(b"EHLO bench.example.net\r\n")
    await reply()
    for i in range(count):
        to = rcpts[i % len(rcpts)]
        msg = make_message(size, to, i)
        w.write(f"MAIL FROM:<bench@example.org> SIZE={len(msg)}\r\nRCPT TO:<{to}>\r\nDATA\r\n".encode())
        for expect in (b"250", b"250", b"354"):
            got = await reply()
            if not got.startswith(expect):
                raise RuntimeError(f"expected {expect!r}, got {got!r}")
        w.write(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        got = await reply()
        if not got.startswith(b"250"):
            raise RuntimeError(f"DATA refused: {got!r}")
        counter[0] += 1
    w.write(b"QUIT\r\n")
    await reply()
    w.close()


async def one_run(port: int, rcpts: list[str], sessions: int, messages: int, size: int) -> tuple[float, float]:
    counter = [0]
    per = messages // sessions
    t = time.perf_counter()
    await asyncio.gather(*(session(port, rcpts, per, size, counter) for _ in range(sessions)))
    dt = time.perf_counter() - t
    return counter[0] / dt, counter[0] * size / dt / 1e6


def serve_bare(port: int, folder: Path) -> None:
    """The baseline of COMPONENTS.md: stock aiosmtpd (line-by-line DATA), a handler that writes each
    message into a Maildir with fsync of file and folder, no checks, no clamd."""
    from aiosmtpd.smtp import SMTP

    new, tmp = folder / "new", folder / "tmp"
    new.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(parents=True, exist_ok=True)
    counter = [0]

    def write(data: bytes) -> None:
        counter[0] += 1
        name = f"{time.time_ns()}.{counter[0]}"
        with open(tmp / name, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp / name, new / name)
        fd = os.open(new, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            await asyncio.to_thread(write, envelope.original_content)  # type: ignore[attr-defined]
            return "250 OK"

    async def run() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: SMTP(Handler(), hostname="bench", data_size_limit=64 * 1024 * 1024), "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--size", default="10KiB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--recipients", type=int, default=20)
    ap.add_argument("--profile", help="write a cProfile of the server process here")
    ap.add_argument("--baseline", action="store_true",
                    help="measure the bare aiosmtpd + fsync baseline (COMPONENTS.md) instead of the server")
    ap.add_argument("--serve-bare", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(int(args.serve_bare[0]), Path(args.serve_bare[1]))
        return
    size = parse_size(args.size)

    with tempfile.TemporaryDirectory(prefix="smtp-bench-") as tmp:
        base = Path(tmp)
        clamd = Clamd(base / "clamd")
        (base / "clamd").mkdir()
        clamd.start()
        port = free_port()
        # The MX checks SPF, DKIM and DMARC of every message: answer them from loopback as a local
        # caching resolver would (an SPF pass for the sending domain, a DMARC record).
        dns = DnsServer()
        dns.zone.txt["example.org"] = ["v=spf1 ip4:127.0.0.0/8 -all"]
        dns.zone.txt["_dmarc.example.org"] = ["v=DMARC1; p=none"]
        # generous quotas and limits: the bench measures ingest, not refusals
        cfg = write_config(base, ports={"smtp": port}, policy="quota:\n  default: 200GiB\n",
                           extra=f"clamd: {{socket: {clamd.socket}}}\ndns: {{nameservers: [127.0.0.1], port: "
                                 f"{dns.port}, timeout: 2}}\n"
                                 "smtp: {max_connections: 1000, max_connections_per_ip: 1000}\n")
        cli(cfg, "init", check=True)
        rcpts = []
        for i in range(args.recipients):
            out = cli(cfg, "--json", "account", "add", "--name", f"Người Nhận {i}", "--password", PASSWORD,
                      check=True)
            import json

            rcpts.append(json.loads(out.stdout)["address"])
        env = {**os.environ}
        env.pop("MAILSERVER_CONFIG", None)
        cmd = [sys.executable]
        if args.profile:
            cmd += ["-m", "cProfile", "-o", args.profile]
        if args.baseline:
            cmd += [__file__, "--serve-bare", str(port), str(base / "bare")]
        else:
            cmd += ["-m", "mailserver", "--config", str(cfg), "serve", "--log-level", "WARNING"]
        server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    import socket

                    socket.create_connection(("127.0.0.1", port), 1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            results = []
            for n in range(args.runs):
                mps, mbps = asyncio.run(one_run(port, rcpts, args.sessions, args.messages, size))
                results.append((mps, mbps))
                print(f"run {n + 1}: {mps:8.1f} messages/s  {mbps:7.1f} MB/s", flush=True)
            print(f"median: {statistics.median(r[0] for r in results):8.1f} messages/s  "
                  f"{statistics.median(r[1] for r in results):7.1f} MB/s  "
                  f"({args.sessions} sessions, {args.messages} × {args.size}, "
                  + ("bare aiosmtpd + fsync baseline)" if args.baseline else "clamd on, fsync on)"))
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
            clamd.stop()
            dns.stop()


if __name__ == "__main__":
    main()
