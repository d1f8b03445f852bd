"""Nothing acknowledged is lost and nothing recorded as delivered is sent again, across SIGKILL (Đ10.2).

The real `mailserver serve` runs as a subprocess (real clamd, the test DNS server, remote MX hosts on
loopback in this process). A remote holds its answer to DATA until the test opens a gate, so the server is
killed at a known moment of a delivery: no sleeping, no timing guesses.

* no loss: ten submissions are acknowledged (250) while the remote holds the first delivery; the server
  is killed with SIGKILL; after a restart every acknowledged message reaches the remote.
* no repeat after record: one message to two domains; the first domain's server accepts and the queue
  records it; the second holds its answer; SIGKILL; after a restart the second domain gets the message
  and the first never gets it again.
* SIGTERM (`podman stop`, `systemctl stop`): a delivery whose remote answers within `shutdown_grace` is
  recorded and leaves the queue; one still waiting then is cut off, stays queued with its lease given
  back, and the next start sends it once; the process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import aiosmtplib

from policy.loader import load
from storage.queue import OutboundQueue
from tests.helpers import cli, write_config
from tests.outbound_support import SINK_ADDRESSES, Behaviour, Sink, bind_shared_port, until
from tests.server import ServerProcess
from tests.smtp_fixtures import client_tls, message
from tests.smtp_support import PASSWORD, Clamd, DnsServer


class Deployment:
    def __init__(self, tmp_path: Path, clamd: Clamd, dns: DnsServer, extra: str = "") -> None:
        self.port, self.socks = bind_shared_port(SINK_ADDRESSES)
        self.dns = dns
        self.cfg = write_config(tmp_path, extra=(
            f"clamd: {{socket: {clamd.socket}, timeout: 10}}\n"
            f"dns: {{nameservers: [127.0.0.1], port: {dns.port}, timeout: 2}}\n"
            f"outbound:\n  port: {self.port}\n  poll_interval: 0.2\n"
            "  timeouts: {connect: 10, greeting: 60, command: 60, mail: 60, rcpt: 60, data_init: 60, "
            "data_block: 60, data_end: 60}\n" + extra))
        self.settings = load(self.cfg).settings
        self.sinks: list[Sink] = []
        self.server: ServerProcess | None = None

    async def setup(self) -> str:
        await asyncio.to_thread(cli, self.cfg, "init", check=True)
        out = await asyncio.to_thread(cli, self.cfg, "--json", "account", "add", "--name", "Nguyễn Văn Bền",
                                      "--password", PASSWORD, check=True)
        return json.loads(out.stdout)["address"]

    async def sink(self, domain: str, **behaviour: Any) -> Sink:
        address = SINK_ADDRESSES[len(self.sinks)]
        s = await Sink(f"mx.{domain}", address, self.socks[len(self.sinks)], Behaviour(**behaviour)).start()
        self.sinks.append(s)
        self.dns.zone.mx[domain] = [(10, s.name)]
        self.dns.zone.a[s.name] = [address]
        return s

    async def start(self) -> None:
        self.server = ServerProcess(self.cfg)
        await asyncio.to_thread(self.server.start)

    async def kill(self) -> None:
        assert self.server is not None and self.server.proc is not None
        self.server.proc.send_signal(signal.SIGKILL)  # no clean-up runs
        await asyncio.to_thread(self.server.proc.wait, 30)

    async def submit(self, sender: str, rcpts: list[str], subject: str) -> str:
        c = aiosmtplib.SMTP(hostname="127.0.0.1", port=self.settings.listeners.submission.port, start_tls=True,
                            tls_context=client_tls(), timeout=60)
        await c.connect()
        await c.login(sender, PASSWORD)
        _, text = await c.sendmail(sender, rcpts, message(sender, ", ".join(rcpts), subject=subject))
        await c.quit()
        return text.split("queued as ")[1].split(";")[0].strip()

    async def queue(self) -> OutboundQueue:
        return await OutboundQueue.open(self.settings.paths.queue_dir, load(self.cfg).policy.outbound)

    async def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        for s in self.sinks:
            await s.stop()
        for s in self.socks:
            s.close()


async def test_sigkill_with_deliveries_in_flight_loses_no_acknowledged_message(tmp_path, clamd_daemon, dns):
    d = Deployment(tmp_path, clamd_daemon, dns)
    try:
        sender = await d.setup()
        gate = asyncio.Event()
        remote = await d.sink("alpha.test", gate=gate)
        await d.start()
        rcpts = [f"nguoi{i}@alpha.test" for i in range(10)]
        acked = await asyncio.gather(*(d.submit(sender, [r], f"thư {i}") for i, r in enumerate(rcpts)))
        assert len(set(acked)) == 10  # ten 250s, ten queue ids
        await asyncio.wait_for(remote.data_seen.wait(), 60)  # a delivery is waiting for the remote's answer
        await d.kill()
        gate.set()
        await d.start()
        await until(lambda: {r for m in remote.received for r in m.rcpt_tos} >= set(rcpts),
                    what="every acknowledged message at the remote after the restart")
        q = await d.queue()
        try:
            deadline = asyncio.get_running_loop().time() + 60
            while (await q.stats()).messages:
                assert asyncio.get_running_loop().time() < deadline, await q.list()
                await asyncio.sleep(0.1)
        finally:
            await q.close()
    finally:
        await d.close()


async def test_a_recipient_recorded_as_delivered_is_not_sent_again_after_sigkill(tmp_path, clamd_daemon, dns):
    d = Deployment(tmp_path, clamd_daemon, dns)
    q: OutboundQueue | None = None
    try:
        sender = await d.setup()
        alpha = await d.sink("alpha.test")
        gate = asyncio.Event()
        beta = await d.sink("beta.test", gate=gate)
        await d.start()
        qid = await d.submit(sender, ["x@alpha.test", "y@beta.test"], "hai tên miền")
        q = await d.queue()

        async def recorded() -> bool:
            e = await q.get(qid)
            return e is not None and {r.rcpt: r.state for r in e.recipients}.get("x@alpha.test") == "delivered"

        deadline = asyncio.get_running_loop().time() + 60
        while not await recorded():
            assert asyncio.get_running_loop().time() < deadline, "alpha's 250 was never recorded"
            await asyncio.sleep(0.05)
        await asyncio.wait_for(beta.data_seen.wait(), 60)  # beta's delivery is in flight
        await d.kill()
        gate.set()
        await d.start()
        await until(lambda: any("y@beta.test" in m.rcpt_tos for m in beta.received), what="beta's copy")
        deadline = asyncio.get_running_loop().time() + 60
        while await q.get(qid) is not None:
            assert asyncio.get_running_loop().time() < deadline, await q.get(qid)
            await asyncio.sleep(0.05)
        assert len(alpha.received) == 1, "alpha's delivery was recorded before the kill: never repeated"

        # the running server reports the queue in /healthz and counts deliveries in /metrics
        web = d.settings.listeners.web
        health = await asyncio.to_thread(_get_json, f"http://127.0.0.1:{web.port}/healthz")
        assert health["checks"]["outbound-queue"]["ok"] is True
        assert health["checks"]["outbound-queue"]["messages"] == 0
        metrics = await asyncio.to_thread(_get_text, f"http://127.0.0.1:{web.port}/metrics")
        assert 'mailserver_deliveries_total{result="remote"}' in metrics and "mailserver_queue_depth" in metrics
    finally:
        if q is not None:
            await q.close()
        await d.close()


async def test_sigterm_lets_deliveries_finish_within_shutdown_grace_and_keeps_the_rest(tmp_path, clamd_daemon, dns):
    d = Deployment(tmp_path, clamd_daemon, dns, extra="shutdown_grace: 5\n")
    q: OutboundQueue | None = None
    try:
        sender = await d.setup()
        quick_gate, slow_gate = asyncio.Event(), asyncio.Event()
        quick = await d.sink("alpha.test", gate=quick_gate)
        slow = await d.sink("beta.test", gate=slow_gate)
        await d.start()
        assert d.server is not None and d.server.proc is not None
        finished = await d.submit(sender, ["x@alpha.test"], "xong trong lúc dừng")
        cut = await d.submit(sender, ["y@beta.test"], "bị cắt khi dừng")
        await asyncio.wait_for(quick.data_seen.wait(), 60)  # both deliveries wait for the remote's answer
        await asyncio.wait_for(slow.data_seen.wait(), 60)

        loop = asyncio.get_running_loop()
        started = loop.time()
        d.server.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(d.server.wait_for, "stopping: no new connections", 30)
        quick_gate.set()  # alpha answers 250 during the drain
        assert await asyncio.to_thread(d.server.proc.wait, 60) == 0
        elapsed = loop.time() - started
        assert 4 <= elapsed < 30, elapsed  # the drain waited about shutdown_grace for beta, not longer
        assert "outbound: 1 deliveries cut off after 5 s" in d.server.output
        assert len(quick.received) == 1

        q = await d.queue()
        assert await q.get(finished) is None  # recorded and finished before the process ended
        left = await q.get(cut)
        assert left is not None and left.lease_owner is None
        assert [(r.rcpt, r.state) for r in left.recipients] == [("y@beta.test", "pending")]

        slow_gate.set()
        await d.start()
        await until(lambda: len(slow.received) >= 1, what="beta's copy after the restart")
        deadline = loop.time() + 60
        while await q.get(cut) is not None:
            assert loop.time() < deadline, await q.get(cut)
            await asyncio.sleep(0.05)
        assert len(slow.received) == 1 and len(quick.received) == 1
    finally:
        if q is not None:
            await q.close()
        await d.close()


def _get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def _get_json(url: str) -> Any:
    import urllib.error

    try:
        return json.loads(_get_text(url))
    except urllib.error.HTTPError as e:  # 503 when clamd or another check fails: the body still says why
        return json.loads(e.read().decode())
