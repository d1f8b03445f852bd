"""mbsync (Debian isync 1.4.4) syncs a whole account down, then a change back up: a real
third-party IMAP client exercising UIDPLUS, flags, APPEND and EXPUNGE the way it likes to."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from imap_gateway.utf7 import encode
from tests.imap_support import PLAIN_PASSWORD, Wire, message

MBSYNC = shutil.which("mbsync")


def mbsync(config: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([MBSYNC, "-c", str(config), "-a"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def local_messages(folder: Path) -> list[Path]:
    return sorted(p for sub in ("cur", "new") for p in (folder / sub).glob("*") if p.is_file())


def test_mbsync_round_trip(imap_server, imap_user, tmp_path):
    assert MBSYNC, "isync (mbsync) is in .ci/test-packages.txt; `make test` installs it"
    for i in range(3):
        imap_server.deliver(imap_user, message(f"Thư đồng bộ {i}", f"nội dung {i}"),
                            flags=frozenset({"\\Seen"} if i == 0 else ()))
    w = Wire(imap_server, user=imap_user)
    w.ok(f'CREATE "{encode("Công văn đến")}"')
    imap_server.deliver(imap_user, message("Công văn lưu"), folder="Công văn đến")

    local = tmp_path / "local"
    local.mkdir()
    config = tmp_path / "mbsyncrc"
    config.write_text(f"""
IMAPAccount phuyen
Host localhost
Port {imap_server.ports["imaps"]}
User {imap_user}
Pass {PLAIN_PASSWORD}
SSLType IMAPS
CertificateFile {imap_server.app.settings.cert_path}

IMAPStore remote
Account phuyen

MaildirStore near
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :near:
Patterns *
Create Both
Expunge Both
SyncState *
""", encoding="utf-8")

    mbsync(config)
    inbox = local_messages(local / "INBOX")
    assert len(inbox) == 3
    assert sum(1 for p in inbox if p.name.endswith(",S")) == 1  # \Seen came down as the S flag
    assert len(local_messages(local / encode("Công văn đến"))) == 1  # names stay modified UTF-7 locally
    assert (local / "Sent").is_dir() and (local / "Trash").is_dir()

    # Change things locally: read one, delete one, write a new one into Drafts.
    unseen = [p for p in inbox if not p.name.endswith(",S")]
    unseen[0].rename(unseen[0].with_name(unseen[0].name.split(":2,")[0] + ":2,S"))
    unseen[1].rename(unseen[1].with_name(unseen[1].name.split(":2,")[0] + ":2,T"))  # T: trashed -> expunge
    draft = local / "Drafts" / "cur" / "1700000000.local.draft:2,D"
    draft.write_bytes(message("Bản nháp từ mbsync", "viết ngoại tuyến"))
    mbsync(config)

    w.ok("SELECT INBOX")
    flags = w.ok("FETCH 1:* (FLAGS)")[:-1]
    assert flags == [b"* 1 FETCH (FLAGS (\\Seen))\r\n", b"* 2 FETCH (FLAGS (\\Seen))\r\n"]  # trashed: expunged
    w.ok("SELECT Drafts")
    drafts = b"".join(w.ok("FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])"))
    assert b"\\Draft" in drafts and b"Subject: =?utf-8?" in drafts
    w.close()
    mbsync(config)  # nothing left to do: a second run is quiet and succeeds
    assert len(local_messages(local / "INBOX")) == 2


@pytest.fixture(autouse=True)
def _require_isync():
    if MBSYNC is None:
        pytest.fail("mbsync is missing: run `make test` as root, or apt-get install isync")
