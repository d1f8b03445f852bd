"""Đ8.2.d migration from a real Dovecot over IMAP, checked through our own IMAP server (Đ10.2 integrity).

The old server is Debian's Dovecot started on loopback by the tests
(tests/dovecot.py), filled over IMAP with a few hundred messages in nested
folders with Vietnamese names, flags, keywords and internal dates spread
over ten years. `mailserver migrate imap` runs as an operator runs it (a
subprocess of the CLI); the result is read back through our IMAP server
and compared folder by folder: bytes, flags and internal dates.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.dovecot import MASTER_PASSWORD, MASTER_USER, running_dovecot
from tests.helpers import ROOT
from tests.imap_support import make_server
from tests.migrate_support import FOLDERS, fill, quote, run_cli, run_json, snapshot

OLD_PASSWORD = "Cũ#mật-khẩu2020"
TOTAL = sum(n for n, _ in FOLDERS.values()) + 1  # one duplicate in INBOX


@pytest.fixture(scope="module")
def dovecot():
    with running_dovecot() as dv:
        dv.add_user("olduser", OLD_PASSWORD)
        c = dv.login("olduser")
        try:
            fill(c)
        finally:
            c.logout()
        yield dv


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # small batches, so the runs below go through many journal/commit cycles
    with make_server(tmp_path_factory.mktemp("migrate-imap"), policy="migration:\n  batch_messages: 10\n") as srv:
        yield srv


@pytest.fixture
def target(server, request) -> str:
    name = request.node.name.replace("_", "")[:20]
    return server.add_person(f"Người Nhận {name}", "Matkhau#2026aA", address=f"nhan.{name}"[:60])


def password_file(tmp_path: Path, text: str = OLD_PASSWORD) -> Path:
    p = tmp_path / "old-password"
    p.write_text(text + "\n", encoding="utf-8")
    return p


def imap_args(dv, tmp_path: Path, to: str, *, tls: str = "starttls", user: str = "olduser") -> list[str]:
    port = dv.imaps_port if tls == "implicit" else dv.imap_port
    return ["migrate", "imap", "--host", "localhost", "--port", str(port), "--tls", tls, "--ca-file", str(dv.cert),
            "--user", user, "--password-file", str(password_file(tmp_path)), "--to", to]


def assert_same_mail(dv, server, to: str, folders=FOLDERS, user: str = "olduser") -> None:
    src, ours = dv.login(user), server.login(to)
    try:
        for name, (_, target) in folders.items():
            old, new = snapshot(src, name), snapshot(ours, target)
            assert sum(old.values()) == sum(new.values()), (name, target)
            assert old == new, f"{name} -> {target}: bytes, flags or dates differ"
    finally:
        src.logout()
        ours.logout()


# ---------------------------------------------------------------- the whole mailbox


def test_d8_2_d_every_folder_byte_for_byte_with_flags_and_dates(dovecot, server, target, tmp_path):
    code, reports = run_json(server.config, *imap_args(dovecot, tmp_path, target))
    assert code == 0, reports
    r = reports[0]
    assert (r["state"], r["copied"], r["failed"], r["skipped"]) == ("done", TOTAL, [], 0)
    assert_same_mail(dovecot, server, target)
    how = {f["target"]: f["how"] for f in r["folders"]}
    assert how["Sent"] == "name" and how["Trash"] == "special-use" and how["Junk"] == "name"
    assert how["Sent/2019"] == "sub-folder of a special folder" and how["Dự án/2026/Quý 1"] == "same name"
    ours = server.login(target)
    try:
        _typ, lines = ours.lsub('""', "*")
        subscribed = b"\n".join(lines)
        for _, folder in FOLDERS.values():
            assert quote(folder).encode() in subscribed or folder == "INBOX"
        _typ, lines = ours.list('""', '"Sent"')
        assert b"\\Sent" in lines[0]  # our Sent, with its special use (RFC 6154)
    finally:
        ours.logout()


def test_rerun_copies_nothing_then_only_what_is_new(dovecot, server, target, tmp_path):
    dovecot.add_user("rerun", OLD_PASSWORD)
    small = {"INBOX": (12, "INBOX"), "Lưu trữ cũ": (8, "Lưu trữ cũ")}
    c = dovecot.login("rerun")
    fill(c, small, tag="r")
    args = imap_args(dovecot, tmp_path, target, tls="implicit", user="rerun")
    assert run_json(server.config, *args)[1][0]["copied"] == 21
    again = run_json(server.config, *args)[1][0]
    assert (again["state"], again["copied"], again["skipped"]) == ("done", 0, 21)
    # the same mailbox reached another way (STARTTLS on 143 instead of 993) is the same job
    other_way = run_json(server.config, *imap_args(dovecot, tmp_path, target, tls="starttls", user="rerun"))[1][0]
    assert (other_way["state"], other_way["copied"], other_way["skipped"]) == ("done", 0, 21)
    fill(c, {"INBOX": (3, "INBOX"), "Lưu trữ cũ": (2, "Lưu trữ cũ")}, tag="new", start=500)
    c.logout()
    third = run_json(server.config, *args)[1][0]
    assert (third["copied"], third["skipped"]) == (6, 21)  # 3 + 1 duplicate + 2
    assert_same_mail(dovecot, server, target, small, user="rerun")


def test_master_user_logs_in_for_a_user_whose_password_nobody_has(dovecot, server, target, tmp_path):
    master = tmp_path / "master"
    master.write_text(MASTER_PASSWORD + "\n", encoding="utf-8")
    args = ["migrate", "imap", "--host", "localhost", "--port", str(dovecot.imaps_port), "--ca-file",
            str(dovecot.cert), "--user", "olduser", "--master-user", MASTER_USER, "--master-password-file",
            str(master), "--to", target]
    code, reports = run_json(server.config, *args)
    assert code == 0 and reports[0]["copied"] == TOTAL
    master.write_text("wrong\n", encoding="utf-8")
    code, reports = run_json(server.config, *args)
    assert code == 1 and reports[0]["state"] == "failed"
    assert "refused the login of admin for olduser" in reports[0]["reason"]


def test_plain_connection_and_wrong_password_are_reported(dovecot, server, target, tmp_path):
    code, reports = run_json(server.config, *imap_args(dovecot, tmp_path, target, tls="none", user="olduser"))
    assert code == 0 and reports[0]["copied"] == TOTAL
    args = imap_args(dovecot, tmp_path, target, tls="none")
    password_file(tmp_path, "sai mật khẩu")
    code, reports = run_json(server.config, *args)
    assert code == 1 and "login: localhost refused the login of olduser" in reports[0]["reason"]


# ---------------------------------------------------------------- interruption


def test_sigkill_mid_run_then_rerun_has_every_message_once(dovecot, server, target, tmp_path):
    state_db = server.app.settings.paths.data / "migration.sqlite3"
    env = {**os.environ, "MAILSERVER_ACTOR": "test-operator"}
    env.pop("MAILSERVER_CONFIG", None)
    proc = subprocess.Popen([sys.executable, "-m", "mailserver", "--config", str(server.config),
                             *imap_args(dovecot, tmp_path, target)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(sqlite3.Error):
                con = sqlite3.connect(state_db, timeout=5)
                try:
                    n = con.execute("SELECT count(*) FROM messages WHERE job LIKE ? AND state='copied'",
                                    (f"%{target}",)).fetchone()[0]
                finally:
                    con.close()
                if n >= 20:
                    break
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, "the first run finished before it could be interrupted"
    code, reports = run_json(server.config, *imap_args(dovecot, tmp_path, target))
    assert code == 0, reports
    assert reports[0]["skipped"] + reports[0]["recovered"] >= 20 and reports[0]["copied"] < TOTAL
    assert_same_mail(dovecot, server, target)


# ---------------------------------------------------------------- a whole unit


def test_bulk_csv_in_parallel_with_progress_and_final_report(dovecot, server, tmp_path):
    dovecot.add_user("bulk1", "Bulk#1pass")
    dovecot.add_user("bulk2", "Bulk#2pass")
    for user, n in (("bulk1", 7), ("bulk2", 5)):
        c = dovecot.login(user)
        fill(c, {"INBOX": (n, "INBOX"), "Công việc": (3, "Công việc")}, tag=user)
        c.logout()
    to1 = server.add_person("Trần Thị Một", "Matkhau#2026aA", address="bulk.mot")
    to2 = server.add_person("Trần Thị Hai", "Matkhau#2026aA", address="bulk.hai")
    to3 = server.add_person("Trần Thị Ba", "Matkhau#2026aA", address="bulk.ba")
    (tmp_path / "pw2").write_text("Bulk#2pass\n", encoding="utf-8")
    sheet = tmp_path / "accounts.csv"
    sheet.write_text("user,password,password_file,to\n"
                     f"bulk1,Bulk#1pass,,{to1}\n"
                     f"bulk2,,pw2,{to2}\n"
                     f"bulk1,sai-mat-khau,,{to3}\n"
                     "bulk2,x,,khongco@phuyen.gov.vn\n", encoding="utf-8")
    report_file = tmp_path / "report.json"
    proc = run_cli(server.config, "migrate", "imap", "--host", "localhost", "--port", str(dovecot.imaps_port),
                   "--ca-file", str(dovecot.cert), "--csv", str(sheet), "--parallel", "2", "--report",
                   str(report_file))
    assert proc.returncode == 1, proc.stderr
    assert "\x1b[" not in proc.stdout  # not a terminal: plain lines, no cursor movement
    assert f"{to1} ← bulk1@localhost: done" in proc.stdout
    assert f"{to3} ← bulk1@localhost: failed — login: localhost refused the login of bulk1" in proc.stdout
    assert 'to: no account "khongco@phuyen.gov.vn"' in proc.stdout
    assert "total: 4 mailboxes, copied 20 messages" in proc.stdout
    import json

    saved = {r["address"]: r for r in json.loads(report_file.read_text(encoding="utf-8"))}
    assert saved[to1]["copied"] == 11 and saved[to2]["copied"] == 9
    assert saved[to1]["messages_per_second"] > 0
    assert saved[to3]["state"] == "failed" and saved["khongco@phuyen.gov.vn"]["state"] == "failed"


def test_cli_errors_name_the_field(server, tmp_path):
    proc = run_cli(server.config, "migrate", "imap", "--host", "localhost", "--user", "u", "--to", "x@phuyen.gov.vn")
    assert proc.returncode == 1 and "error: password_file: give --password-file" in proc.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("user,pass,to\nu,p,x@phuyen.gov.vn\n", encoding="utf-8")
    proc = run_cli(server.config, "migrate", "imap", "--host", "h", "--csv", str(bad))
    assert proc.returncode == 1 and "error: csv:" in proc.stderr and "unknown columns pass" in proc.stderr
    proc = run_cli(server.config, "migrate", "mbox", str(tmp_path / "none.mbox"), "--to", "x@phuyen.gov.vn")
    assert proc.returncode == 1 and "error: file:" in proc.stderr


def test_unreachable_server_is_a_reported_failure(server, target, tmp_path):
    from tests.helpers import free_port

    code, reports = run_json(server.config, "migrate", "imap", "--host", "127.0.0.1", "--port", str(free_port()),
                             "--user", "u", "--password-file", str(password_file(tmp_path)), "--to", target,
                             "--timeout", "20")
    assert code == 1 and reports[0]["state"] == "failed"
    assert reports[0]["reason"].startswith("host: cannot connect to 127.0.0.1")


def test_counter_of_flags_survives(dovecot, server, target, tmp_path):
    """Keywords and system flags are all there (a spot check on top of the folder comparison)."""
    run_json(server.config, *imap_args(dovecot, tmp_path, target))
    ours = server.login(target)
    try:
        flags: Counter[str] = Counter()
        for _, folder in FOLDERS.values():
            for (_, fl, _) in snapshot(ours, folder):
                flags.update(fl)
    finally:
        ours.logout()
    for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "$Forwarded", "$Label1", "Quan_trong"):
        assert flags[f] > 0, f
