"""`mailserver backup` of a live server and `mailserver restore` into an empty folder (issue 11).

The main test backs up a running server while mail keeps arriving, with
mail in several folders (INBOX, Sent, a Vietnamese folder name, flags and
a keyword, an expunged message), restores into an empty data folder,
starts a second server there and reads everything back over IMAP: the same
folders, UIDVALIDITY, UIDs, flags and bytes for everything that existed
when the backup started, and the passwords still work. The other tests
cover the refusals: a damaged or cut backup, a non-empty target, a backup
inside the data folder, serving a half-restored folder; and the outbound
queue: a message waiting to leave is restored with its state and bytes, and
rows of messages finished during the backup are left out.
"""

from __future__ import annotations

import io
import json
import os
import re
import smtplib
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from storage.backup import MANIFEST, RESTORE_MARKER, Root, backup
from storage.mutf7 import encode as mutf7
from tests.clamd import Clamd
from tests.helpers import ROOT, cli, write_config
from tests.server import ServerProcess
from tests.smtp_fixtures import client_tls as unverified
from tests.test_serve_signals import PASSWORD

PROJECT = "Dự án/Đường ven biển 2026"


def configured(base: Path, clamd: Clamd) -> Path:
    return write_config(base, extra=f"clamd: {{socket: {clamd.socket}}}\n"
                                    "dns: {nameservers: [127.0.0.1], port: 9, timeout: 0.2}\n")


def add_account(cfg: Path, name: str) -> str:
    out = cli(cfg, "--json", "account", "add", "--name", name, "--password", PASSWORD, check=True)
    return json.loads(out.stdout)["address"]


def send(server: ServerProcess, rcpt: str, subject: str, body: str = "nội dung") -> None:
    with smtplib.SMTP(*server.address("smtp"), timeout=60) as c:
        c.sendmail("nguoigui@example.org", [rcpt],
                   f"From: nguoigui@example.org\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                   f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n".encode())


def submit_outside(server: ServerProcess, sender: str, rcpt: str, subject: str) -> str:
    """Staff mail to another organisation (587, STARTTLS, AUTH): it waits in the outbound queue (the test
    DNS server on port 9 never answers, so every attempt is deferred); returns its queue id."""
    with smtplib.SMTP(*server.address("submission"), timeout=60) as c:
        c.starttls(context=unverified())
        c.login(sender, PASSWORD)
        assert c.mail(sender)[0] == 250 and c.rcpt(rcpt)[0] == 250
        code, reply = c.data(f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
                             "Content-Type: text/plain; charset=utf-8\r\n\r\nĐang chờ gửi đi.\r\n".encode())
    m = re.search(rb"queued as ([A-Za-z0-9]+)", reply)
    assert code == 250, reply
    assert m, reply
    return m.group(1).decode()


def imap(server: ServerProcess, address: str):
    import imaplib

    c = imaplib.IMAP4_SSL(*server.address("imaps"), ssl_context=unverified(), timeout=60)
    c.login(address, PASSWORD)
    return c


def mailbox_state(server: ServerProcess, address: str) -> dict[str, Any]:
    """Every folder: UIDVALIDITY and, per UID, the flags and the exact bytes (what a client would cache)."""
    c = imap(server, address)
    state: dict[str, Any] = {}
    _, listing = c.list()
    for line in listing:
        name = re.search(rb' "/" (.*)$', line).group(1).decode()  # type: ignore[union-attr]
        c.select(name, readonly=True)
        validity = c.response("UIDVALIDITY")[1][0]
        _, data = c.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[])")
        messages = {}
        for part in data:
            if isinstance(part, tuple):
                head = part[0].decode()
                uid = int(re.search(r"UID (\d+)", head).group(1))  # type: ignore[union-attr]
                flags = re.search(r"FLAGS \(([^)]*)\)", head).group(1)  # type: ignore[union-attr]
                messages[uid] = (sorted(flags.split()), part[1])
        state[name.strip('"')] = {"uidvalidity": validity, "messages": messages}
    c.logout()
    return state


def test_backup_of_a_live_server_restores_the_same_mail(tmp_path: Path, clamd_daemon: Clamd):
    live = configured(tmp_path / "live", clamd_daemon)
    cli(live, "init", check=True)
    lan = add_account(live, "Trần Thị Lan")
    minh = add_account(live, "Phạm Văn Minh")
    server = ServerProcess(live).start(timeout=90)
    try:
        for n in range(6):
            send(server, lan, f"Công văn số {n}", body=f"Kính gửi chị Lan, văn bản {n}.\r\n" * (20 + n))
        send(server, minh, "Lịch họp giao ban")
        c = imap(server, lan)
        c.create(f'"{mutf7(PROJECT)}"')
        c.select("INBOX")
        c.uid("COPY", "1:2", f'"{mutf7(PROJECT)}"')
        c.uid("STORE", "3", "+FLAGS", r"(\Seen \Flagged $Label1)")
        c.uid("STORE", "4", "+FLAGS", r"(\Deleted)")
        c.expunge()
        sent = b"From: lan@phuyen.gov.vn\r\nTo: x@example.org\r\nSubject: Da gui\r\n\r\nok\r\n"
        c.append("Sent", r"(\Seen)", None, sent)
        c.logout()
        # accepted mail not yet delivered: the outbound queue is part of the backup
        queued = submit_outside(server, lan, "doi.tac@example.org", "Gửi ra ngoài tỉnh")
        waiting = json.loads(cli(live, "--json", "queue", "show", queued, "--message", check=True).stdout)
        before = {a: mailbox_state(server, a) for a in (lan, minh)}

        # mail keeps arriving while the backup runs
        stop = threading.Event()
        during: list[str] = []

        def keep_sending() -> None:
            n = 0
            while not stop.is_set():
                subject = f"Trong lúc sao lưu {n}"
                send(server, lan, subject)
                during.append(subject)
                n += 1

        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            while len(during) < 3:
                time.sleep(0.05)
            archive = tmp_path / "backups" / "mail.tar.gz"
            archive.parent.mkdir()
            result = cli(live, "--json", "backup", str(archive), check=True)
        finally:
            stop.set()
            sender.join(60)
        summary = json.loads(result.stdout)
        assert summary["databases"] >= 3  # the directory and both mailboxes' indexes
        assert summary["mailboxes"] >= 3  # lan, minh and the operators' mailbox
        assert summary["messages"] >= 9
    finally:
        assert server.stop() == 0

    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[-1] == MANIFEST
    assert "data/directory.sqlite3" in names and "config/policy.yaml" in names
    assert not [n for n in names if n.endswith(("-wal", "-shm")) or "/tmp/" in n]

    # restore into an empty data folder of a second installation
    other = configured(tmp_path / "restored", clamd_daemon)
    restored = cli(other, "restore", str(archive), check=True)
    assert "every file matches the manifest" in restored.stdout
    assert "accounts" in restored.stdout
    server2 = ServerProcess(other).start(timeout=90)
    try:
        after = {a: mailbox_state(server2, a) for a in (lan, minh)}
        for address, folders in before.items():
            assert set(after[address]) == set(folders)
            for name, folder in folders.items():
                got = after[address][name]
                assert got["uidvalidity"] == folder["uidvalidity"], name
                for uid, (flags, body) in folder["messages"].items():
                    assert got["messages"][uid] == (flags, body), f"{address} {name} UID {uid}"
        inbox = after[lan]["INBOX"]["messages"]
        bodies = b"".join(b for _, b in inbox.values())
        assert b"Subject: C" in bodies
        assert mutf7(PROJECT) in after[lan]
        # mail that arrived during the backup is there complete or not at all, never torn
        for _, body in inbox.values():
            assert body.endswith(b"\r\n")
        # the restored server takes new mail, with UIDs after the restored ones
        send(server2, lan, "Sau khi khôi phục")
        newest = mailbox_state(server2, lan)["INBOX"]["messages"]
        assert max(newest) > max(inbox)
        # the queued message is still waiting, with its envelope, recipient state and exact bytes
        again = json.loads(cli(other, "--json", "queue", "show", queued, "--message", check=True).stdout)
        assert again["message"] == waiting["message"] and "Subject: Gửi ra ngoài tỉnh" in again["message"]
        assert again["sender"] == lan and [r["rcpt"] for r in again["recipients"]] == ["doi.tac@example.org"]
        assert again["recipients"][0]["state"] == "pending"
    finally:
        assert server2.stop() == 0


def test_new_uidvalidity_makes_clients_reread(tmp_path: Path, clamd_daemon: Clamd):
    live = configured(tmp_path / "live", clamd_daemon)
    cli(live, "init", check=True)
    lan = add_account(live, "Trần Thị Lan")
    server = ServerProcess(live).start(timeout=90)
    try:
        send(server, lan, "Một")
        before = mailbox_state(server, lan)
    finally:
        server.stop()
    archive = tmp_path / "b.tar"
    cli(live, "backup", str(archive), check=True)
    other = configured(tmp_path / "restored", clamd_daemon)
    out = cli(other, "restore", str(archive), "--new-uidvalidity", check=True).stdout
    assert re.search(r"new in \d+ folders", out)
    server2 = ServerProcess(other).start(timeout=90)
    try:
        after = mailbox_state(server2, lan)
    finally:
        server2.stop()
    assert after["INBOX"]["uidvalidity"] != before["INBOX"]["uidvalidity"]
    assert after["INBOX"]["messages"] == before["INBOX"]["messages"]


def test_restore_refuses_what_it_cannot_trust(tmp_path: Path, clamd_daemon: Clamd):
    live = configured(tmp_path / "live", clamd_daemon)
    cli(live, "init", check=True)
    archive = tmp_path / "b.tar"
    cli(live, "backup", str(archive), check=True)

    # not into a folder that has data
    r = cli(live, "restore", str(archive))
    assert r.returncode == 1 and "is not empty: restore writes only into an empty or new folder" in r.stderr

    # never over an existing backup, never into the data folder itself
    r = cli(live, "backup", str(archive))
    assert r.returncode == 1 and "exists; backups are never overwritten" in r.stderr
    r = cli(live, "backup", str(tmp_path / "live" / "data" / "x.tar"))
    assert r.returncode == 1 and "which is being backed up" in r.stderr

    # a damaged file (one byte of the directory database changed)
    raw = bytearray(archive.read_bytes())
    with tarfile.open(archive) as tar:
        member = tar.getmember("data/directory.sqlite3")
    raw[member.offset_data + 100] ^= 0xFF
    damaged = tmp_path / "damaged.tar"
    damaged.write_bytes(bytes(raw))
    other = configured(tmp_path / "r1", clamd_daemon)
    r = cli(other, "restore", str(damaged))
    assert r.returncode == 1 and "damaged: data/directory.sqlite3" in r.stderr
    # what was written is marked: neither serve nor init will use it
    assert (tmp_path / "r1" / "data" / RESTORE_MARKER).exists()
    r = cli(other, "serve")
    assert r.returncode == 1 and "holds an unfinished restore" in r.stderr
    r = cli(other, "init")
    assert r.returncode == 1 and "holds an unfinished restore" in r.stderr

    # a backup of data a newer version has migrated: this version would misread it
    newer = tmp_path / "newer.tar"
    with tarfile.open(archive) as src, tarfile.open(newer, "w") as dst:
        for member in src:
            data = src.extractfile(member) if member.isfile() else None
            if member.name == MANIFEST:
                manifest = json.loads(data.read())  # type: ignore[union-attr]
                assert manifest["schemas"]["directory"] >= 1
                manifest["schemas"]["directory"] = 999
                raw = json.dumps(manifest).encode()
                member.size = len(raw)
                data = io.BytesIO(raw)
            dst.addfile(member, data)
    other = configured(tmp_path / "r4", clamd_daemon)
    r = cli(other, "restore", str(newer))
    assert r.returncode == 1 and "directory databases have schema 999, this version knows up to" in r.stderr

    # a backup cut short (copied before it was complete)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    other = configured(tmp_path / "r2", clamd_daemon)
    r = cli(other, "restore", str(cut))
    assert r.returncode == 1 and ("cannot read the backup" in r.stderr or "no backup manifest" in r.stderr)

    # through a pipe, as `podman exec NAME mailserver backup - | ...` or ssh do
    other = configured(tmp_path / "r3", clamd_daemon)
    env = {k: v for k, v in os.environ.items() if k != "MAILSERVER_CONFIG"}
    me = f"{sys.executable} -m mailserver"
    piped = subprocess.run(["sh", "-c", f"{me} --config {live} backup - --gzip | {me} --config {other} restore -"],
                           capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "every file matches the manifest" in piped.stdout
    assert not (tmp_path / "r3" / "data" / RESTORE_MARKER).exists()


def test_queue_rows_of_messages_finished_during_the_backup_are_left_out(tmp_path: Path, monkeypatch):
    """The outbound queue writes the file before its rows and removes the rows before the file; a backup
    takes the database first, so only rows whose message was finished meanwhile can lack a file."""
    data = tmp_path / "data"
    queue = data / "queue"
    (queue / "messages").mkdir(parents=True)
    (queue / "workers").mkdir()
    (queue / "workers" / "abc.lock").write_text("")
    db = sqlite3.connect(queue / "queue.sqlite3")
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE messages (id TEXT PRIMARY KEY, sender TEXT)")
    db.execute("CREATE TABLE recipients (queue_id TEXT REFERENCES messages(id), rcpt TEXT)")
    for qid in ("Q1", "Q2", "Q3"):
        db.execute("INSERT INTO messages VALUES (?, 'a@phuyen.gov.vn')", (qid,))
        db.execute("INSERT INTO recipients VALUES (?, 'x@example.org')", (qid,))
        (queue / "messages" / f"{qid}.eml").write_bytes(b"Subject: q\r\n\r\nbody\r\n")
    db.commit()
    (queue / "messages" / "Q4.eml.tmp").write_bytes(b"half written")

    # Q2 finishes between the database snapshot and the copy of its file: simulate it by removing the
    # file as the backup reaches the messages folder
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if str(path).endswith("messages"):
            (queue / "messages" / "Q2.eml").unlink(missing_ok=True)
        return real_scandir(path)

    buf = io.BytesIO()
    monkeypatch.setattr(os, "scandir", scandir)
    summary = backup([Root("data", data)], buf)
    monkeypatch.undo()
    db.close()
    assert summary.queue_finished_dropped == 1
    buf.seek(0)
    with tarfile.open(fileobj=buf) as tar:
        names = tar.getnames()
        assert "data/queue/messages/Q1.eml" in names and "data/queue/messages/Q2.eml" not in names
        assert not [n for n in names if n.endswith(".tmp") or "workers" in n or n.endswith("-wal")]
        # the queue database comes after its messages, without Q2
        assert names.index("data/queue/queue.sqlite3") > names.index("data/queue/messages/Q3.eml")
        snap = tmp_path / "snap.sqlite3"
        snap.write_bytes(tar.extractfile("data/queue/queue.sqlite3").read())  # type: ignore[union-attr]
    con = sqlite3.connect(snap)
    assert [r[0] for r in con.execute("SELECT id FROM messages ORDER BY id")] == ["Q1", "Q3"]
    assert [r[0] for r in con.execute("SELECT queue_id FROM recipients ORDER BY queue_id")] == ["Q1", "Q3"]
    con.close()


def test_backup_refuses_another_users_data(tmp_path: Path, clamd_daemon: Clamd):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the data folder to another user")
    live = configured(tmp_path / "live", clamd_daemon)
    cli(live, "init", check=True)
    data = tmp_path / "live" / "data"
    os.chown(data, 65534, 65534)
    try:
        r = cli(live, "backup", str(tmp_path / "b.tar"))
    finally:
        os.chown(data, 0, 0)
    assert r.returncode == 1 and "run the backup as that user" in r.stderr
