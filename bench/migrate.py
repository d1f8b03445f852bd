"""Migration speed (Đ8.2.d): messages/s and MB/s of an IMAP migration of 10,000 messages.

The old server is a real Dovecot on loopback (tests/dovecot.py), its
Maildir++ tree written directly (Dovecot indexes it at the first login) so
filling takes seconds, not minutes: three folders (INBOX, Sent, "Dự án/2026"),
a realistic mix of sizes (mostly text mail of a few KiB, some with
attachments of 20–150 KB, a few of 0.5–1 MiB), flags and ten years of dates.

Each run migrates the whole mailbox into a fresh account of a fresh data
folder with production settings (fsync on), exactly as `mailserver migrate
imap` does (`run_jobs`), over IMAPS. Baselines measured in the same session:

* `read`: the same client reading every message from Dovecot in the same
  batches and throwing it away: the ceiling the source and the network give;
* `dsync`: Dovecot's own migration tool, `doveadm backup -R` from the same
  server through imapc (IMAPS) into a Maildir (what Dovecot recommends for
  moving mail from another IMAP server).

Medians of --runs runs; ratios against each baseline.

    .venv/bin/python bench/migrate.py [--messages 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.header import Header
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailserver.app import App  # noqa: E402
from mailserver.migrate.imapclient import ImapEndpoint, ImapSource  # noqa: E402
from mailserver.migrate.runner import Job, run_jobs  # noqa: E402
from mailserver.migrate.sources import ImapMailbox, _uid_set  # noqa: E402
from policy.loader import load  # noqa: E402
from storage import maildir as md  # noqa: E402
from storage.directory import PersonRequest  # noqa: E402
from tests.dovecot import DOVEADM, Dovecot, running_dovecot  # noqa: E402
from tests.helpers import write_config  # noqa: E402

USER, PASSWORD = "bench", "Bench#2026aa"
FOLDERS = [("INBOX", 0.6), ("Sent", 0.2), ("Dự án/2026", 0.2)]
SUBJECTS = ["Công văn số {n}/UBND-VP về việc triển khai kế hoạch năm 2026", "Báo cáo tình hình tháng {m}",
            "Giấy mời họp giao ban tuần {n}", "Quyết định phê duyệt dự toán ngân sách {n}"]


def _message(rng: random.Random, n: int, when: datetime) -> bytes:
    subject = Header(rng.choice(SUBJECTS).format(n=n, m=n % 12 + 1), "utf-8").encode()
    head = (f"From: =?utf-8?b?Tmd1eeG7hW4gVsSDbiBBbg==?= <nguyenvanan@phuyen.gov.vn>\r\n"
            f"To: vanphong@phuyen.gov.vn\r\nSubject: {subject}\r\n"
            f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0700')}\r\nMessage-ID: <bench{n}@phuyen.gov.vn>\r\n"
            "MIME-Version: 1.0\r\n")
    text = ("Kính gửi các đơn vị, đề nghị khẩn trương triển khai thực hiện nội dung công văn.\r\n"
            * rng.randint(20, 150))
    roll = rng.random()
    attach = 0 if roll < 0.85 else rng.randint(20_000, 150_000) if roll < 0.99 else rng.randint(500_000, 1 << 20)
    if not attach:
        return (head + "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                + text).encode()
    import base64

    blob = base64.encodebytes(rng.randbytes(attach)).replace(b"\n", b"\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\n'
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + text
            + '--b\r\nContent-Type: application/pdf; name="bao-cao.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            ).encode() + blob + b"--b--\r\n"


def fill_maildir(dv: Dovecot, count: int) -> tuple[int, int]:
    """Write the old mailbox's Maildir++ tree as Dovecot would find it (messages in cur/ with flags)."""
    rng = random.Random(2026)
    root = dv.maildir(USER)
    base = datetime(2015, 1, 1, tzinfo=UTC)
    total = 0
    written = 0
    for folder, share in FOLDERS:
        d = root / md.folder_dirname(folder) if folder != "INBOX" else root
        for sub in md.SUBDIRS:
            (d / sub).mkdir(parents=True, exist_ok=True)
        if folder != "INBOX":
            (d / "maildirfolder").touch()
        for _ in range(int(count * share)):
            written += 1
            when = base + timedelta(minutes=527 * written)
            data = _message(rng, written, when)
            flags = rng.choice(["S", "RS", "FS", "", "S"])
            path = d / "cur" / f"{int(when.timestamp())}.M{written}P1.bench,S={len(data)}:2,{flags}"
            path.write_bytes(data)
            os.utime(path, (when.timestamp(), when.timestamp()))
            total += len(data)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("dovecot")
        for p in [root, *root.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)
    return written, total


def endpoint(dv: Dovecot) -> ImapEndpoint:
    return ImapEndpoint("localhost", dv.imaps_port, "implicit", ca_file=str(dv.cert), timeout=600)


async def migrate_once(dv: Dovecot, work: Path, expected: int) -> float:
    cfg = write_config(work)
    app = await App.open(loaded=load(cfg))
    try:
        created = await app.directory.add_person(
            PersonRequest(name="Người Đo Tốc Độ", unit=None, password="Matkhau#2026aA", address="dotocdo",
                          must_change=False),
            actor="bench")
        address = created.account.address
        started = time.perf_counter()
        reports = await run_jobs(app, [Job(f"{USER}@localhost", address,
                                           lambda: ImapMailbox(endpoint(dv), USER, PASSWORD))])
        elapsed = time.perf_counter() - started
        r = reports[0]
        if r.state != "done" or r.failed or r.copied != expected:
            raise SystemExit(f"migration failed: {r.as_dict()}")
        return elapsed
    finally:
        await app.close()


async def read_once(dv: Dovecot, batch: int = 100) -> float:
    """Baseline: the same client, the same batches, nothing stored."""
    started = time.perf_counter()
    src = ImapSource(endpoint(dv))
    await src.connect()
    await src.login(USER, PASSWORD)
    try:
        for entry in await src.list():
            if not entry.selectable:
                continue  # "Dự án" exists only as the parent of "Dự án/2026" (\NonExistent)
            await src.examine(entry.raw)
            uids = [m.uid for m in await src.fetch("1:*", "(UID RFC822.SIZE)")]
            for i in range(0, len(uids), batch):
                await src.fetch(_uid_set(uids[i : i + batch]), "(UID FLAGS INTERNALDATE BODY.PEEK[])")
    finally:
        await src.close()
    return time.perf_counter() - started


def dsync_once(dv: Dovecot, work: Path, expected: int) -> float | None:
    """Baseline: Dovecot's doveadm backup through imapc into a Maildir (None if it cannot run here)."""
    work.chmod(0o755)  # doveadm switches to the mail user
    target = work / "dsync"
    target.mkdir(parents=True)
    if os.geteuid() == 0:
        shutil.chown(target, "dovecot", "dovecot")
    conf = dv.base / "dovecot.conf"
    # over IMAPS, like the other two variants (TLS costs the same on every side)
    args = [DOVEADM, "-c", str(conf), "-o", f"mail_location=maildir:{target}",
            "-o", "imapc_host=localhost", "-o", f"imapc_port={dv.imaps_port}", "-o", "imapc_ssl=imaps",
            "-o", f"ssl_client_ca_file={dv.cert}", "-o", f"imapc_user={USER}",
            "-o", f"imapc_password={PASSWORD}", "-o", "imapc_features=rfc822.size fetch-headers",
            "backup", "-R", "-u", USER, "imapc:"]
    started = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, timeout=3600)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        print(f"  dsync baseline unavailable: {proc.stderr.strip()[:300]}")
        return None
    copied = sum(1 for p in target.rglob("*") if p.is_file() and p.parent.name in ("cur", "new"))
    if copied != expected:
        raise SystemExit(f"dsync copied {copied} messages of {expected}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-dsync", action="store_true")
    args = ap.parse_args()
    with running_dovecot() as dv:
        dv.add_user(USER, PASSWORD)
        count, nbytes = fill_maildir(dv, args.messages)
        mb = nbytes / 1e6
        print(f"old mailbox: {count} messages, {mb:.1f} MB in {len(FOLDERS)} folders (Dovecot, IMAPS on loopback)")
        read_once_sync = asyncio.run(read_once(dv))  # warms Dovecot's index and caches for every variant
        print(f"  warm-up read {read_once_sync:.1f} s")
        times: dict[str, list[float]] = {"migrate": [], "read": [], "dsync": []}
        for run in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="bench-migrate-") as tmp:
                t = asyncio.run(migrate_once(dv, Path(tmp), count))
                times["migrate"].append(t)
                r = asyncio.run(read_once(dv))
                times["read"].append(r)
                line = f"run {run + 1}: migrate {t:.1f} s, read-only {r:.1f} s"
                if not args.no_dsync:
                    d = dsync_once(dv, Path(tmp), count)
                    if d is not None:
                        times["dsync"].append(d)
                        line += f", dsync {d:.1f} s"
                print(line, flush=True)
        print(f"\nmedians of {args.runs} runs, {count} messages, {mb:.1f} MB:")
        print(f"{'variant':<32} {'seconds':>8} {'msg/s':>8} {'MB/s':>8}")
        med = {k: statistics.median(v) for k, v in times.items() if v}
        labels = {"migrate": "mailserver migrate imap", "read": "baseline: read only (same client)",
                  "dsync": "baseline: doveadm backup (imapc)"}
        for k, t in med.items():
            print(f"{labels[k]:<32} {t:8.1f} {count / t:8.0f} {mb / t:8.1f}")
        for k in ("read", "dsync"):
            if k in med:
                # per run too: the variants of one run share the machine's load of that moment
                per_run = [b / m for b, m in zip(times[k], times["migrate"], strict=False)]
                print(f"speed of migrate / {k}: {med[k] / med['migrate']:.2f} (ratio of medians), "
                      f"{statistics.median(per_run):.2f} (median of per-run ratios)")


if __name__ == "__main__":
    main()
