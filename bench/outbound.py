"""Outbound throughput: messages/s from submission to accepted by a remote server on loopback.

Runs the real server (`mailserver serve`, one process, clamd scanning, DKIM
signing, fsync on) against a temporary data folder. N parallel sessions
submit M messages of a given size on port 587 (STARTTLS, AUTH PLAIN,
pipelined MAIL/RCPT/DATA) to recipients at `bench.test`, whose MX record (a
dnslib server here) points to a lean SMTP sink in this process that takes
pipelined commands and answers 250 to each message. A run ends when the
sink has accepted every message; messages/s is M over that time, and the
latency is the time from a message's 250 on submission to its 250 at the
sink (median and 95th percentile).

Baselines in the same session, with the same client: the same messages to
local mailboxes (submission → Maildir, no queue), and straight from the
client to the sink (the ceiling of client and sink on this machine).

    .venv/bin/python bench/outbound.py --sessions 20 --messages 1000 --size 10KB --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import ssl
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
SINK_ADDRESS = "127.0.0.2"


def make_message(size: int, sender: str, to: str, tag: str) -> bytes:
    head = (f"From: {sender}\r\nTo: {to}\r\nSubject: bench {tag}\r\nMessage-ID: <{tag}@bench.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt.\r\n"
    body = (line * (size // len(line) + 1))[: max(0, size - len(head) - 2)]
    return head + body + b"\r\n"


# ------------------------------------------------------------------ a lean remote server


class Sink:
    """Takes pipelined SMTP and records when each Message-ID was accepted."""

    def __init__(self) -> None:
        self.accepted: dict[str, float] = {}
        self.server: asyncio.AbstractServer | None = None

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(self._session, host, port, limit=1 << 20)

    async def _session(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"220 sink.bench.test ESMTP\r\n")
        try:
            while True:
                line = await r.readline()
                if not line:
                    return
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    w.write(b"250-sink.bench.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
                            b"250 SIZE 52428800\r\n")
                elif cmd == b"DATA":
                    w.write(b"354 go ahead\r\n")
                    data = await r.readuntil(b"\r\n.\r\n")
                    mid = data.split(b"Message-ID: <", 1)[1].split(b"@", 1)[0].decode()
                    self.accepted[mid] = time.perf_counter()
                    w.write(b"250 2.0.0 accepted\r\n")
                elif cmd == b"QUIT":
                    w.write(b"221 bye\r\n")
                    await w.drain()
                    return
                else:
                    w.write(b"250 ok\r\n")
                await w.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return  # the server left, or the bench is over
        finally:
            w.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()


# ------------------------------------------------------------------ a lean submission client


async def session(host: str, port: int, login: str | None, sender: str, rcpt: str, tags: list[str], size: int,
                  acked: dict[str, float], tls: bool) -> None:
    r, w = await asyncio.open_connection(host, port, limit=1 << 20)

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
    if tls:
        w.write(b"STARTTLS\r\n")
        await reply()
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        await w.start_tls(ctx)
        w.write(b"EHLO bench.example.net\r\n")
        await reply()
    if login:
        token = base64.b64encode(f"\0{login}\0{PASSWORD}".encode()).decode()
        w.write(f"AUTH PLAIN {token}\r\n".encode())
        got = await reply()
        if not got.startswith(b"235"):
            raise RuntimeError(f"AUTH refused: {got!r}")
    for tag in tags:
        msg = make_message(size, sender, rcpt, tag)
        w.write(f"MAIL FROM:<{sender}> SIZE={len(msg)}\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n".encode())
        for expect in (b"250", b"250", b"354"):
            got = await reply()
            if not got.startswith(expect):
                raise RuntimeError(f"expected {expect!r}, got {got!r}")
        w.write(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        got = await reply()
        if not got.startswith(b"250"):
            raise RuntimeError(f"DATA refused: {got!r}")
        acked[tag] = time.perf_counter()
    w.write(b"QUIT\r\n")
    await reply()
    w.close()


async def one_run(port: int, logins: list[str], rcpt_of: list[str], sessions: int, messages: int, size: int,
                  run: str, sink: Sink | None, tls: bool) -> dict[str, float]:
    per = messages // sessions
    acked: dict[str, float] = {}
    tags = [[f"{run}.{s}.{i}" for i in range(per)] for s in range(sessions)]
    t0 = time.perf_counter()
    host = "127.0.0.1" if logins else SINK_ADDRESS  # no logins: straight to the sink
    await asyncio.gather(*(session(host, port, logins[s] if logins else None,
                                   logins[s] if logins else "b@bench.example", rcpt_of[s], tags[s], size, acked, tls)
                           for s in range(sessions)))
    submitted = time.perf_counter() - t0
    total = per * sessions
    result = {"submitted_per_s": total / submitted}
    if sink is not None:
        want = {t for ts in tags for t in ts}
        deadline = time.monotonic() + 600
        while not want <= sink.accepted.keys():
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(want & sink.accepted.keys())} of {total} arrived")
            await asyncio.sleep(0.01)
        end = max(sink.accepted[t] for t in want)
        latencies = sorted(sink.accepted[t] - acked[t] for t in want if t in acked)
        result.update(per_s=total / (end - t0), latency_median=statistics.median(latencies) * 1000,
                      latency_p95=latencies[int(0.95 * (len(latencies) - 1))] * 1000)
    else:
        result["per_s"] = result["submitted_per_s"]
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--size", default="10KB")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the data folder (its mail log) for a look")
    args = ap.parse_args()
    size = parse_size(args.size)

    tmp = tempfile.mkdtemp(prefix="outbound-bench-")
    try:
        run_bench(Path(tmp), args, size)
    finally:
        if args.keep:
            print(f"data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def run_bench(base: Path, args: argparse.Namespace, size: int) -> None:
    clamd = Clamd(base / "clamd")
    (base / "clamd").mkdir()
    clamd.start()
    dns = DnsServer()
    sink_port = free_port()
    dns.zone.mx["bench.test"] = [(10, "mx.bench.test")]
    dns.zone.a["mx.bench.test"] = [SINK_ADDRESS]
    submission = free_port()
    cfg = write_config(
        base, ports={"submission": submission},
        policy="quota:\n  default: 200GiB\nsending:\n  messages_per_window: 10000000\n"
               "  recipients_per_window: 10000000\n",
        extra=f"clamd: {{socket: {clamd.socket}}}\n"
              f"dns: {{nameservers: [127.0.0.1], port: {dns.port}, timeout: 2}}\n"
              f"outbound: {{port: {sink_port}, destination_concurrency: 20, max_deliveries: 50}}\n"
              "smtp: {max_connections: 1000, max_connections_per_ip: 1000}\n")
    cli(cfg, "init", check=True)
    cli(cfg, "dkim", "keygen", "--domain", "phuyen.gov.vn", "--selector", "mail", check=True)
    logins, locals_ = [], []
    for i in range(args.sessions):
        out = cli(cfg, "--json", "account", "add", "--name", f"Người Gửi {i}", "--password", PASSWORD,
                  check=True)
        logins.append(json.loads(out.stdout)["address"])
    for i in range(args.sessions):
        out = cli(cfg, "--json", "account", "add", "--name", f"Người Nhận {i}", "--password", PASSWORD,
                  check=True)
        locals_.append(json.loads(out.stdout)["address"])
    remote = [f"nguoinhan{i}@bench.test" for i in range(args.sessions)]
    env = {**os.environ}
    env.pop("MAILSERVER_CONFIG", None)
    server = subprocess.Popen([sys.executable, "-m", "mailserver", "--config", str(cfg), "serve",
                               "--log-level", "WARNING"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)

    async def bench() -> None:
        sink = Sink()
        await sink.start(SINK_ADDRESS, sink_port)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", submission), 1).close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        rows: dict[str, list[dict[str, float]]] = {"outbound": [], "local": [], "direct": []}
        for n in range(args.runs):
            o = await one_run(submission, logins, remote, args.sessions, args.messages, size, f"o{n}", sink,
                              tls=True)
            rows["outbound"].append(o)
            print(f"run {n + 1} outbound: {o['per_s']:7.1f} messages/s end to end "
                  f"(submission {o['submitted_per_s']:.1f}/s), latency median {o['latency_median']:.0f} ms, "
                  f"p95 {o['latency_p95']:.0f} ms", flush=True)
            loc = await one_run(submission, logins, locals_, args.sessions, args.messages, size, f"l{n}", None,
                                tls=True)
            rows["local"].append(loc)
            print(f"run {n + 1} local:    {loc['per_s']:7.1f} messages/s (submission → Maildir)", flush=True)
            d = await one_run(sink_port, [], remote, args.sessions, args.messages, size, f"d{n}", sink,
                              tls=False)
            rows["direct"].append(d)
            print(f"run {n + 1} direct:   {d['per_s']:7.1f} messages/s (client → sink, no server)", flush=True)
        await sink.stop()
        med = {k: statistics.median(r["per_s"] for r in v) for k, v in rows.items()}
        lat = statistics.median(r["latency_median"] for r in rows["outbound"])
        print(f"median outbound: {med['outbound']:.1f} messages/s submission → remote 250 "
              f"({args.sessions} sessions, {args.messages} × {args.size}, clamd, DKIM, fsync), "
              f"latency median {lat:.0f} ms")
        print(f"median local:    {med['local']:.1f} messages/s; outbound/local = "
              f"{med['outbound'] / med['local']:.2f}")
        print(f"median direct:   {med['direct']:.1f} messages/s (client and sink alone)")

    try:
        asyncio.run(bench())
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        dns.stop()
        clamd.stop()


if __name__ == "__main__":
    main()
