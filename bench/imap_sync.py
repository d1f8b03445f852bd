"""IMAP speed and memory: what Thunderbird's day costs the server.

Fills a folder with realistic mail (Vietnamese RFC 2047 subjects and names,
multipart with attachments, one 1 MB message), starts `mailserver serve` as
its own process, and times through `imaplib` over TLS (port 993):

* LOGIN, SELECT, the first-sync header fetch Thunderbird issues
  (`UID FETCH 1:* (FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (...)])`),
  `UID SEARCH SUBJECT` (Vietnamese, diacritics dropped), `UID FETCH n BODY[]` of 1 MB;
* SELECT and a flag change in a 100,000-message folder;
* the server's resident memory holding 1,000 authenticated connections in IDLE.

Baseline, measured in the same run: a NOOP round trip on the same
connection (what the network, TLS and imaplib cost by themselves).
Medians of --runs runs. Targets (issue 6): SELECT of 100k < 100 ms; 10k
first-sync fetch < 0.3 s; 1,000 IDLE connections < 200 MB RSS.

    .venv/bin/python bench/imap_sync.py [--messages 10000] [--big 100000] [--idle 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import imaplib
import json
import os
import random
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.header import Header
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailserver.app import App  # noqa: E402
from policy.loader import load  # noqa: E402
from storage.directory import PersonRequest  # noqa: E402
from storage.store import MailStore  # noqa: E402
from tests.server import ServerProcess  # noqa: E402

PASSWORD = "Matkhau#2026aA"
READY = "mailserver.serve: ready:"  # the serve log's line naming its listeners (not "already in use")
FILL_BATCH = 64  # concurrent deliveries while filling
FIRST_SYNC = "(FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID)])"
SUBJECTS = ["Công văn số {n}/UBND-VP về việc triển khai kế hoạch năm 2026",
            "Báo cáo tình hình kinh tế - xã hội tháng {m}", "Giấy mời họp giao ban tuần {n}",
            "Thông báo lịch trực Tết Nguyên đán", "Quyết định phê duyệt dự toán ngân sách {n}",
            "Tờ trình đề nghị thẩm định hồ sơ số {n}"]
NAMES = ["Nguyễn Văn An", "Trần Thị Bình", "Lê Văn Cường", "Phạm Thị Dung", "Hoàng Văn Em", "Đặng Thị Giang"]
WORDS = (
    "ủy", "ban", "nhân", "dân", "tỉnh", "phú", "yên", "đề", "nghị", "các", "sở", "ban", "ngành", "địa",
    "phương", "khẩn", "trương", "triển", "khai", "thực", "hiện", "nội", "dung", "công", "văn", "báo",
    "cáo", "kết", "quả", "trước", "ngày", "quy", "định", "văn", "phòng", "tổng", "hợp",
)


def _enc(text: str) -> str:
    return Header(text, "utf-8").encode()


def realistic(i: int, rng: random.Random, attachment: int | None = None) -> bytes:
    """A multipart Vietnamese office message; every third carries an attachment."""
    name = rng.choice(NAMES)
    subject = rng.choice(SUBJECTS).format(n=i, m=1 + i % 12)
    when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=37 * i)
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(40, 300)))
    body64 = base64.encodebytes(text.encode()).decode().replace("\n", "\r\n")
    head = (f"From: {_enc(name)} <user{i % 50}@phuyen.gov.vn>\r\nTo: {_enc('Văn phòng UBND')} <vp@phuyen.gov.vn>\r\n"
            f"Cc: ttcntttt@phuyen.gov.vn\r\nSubject: {_enc(subject)}\r\n"
            f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0700')}\r\n"
            f"Message-ID: <{i}.{rng.random()}@phuyen.gov.vn>\r\n"
            "MIME-Version: 1.0\r\n")
    size = attachment if attachment is not None else (rng.randint(5_000, 60_000) if i % 3 == 0 else 0)
    if not size:
        return (head + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                + body64).encode()
    blob = base64.encodebytes(rng.randbytes(size)).decode().replace("\n", "\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body64
            + f'--b1\r\nContent-Type: application/pdf; name="{_enc("Công văn " + str(i) + ".pdf")}"\r\n'
            "Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment\r\n\r\n" + blob + "--b1--\r\n"
            ).encode()


def small(i: int) -> bytes:
    return (f"From: {_enc(NAMES[i % 6])} <u{i % 50}@phuyen.gov.vn>\r\nTo: vp@phuyen.gov.vn\r\n"
            f"Subject: {_enc(SUBJECTS[i % 6].format(n=i, m=1 + i % 12))}\r\nMessage-ID: <s{i}@phuyen.gov.vn>\r\n"
            f"Date: Mon, 05 Jan 2026 08:00:00 +0700\r\n\r\nNội dung thư số {i}.\r\n").encode()


def write_config(base: Path) -> Path:
    """Also on every reuse of --keep data: ports free now (another process may hold the old ones)."""

    def port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    etc = base / "etc"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "policy.yaml").write_text("quota:\n  default: 50GiB\n", encoding="utf-8")
    listeners = "\n".join(f"  {n}: {{host: 127.0.0.1, port: {port()}" + (", tls: false" if n == "web" else "")
                          + ("" if n in ("imap", "imaps", "web") else ", enabled: false") + "}"
                          for n in ("smtp", "submission", "submissions", "imap", "imaps", "web"))
    cfg = etc / "mailserver.yaml"
    cfg.write_text(f"hostname: localhost\ndomains: [phuyen.gov.vn]\npaths:\n  data: ../data\nlisteners:\n{listeners}\n"
                   "policy_file: policy.yaml\n", encoding="utf-8")
    return cfg


async def populate(cfg: Path, messages: int, big: int, idle_accounts: int) -> dict[str, Any]:
    """Accounts and mail through the store's public API (fsync off: this is set-up, not measurement)."""
    app = await App.open(loaded=load(cfg))
    store = MailStore(app.settings.paths.mail_dir, app.policy, app.directory, fsync=False)
    rng = random.Random(6)
    out: dict[str, Any] = {}
    try:
        async def person(name: str) -> Any:
            created = await app.directory.add_person(PersonRequest(name=name, unit=None, password=PASSWORD,
                                                                   must_change=False), actor="bench")
            await store.create_mailbox(created.account)
            return created.account

        async def fill(account: Any, make: Any, n: int, folder: str = "INBOX") -> list[int]:
            """Deliveries FILL_BATCH at a time: the store's group commit takes them in one transaction
            (one at a time, a 100,000-message folder took an hour on a busy shared machine)."""
            uids: list[int] = []
            for start in range(0, n, FILL_BATCH):
                batch = [make(i) for i in range(start, min(start + FILL_BATCH, n))]
                stored = await asyncio.gather(*(store.deliver(account, m, folder=folder) for m in batch))
                uids.extend(x.uid for x in stored)
            return uids

        sync_acc = await person("Người Đồng Bộ")
        t = time.perf_counter()
        uids = await fill(sync_acc, lambda i: realistic(i, rng, attachment=760_000 if i == messages // 2 else None),
                          messages)
        out["fill_10k"] = time.perf_counter() - t
        out["sync"] = (sync_acc.address, uids[messages // 2])
        if big:
            big_acc = await person("Người Nhiều Thư")
            session = await store.session(big_acc)
            await session.create_folder("Lưu trữ")
            t = time.perf_counter()
            await fill(big_acc, small, big, folder="Lưu trữ")
            out["fill_big"] = time.perf_counter() - t
            out["big"] = big_acc.address
        out["idle"] = [(await person(f"Người Chờ {i}")).address for i in range(idle_accounts)]
    finally:
        await store.close()
        await app.close()
    return out


async def store_share(cfg: Path, data: dict[str, Any], runs: int) -> dict[str, float]:
    """The store calls behind the slow rows, timed in-process on the same data: where the time goes."""
    app = await App.open(loaded=load(cfg))
    out: dict[str, list[float]] = {"snapshot": [], "metadata": [], "big_snapshot": []}
    try:
        session = await app.store.session(await app.directory.get_account(data["sync"][0]))
        for _ in range(runs):
            t = time.perf_counter()
            snap = await session.snapshot("INBOX")
            out["snapshot"].append(time.perf_counter() - t)
            uids = [m[0] for m in snap.messages]
            t = time.perf_counter()
            for k in range(0, len(uids), 1000):
                await session.metadata("INBOX", uids[k : k + 1000])
            out["metadata"].append(time.perf_counter() - t)
        if "big" in data:
            big = await app.store.session(await app.directory.get_account(data["big"]))
            for _ in range(runs):
                t = time.perf_counter()
                await big.snapshot("Lưu trữ")
                out["big_snapshot"].append(time.perf_counter() - t)
    finally:
        await app.close()
    return {k: statistics.median(v) for k, v in out.items() if v}


async def maildirs(cfg: Path, data: dict[str, Any]) -> dict[str, Path]:
    """Where the store keeps each benchmark account's Maildir (for the Dovecot baseline)."""
    app = await App.open(loaded=load(cfg))
    try:
        out = {}
        for addr in [data["sync"][0], *([data["big"]] if "big" in data else [])]:
            account = await app.directory.get_account(addr)
            out[addr] = app.store.mailbox_path(account)
        return out
    finally:
        await app.close()


class Server:
    """`mailserver serve` as its own process (tests/server.py drains its output so a full pipe never
    stops it), with what the bench needs on top: the IMAPS address and the resident memory."""

    def __init__(self, cfg: Path) -> None:
        self.process = ServerProcess(cfg)
        try:
            self.process.start(READY, timeout=60)
        except AssertionError as e:
            self.process.stop()
            raise RuntimeError(f"server did not start: {e}") from None
        settings = self.process.settings
        self.port = settings.listeners.imaps.port
        self.ctx = ssl.create_default_context(cafile=str(settings.cert_path))

    def rss_mb(self) -> float:
        proc = self.process.proc
        assert proc is not None
        if proc.poll() is not None:
            raise RuntimeError("the server exited:\n" + "".join(self.process.lines[-20:]))
        for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def client(self) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL("localhost", self.port, ssl_context=self.ctx, timeout=120)

    def stop(self) -> None:
        self.process.stop()


class Dovecot:
    """Debian's Dovecot 2.3 serving the same message files, as the baseline (bench only).

    It gets a hard-linked copy of each Maildir (the same files, its own
    directories) and its own index (INDEX=): its flag changes rename files in
    its copy, never under our running server, whose index would otherwise
    have to rescan the folder between our rounds. It reads the UIDs from its
    own copy of our `dovecot-uidlist` (the store writes Dovecot's format), so
    `UID FETCH n` names the same message on both servers.
    """

    def __init__(self, base: Path, cfg: Path, mailboxes: dict[str, Path]) -> None:
        loaded = load(cfg)
        run = base / "dovecot"
        for fresh in ("mail", "state"):  # a new copy each run, and an index built from it in the warm-up
            shutil.rmtree(run / fresh, ignore_errors=True)
        run.mkdir(exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        users = []
        for addr, original in mailboxes.items():
            path = run / "mail" / addr
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-al", str(original), str(path)], check=True)
            for ours in path.glob("mailserver.*"):  # our index is not Dovecot's business
                ours.unlink()
            for control in [*path.rglob("dovecot-uidlist"), *path.rglob("dovecot-keywords")]:
                content = control.read_bytes()  # its own copy, not a link to ours
                control.unlink()
                control.write_bytes(content)
            # Dovecot will not run mail processes as root: it works as "nobody", so the (temporary,
            # benchmark) copy is opened to it; the files' modes are shared with ours through the links.
            for item in [path, *path.rglob("*")]:
                item.chmod(item.stat().st_mode | (0o777 if item.is_dir() else 0o666))
            state = run / "state" / addr
            state.mkdir(parents=True, exist_ok=True)
            os.chown(state, 65534, 65534)
            users.append(f"{addr}:{{PLAIN}}{PASSWORD}::::::userdb_mail=maildir:{path}:INDEX={state}/index"
                         f" userdb_uid=65534 userdb_gid=65534 userdb_home={state}")
        for parent in (base, run, run / "mail", run / "state"):
            parent.chmod(parent.stat().st_mode | 0o755)  # "nobody" must reach the copies and its state
        (run / "users").write_text("\n".join(users) + "\n", encoding="utf-8")
        conf = run / "dovecot.conf"
        conf.write_text(f"""base_dir = {run}/run
state_dir = {run}/lib
log_path = {run}/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = required
ssl_cert = <{loaded.settings.cert_path}
ssl_key = <{loaded.settings.key_path}
mail_privileged_group =
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = {run}/users
}}
userdb {{
  driver = prefetch
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
service auth {{
  user = root
}}
service auth-worker {{
  user = root
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""", encoding="utf-8")
        self.conf = conf
        # Dovecot daemonises and its daemon keeps stdout open: no pipes, or run() would wait for it.
        subprocess.run(["/usr/sbin/dovecot", "-c", str(conf)], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                break
            time.sleep(0.1)
        self.ctx = ssl.create_default_context(cafile=str(loaded.settings.cert_path))

    def client(self) -> imaplib.IMAP4_SSL:
        return imaplib.IMAP4_SSL("localhost", self.port, ssl_context=self.ctx, timeout=60)

    def stop(self) -> None:
        subprocess.run(["/usr/sbin/dovecot", "-c", str(self.conf), "stop"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def timed(fn: Any, min_bytes: int = 0) -> float:
    """Seconds for one command; `min_bytes`: the answer must carry at least that much (a UID FETCH of a
    UID the server does not have is a quick, empty OK)."""
    t = time.perf_counter()
    typ, data = fn()
    elapsed = time.perf_counter() - t
    assert typ == "OK", data
    got = sum(len(x[1]) for x in data if isinstance(x, tuple))
    assert got >= min_bytes, f"{got} bytes, expected {min_bytes}+"
    return elapsed


def one_round(client: Any, data: dict[str, Any]) -> dict[str, float]:
    """Each operation once, on fresh connections (seconds)."""
    addr, big_uid = data["sync"]
    c = client()
    out = {
        "login": timed(lambda: c.login(addr, PASSWORD)),
        "noop": timed(c.noop),
        "select": timed(lambda: c.select("INBOX")),
        "first": timed(lambda: c.uid("FETCH", "1:*", FIRST_SYNC)),
    }
    c.literal = "công văn".encode()
    out["search"] = timed(lambda: c.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT"))
    out["body"] = timed(lambda: c.uid("FETCH", str(big_uid), "(BODY.PEEK[])"), min_bytes=1_000_000)
    c.logout()
    if "big" in data:
        c = client()
        c.login(data["big"], PASSWORD)
        out["big_select"] = timed(lambda: c._simple_command("SELECT", '"L&AbA-u tr&Hu8-"'))
        c.state = "SELECTED"
        uid = str(random.randint(1, data["big_n"]))
        out["big_flag"] = timed(lambda: c.uid("STORE", uid, "+FLAGS.SILENT", "(\\Flagged)"))
        c.logout()
    return out


def measure(clients: dict[str, Any], data: dict[str, Any], runs: int) -> dict[str, dict[str, float]]:
    """Medians per server. The servers take turns round by round, so both see the same load on
    this shared machine; the first round of each is a warm-up (caches, as a client that syncs daily)."""
    samples: dict[str, dict[str, list[float]]] = {name: {} for name in clients}
    for run in range(runs + 1):
        for name, client in clients.items():
            for key, value in one_round(client, data).items():
                if run:
                    samples[name].setdefault(key, []).append(value)
    return {name: {k: statistics.median(v) for k, v in rows.items()} for name, rows in samples.items()}


ROWS = [
    ("noop", "NOOP round trip (baseline)", ""),
    ("login", "LOGIN", ""),
    ("select", "SELECT", ""),
    ("first", "first-sync header fetch", "target < 300 ms"),
    ("search", "UID SEARCH SUBJECT (vi)", ""),
    ("body", "UID FETCH n BODY[] (1 MB)", ""),
    ("big_select", "SELECT (big folder)", "target < 100 ms"),
    ("big_flag", "UID STORE +FLAGS (big folder)", ""),
]


def report(data: dict[str, Any], runs: int, ours: dict[str, float], dovecot: dict[str, float] | None) -> None:
    print(f"\n{data['messages']:,}-message INBOX and {data['big_n']:,}-message folder; imaplib over TLS, "
          f"median of {runs} rounds after one warm-up, the servers taking turns")
    head = f"  {'':32}{'this server':>12}"
    if dovecot:
        head += f"{'Dovecot 2.3':>14}{'ratio':>8}"
    print(head)
    for key, label, note in ROWS:
        if key not in ours:
            continue
        line = f"  {label:32}{ours[key] * 1000:9.1f} ms"
        if dovecot and key in dovecot:
            line += f"{dovecot[key] * 1000:11.1f} ms{ours[key] / dovecot[key]:7.1f}x"
        print(line + (f"   ({note})" if note else ""))


def idle_memory(server: Server, accounts: list[str], connections: int) -> str:
    before = server.rss_mb()
    socks: list[ssl.SSLSocket] = []

    def open_one(i: int) -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=60)
        s = server.ctx.wrap_socket(raw, server_hostname="localhost")
        f = s.makefile("rb")
        f.readline()
        s.sendall(f"a LOGIN {accounts[i % len(accounts)]} {PASSWORD}\r\nb SELECT INBOX\r\nc IDLE\r\n".encode())
        while not f.readline().startswith(b"+"):
            pass
        return s

    t = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        socks = list(pool.map(open_one, range(connections)))
    opened = time.perf_counter() - t
    time.sleep(2)
    after = server.rss_mb()
    for s in socks:
        s.close()
    return (f"{connections:,} authenticated TLS connections in IDLE ({len(accounts)} accounts, opened in "
            f"{opened:.1f} s):\n  server RSS before {before:6.1f} MB, with them {after:6.1f} MB "
            f"({(after - before) * 1024 / connections:.1f} KiB each)   (target < 200 MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--big", type=int, default=100_000, help="messages in the big folder (0: skip)")
    ap.add_argument("--idle", type=int, default=1000, help="IDLE connections (0: skip)")
    ap.add_argument("--idle-accounts", type=int, default=250)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--no-dovecot", dest="dovecot", action="store_false",
                    help="skip the Dovecot baseline (Debian dovecot-imapd on the same files)")
    ap.add_argument("--idle-only", action="store_true", help="only the IDLE memory measurement")
    ap.add_argument("--keep", type=Path, help="build the data here once and reuse it on later runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="imap-bench-") as tmp:
        base = args.keep or Path(tmp)
        saved = base / "bench.json"
        if saved.exists():
            data = json.loads(saved.read_text())
            cfg = write_config(base)
            print(f"reusing {base}: {data['messages']:,} + {data['big_n']:,} messages")
        else:
            cfg = write_config(base)
            subprocess.run([sys.executable, "-m", "mailserver", "--config", str(cfg), "init"], check=True,
                           capture_output=True, cwd=ROOT)
            t = time.perf_counter()
            data = asyncio.run(populate(cfg, args.messages, args.big, args.idle_accounts if args.idle else 0))
            data["messages"], data["big_n"] = args.messages, args.big
            print(f"set-up: {args.messages:,} + {args.big:,} messages in {time.perf_counter() - t:.0f} s")
            if args.keep:
                saved.write_text(json.dumps(data))
        ours: dict[str, float] = {}
        dovecot = None
        if not args.idle_only:
            baseline = None
            if args.dovecot and Path("/usr/sbin/dovecot").exists():
                baseline = Dovecot(base, cfg, asyncio.run(maildirs(cfg, data)))
            try:
                server = Server(cfg)
            except BaseException:
                if baseline is not None:
                    baseline.stop()
                raise
            clients = {"ours": server.client, **({"dovecot": baseline.client} if baseline else {})}
            try:
                medians = measure(clients, data, args.runs)
            finally:
                server.stop()
                if baseline is not None:
                    baseline.stop()
            ours, dovecot = medians["ours"], medians.get("dovecot")
        idle = None
        if args.idle:
            server = Server(cfg)  # a fresh process: what 1,000 idle users cost, not what the runs above left
            try:
                idle = idle_memory(server, data["idle"], args.idle)
            finally:
                server.stop()
        if ours:
            report(data, args.runs, ours, dovecot)
            share = asyncio.run(store_share(cfg, data, args.runs))
            print("  of which the store's own calls (in-process, same data):")
            print(f"    snapshot(INBOX)                {share['snapshot'] * 1000:9.1f} ms   (in SELECT)")
            print(f"    metadata(all, 1,000 at a time) {share['metadata'] * 1000:9.1f} ms   (in first-sync fetch)")
            if "big_snapshot" in share:
                print(f"    snapshot(big folder)           {share['big_snapshot'] * 1000:9.1f} ms   (in SELECT, big)")
        if idle:
            print(idle)


if __name__ == "__main__":
    main()
