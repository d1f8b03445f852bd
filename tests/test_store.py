"""The mail store's public API on real files and real SQLite: delivery, quota, folders, flags, reads."""

from __future__ import annotations

import asyncio
import os

import pytest

from policy.errors import ValidationFailed
from storage import maildir as md
from storage.errors import FolderExists, FolderNotFound, KeywordLimit, MessageNotFound, OverQuota
from storage.index import INDEX_NAME
from storage.storetypes import Stored
from tests.mailhelpers import message, person


def files(root, folder_dir=""):
    d = root / folder_dir if folder_dir else root
    return sorted(os.listdir(d / "new")) + sorted(os.listdir(d / "cur"))


def message_paths(folder_dir):
    return [folder_dir / sub / n for sub in ("new", "cur") for n in sorted(os.listdir(folder_dir / sub))]


async def test_new_account_gets_maildir_and_special_folders(app):
    acc = await person(app)  # the directory's hook creates the mailbox (composition root)
    root = app.store.mailbox_path(acc)
    assert root.name == f"nguyenvana~{acc.id}" and root.parent.name == "phuyen.gov.vn"
    for sub in ("cur", "new", "tmp"):
        assert (root / sub).is_dir()
    s = await app.store.session(acc)
    folders = {f.name: f for f in await s.list_folders()}
    assert list(folders) == ["INBOX", "Archive", "Drafts", "Junk", "Sent", "Trash"]
    assert {n: f.special_use for n, f in folders.items() if f.special_use} == {  # RFC 6154
        "Archive": "\\Archive", "Drafts": "\\Drafts", "Junk": "\\Junk", "Sent": "\\Sent", "Trash": "\\Trash"}
    assert all(f.subscribed for f in folders.values())
    assert (root / ".Sent" / "maildirfolder").exists() and (root / ".Sent" / "dovecot-uidlist").exists()
    assert await app.store.create_mailbox(acc) == []  # idempotent


async def test_special_folder_names_come_from_policy(tmp_path, clock):
    from mailserver.app import App
    from policy.loader import load
    from tests.helpers import write_config

    cfg = write_config(tmp_path, policy="folders:\n  sent: Sent Items\n  trash: Deleted Items\n  junk: Junk E-mail\n")
    app = await App.open(loaded=load(cfg), clock=clock)
    try:
        acc = await person(app)
        names = {f.name: f.special_use for f in await (await app.store.session(acc)).list_folders()}
        assert names["Sent Items"] == "\\Sent" and names["Deleted Items"] == "\\Trash"
        assert names["Junk E-mail"] == "\\Junk" and "Sent" not in names
        assert (app.store.mailbox_path(acc) / ".Sent Items").is_dir()
    finally:
        await app.close()


async def test_deliver_is_durable_indexed_and_readable(app):
    acc = await person(app)
    data = message(token="t-1")
    stored = await app.store.deliver(acc, data)
    assert (stored.folder, stored.uid, stored.size) == ("INBOX", 1, len(data))
    root = app.store.mailbox_path(acc)
    assert files(root) == [name for name in files(root) if name.endswith(f",S={len(data)},W={len(data)}")]
    assert os.listdir(root / "tmp") == []
    uidlist = (root / "dovecot-uidlist").read_text().splitlines()
    assert uidlist[0].startswith(f"3 V{stored.uidvalidity} ") and uidlist[1].startswith("1 :")
    s = await app.store.session(acc)
    assert await s.read("INBOX", 1) == data
    snap = await s.snapshot("INBOX")
    assert snap.uidvalidity == stored.uidvalidity and snap.uidnext == 2
    assert snap.messages == [(1, frozenset(), stored.modseq)]
    u = await app.store.usage(acc)
    assert (u.bytes, u.messages, u.quota) == (len(data), 1, 2 * 1024**3)


async def test_lf_only_messages_are_stored_with_crlf(app):
    acc = await person(app)
    stored = await app.store.deliver(acc, b"Subject: lf\n\nline one\nline two\n")
    s = await app.store.session(acc)
    assert await s.read("INBOX", stored.uid) == b"Subject: lf\r\n\r\nline one\r\nline two\r\n"
    assert stored.size == len(b"Subject: lf\r\n\r\nline one\r\nline two\r\n")


async def test_concurrent_deliveries_get_distinct_uids_and_exact_usage(app):
    acc = await person(app)
    msgs = [message(token=f"tok-{i}", size=2000 + i) for i in range(200)]
    stored = await asyncio.gather(*(app.store.deliver(acc, m) for m in msgs))
    assert sorted(s.uid for s in stored) == list(range(1, 201))
    s = await app.store.session(acc)
    for st, m in zip(stored[::37], msgs[::37], strict=True):
        assert await s.read("INBOX", st.uid) == m
    u = await app.store.usage(acc)
    assert (u.bytes, u.messages) == (sum(len(m) for m in msgs), 200)


async def test_deliver_with_flags_goes_to_cur_with_maildir_info(app):
    acc = await person(app)
    st = await app.store.deliver(acc, message(), folder="Sent", flags={"\\Seen", "$Forwarded"})
    root = app.store.mailbox_path(acc)
    [name] = os.listdir(root / ".Sent" / "cur")
    assert name.endswith(":2,Sa")
    assert (root / ".Sent" / "dovecot-keywords").read_text() == "0 $Forwarded\n"
    snap = await (await app.store.session(acc)).snapshot("Sent")
    assert snap.messages[0][:2] == (st.uid, frozenset({"\\Seen", "$Forwarded"}))


async def test_deliver_refuses_bad_flags_and_unknown_folders(app):
    acc = await person(app)
    with pytest.raises(ValidationFailed) as e:
        await app.store.deliver(acc, message(), flags={"\\Bogus"})
    assert e.value.field == "flags"
    with pytest.raises(FolderNotFound) as e2:
        await app.store.deliver(acc, message(), folder="Không có")
    assert e2.value.field == "folder"
    assert (await app.store.usage(acc)).messages == 0
    assert os.listdir(app.store.mailbox_path(acc) / "tmp") == []


async def test_deliver_many_parses_once_and_links_one_file(app):
    a = await person(app, "Nguyễn Văn A")
    b = await person(app, "Trần Thị B")
    data = message(token="shared")
    results = await app.store.deliver_many([a, b], data)
    assert set(results) == {a.id, b.id} and all(r.uid == 1 for r in results.values())
    [fa], [fb] = (message_paths(app.store.mailbox_path(acc)) for acc in (a, b))
    assert os.stat(fa).st_ino == os.stat(fb).st_ino  # one copy on disk, hard-linked
    for acc in (a, b):
        assert await (await app.store.session(acc)).read("INBOX", 1) == data
        assert (await app.store.usage(acc)).bytes == len(data)


@pytest.fixture
async def small_quota(tmp_path, clock):
    """An App whose policy gives every mailbox 1 MiB (Đ7.3.b's floor is a policy value)."""
    from mailserver.app import App
    from policy.loader import load
    from tests.helpers import write_config

    cfg = write_config(tmp_path / "small", policy="quota:\n  default: 1MiB\n")
    app = await App.open(loaded=load(cfg), clock=clock)
    yield app
    await app.close()


async def test_d7_3_over_quota_is_refused_per_recipient(small_quota):
    app = small_quota
    a = await person(app, "Nguyễn Văn A")
    b = await person(app, "Trần Thị B")
    quota = 1024 * 1024
    await app.store.deliver(a, message(size=quota - 100_000))  # crosses 90%: a notice arrives too
    used = (await app.store.usage(a)).bytes
    big = message(size=200_000)
    check = await app.store.check_quota(a, len(big))
    assert not check.fits and check.used == used and check.quota == quota
    assert (await app.store.check_quota(a, quota - used)).fits  # exactly full still fits
    results = await app.store.deliver_many([a, b], big)
    assert isinstance(results[a.id], OverQuota) and results[b.id].uid == 1
    e = results[a.id]
    assert e.field == "quota" and e.needed == len(big) and e.used == used and e.quota == quota
    assert "(Đ7.3)" in e.message
    with pytest.raises(OverQuota):
        await app.store.deliver(a, big)
    assert (await app.store.usage(a)).bytes == used
    assert os.listdir(app.store.mailbox_path(a) / "tmp") == []
    # Đ7.3.c: a system notice is never refused for quota
    await app.store.deliver(a, big, system=True)
    assert (await app.store.usage(a)).bytes == used + len(big) > quota


async def test_quota_follows_operator_changes_at_once(app):
    acc = await person(app)
    assert (await app.store.usage(acc)).quota == 2 * 1024**3
    await app.directory.set_quota(acc.address, 5 * 1024**3, actor="op")
    assert (await app.store.usage(acc)).quota == 5 * 1024**3  # the stale Account object is not trusted


async def test_folders_create_rename_delete_subscribe(app):
    acc = await person(app)
    s = await app.store.session(acc)
    await s.create_folder("Dự án/2026/Quý 1")
    names = {f.name: f for f in await s.list_folders()}
    assert {"Dự án", "Dự án/2026", "Dự án/2026/Quý 1"} <= set(names)  # parents created (RFC 3501 §6.3.3)
    assert names["Dự án"].has_children and not names["Dự án/2026/Quý 1"].has_children
    root = app.store.mailbox_path(acc)
    assert (root / md.folder_dirname("Dự án/2026/Quý 1")).is_dir()
    with pytest.raises(FolderExists):
        await s.create_folder("Dự án")
    with pytest.raises(FolderExists):
        await s.create_folder("inbox")
    st = await app.store.deliver(acc, message(), folder="Dự án/2026")
    before = await s.snapshot("Dự án/2026")
    await s.subscribe("Dự án/2026")
    await s.rename_folder("Dự án", "Công việc")
    names = {f.name: f for f in await s.list_folders()}
    assert "Dự án" not in names and {"Công việc", "Công việc/2026", "Công việc/2026/Quý 1"} <= set(names)
    assert names["Công việc/2026"].subscribed
    after = await s.snapshot("Công việc/2026")
    assert (after.uidvalidity, after.messages) == (before.uidvalidity, before.messages)
    assert await s.read("Công việc/2026", st.uid) == message()
    await s.delete_folder("Công việc/2026")
    names = {f.name: f for f in await s.list_folders()}
    assert "Công việc/2026" not in names or not names["Công việc/2026"].selectable
    assert "Công việc/2026/Quý 1" in names  # children stay
    assert (await app.store.usage(acc)).messages == 0
    # a recreated folder never reuses the UIDVALIDITY of the deleted one (RFC 3501 §2.3.1.1)
    await s.create_folder("Công việc/2026")
    assert (await s.snapshot("Công việc/2026")).uidvalidity > before.uidvalidity
    with pytest.raises(ValidationFailed):
        await s.delete_folder("INBOX")
    with pytest.raises(ValidationFailed):
        await s.create_folder("a//b")
    with pytest.raises(FolderNotFound):
        await s.rename_folder("Không có", "X")


async def test_folder_names_with_dots_and_backslashes_are_escaped(app):
    acc = await person(app)
    s = await app.store.session(acc)
    await s.create_folder("v1.2\\cũ")
    root = app.store.mailbox_path(acc)
    assert (root / ".v1\\2e2\\5cc&AWk-").is_dir()
    assert "v1.2\\cũ" in {f.name for f in await s.list_folders()}


async def test_rename_inbox_moves_its_messages(app):
    acc = await person(app)
    await app.store.deliver(acc, message(token="a"))
    await app.store.deliver(acc, message(token="b"))
    s = await app.store.session(acc)
    await s.rename_folder("INBOX", "Cũ")
    assert (await s.status("INBOX")).messages == 0
    assert (await s.status("Cũ")).messages == 2
    assert (await app.store.usage(acc)).messages == 2


async def test_flags_keywords_modseq_and_unchangedsince(app):
    acc = await person(app)
    for i in range(3):
        await app.store.deliver(acc, message(token=str(i)))
    s = await app.store.session(acc)
    snap = await s.snapshot("INBOX")
    changed, failed = await s.store_flags("INBOX", [1, 2], ["\\Seen", "\\Flagged"], ["Công_việc"])
    assert [c[0] for c in changed] == [1, 2] and failed == []
    modseq = changed[0][2]
    assert modseq > snap.highestmodseq and changed[0][1] == frozenset({"\\Seen", "\\Flagged", "Công_việc"})
    root = app.store.mailbox_path(acc)
    names = sorted(os.listdir(root / "cur"))
    assert sum(n.endswith(":2,FSa") for n in names) == 2  # flags in the file name, keyword as letter a
    # nothing changes: no new MODSEQ
    again, _ = await s.store_flags("INBOX", [1], ["\\Seen"])
    assert again == []
    # RFC 7162 UNCHANGEDSINCE: message 1 changed after `snap`, message 3 did not
    changed, failed = await s.store_flags("INBOX", [1, 3], ["\\Answered"], unchanged_since=snap.highestmodseq)
    assert [c[0] for c in changed] == [3] and failed == [1]
    changed, _ = await s.store_flags("INBOX", [1], ["\\Draft"], mode="replace")
    assert changed[0][1] == frozenset({"\\Draft"})
    changed, _ = await s.store_flags("INBOX", [2], ["Công_việc"], mode="remove")
    assert changed[0][1] == frozenset({"\\Seen", "\\Flagged"})
    ch = await s.changes_since("INBOX", snap.highestmodseq)
    assert [c[0] for c in ch.changed] == [1, 2, 3] and ch.expunged == [] and ch.expunged_exact
    with pytest.raises(ValidationFailed):
        await s.store_flags("INBOX", [1], ["bad keyword"])


async def test_keyword_limit_is_26_per_folder(app):
    acc = await person(app)
    await app.store.deliver(acc, message())
    s = await app.store.session(acc)
    await s.store_flags("INBOX", [1], [f"k{i}" for i in range(26)])
    with pytest.raises(KeywordLimit) as e:
        await s.store_flags("INBOX", [1], ["one-too-many"])
    assert e.value.field == "flags"
    assert len((await s.snapshot("INBOX")).keywords) == 26


async def test_copy_move_expunge_keep_usage_exact(app):
    acc = await person(app)
    sizes = [1000, 2000, 3000]
    for n in sizes:
        await app.store.deliver(acc, message(size=n))
    s = await app.store.session(acc)
    await s.store_flags("INBOX", [2], ["$Label1"])
    res = await s.copy("INBOX", [1, 2], "Archive")
    assert res.pairs == [(1, 1), (2, 2)]
    assert (await app.store.usage(acc)).bytes == sum(sizes) + 3000
    arch = await s.snapshot("Archive")
    assert arch.messages[1][1] == frozenset({"$Label1"})  # keywords follow, renumbered for the folder
    res = await s.move("INBOX", [3], "Trash")
    assert res.pairs == [(3, 1)]
    assert (await app.store.usage(acc)).bytes == sum(sizes) + 3000
    assert await s.read("Trash", 1) == message(size=3000)
    with pytest.raises(MessageNotFound):
        await s.read("INBOX", 3)
    await s.store_flags("INBOX", [1, 2], ["\\Deleted"])
    assert await s.expunge("INBOX", [2]) == [2]  # UID EXPUNGE: only those listed
    assert await s.expunge("INBOX") == [1]
    assert (await app.store.usage(acc)).bytes == 3000 + 3000
    ch = await s.changes_since("INBOX", 0)
    assert ch.expunged == [1, 2, 3] and ch.changed == []
    drift = await app.store.recalc(acc)
    assert (drift.drift_bytes, drift.drift_messages) == (0, 0)


async def test_copy_is_refused_over_quota_but_move_is_not(small_quota):
    app = small_quota
    acc = await person(app)
    await app.store.deliver(acc, message(size=600_000))
    s = await app.store.session(acc)
    with pytest.raises(OverQuota):
        await s.copy("INBOX", [1], "Archive")
    assert (await s.move("INBOX", [1], "Trash")).pairs == [(1, 1)]  # moving never grows a mailbox
    assert (await app.store.usage(acc)).messages == 1


async def test_metadata_gives_envelope_structure_and_byte_ranges(app):
    acc = await person(app)
    data = (b"From: =?utf-8?b?Tmd1eeG7hW4gVsSDbiBB?= <a@phuyen.gov.vn>\r\nTo: b@phuyen.gov.vn\r\n"
            b"Subject: =?utf-8?q?B=C3=A1o_c=C3=A1o?=\r\nDate: Mon, 2 Nov 2026 08:00:00 +0700\r\n"
            b"Message-ID: <x@y>\r\nX-Other: not cached\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nN\xe1\xbb\x99i dung\r\n"
            b"--b1\r\nContent-Type: application/pdf; name=\"bao-cao.pdf\"\r\nContent-Disposition: attachment; "
            b"filename=\"bao-cao.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n")
    st = await app.store.deliver(acc, data)
    s = await app.store.session(acc)
    [meta] = await s.metadata("INBOX", [st.uid])
    assert meta.size == len(data) and meta.envelope["subject"] == "=?utf-8?q?B=C3=A1o_c=C3=A1o?="
    assert meta.envelope["message-id"] == "<x@y>" and meta.envelope["cc"] is None
    root = meta.structure
    assert (root.type, root.subtype, root.param("boundary")) == ("multipart", "mixed", "b1")
    text, pdf = root.parts
    assert (text.type, text.subtype, text.param("charset")) == ("text", "plain", "utf-8")
    assert await s.read_range("INBOX", st.uid, text.body_start, text.size) == "Nội dung".encode()
    assert (pdf.disposition, pdf.encoding, pdf.size) == ("attachment", "base64", len(b"JVBERi0xLjQK"))
    assert await s.read_range("INBOX", st.uid, pdf.header_start, pdf.body_start - pdf.header_start) == (
        b"Content-Type: application/pdf; name=\"bao-cao.pdf\"\r\nContent-Disposition: attachment; "
        b"filename=\"bao-cao.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n")
    assert "x-other" not in meta.header_fields and meta.header_fields["to"] == "To: b@phuyen.gov.vn\r\n"


async def test_search_is_case_and_diacritic_insensitive(app):
    acc = await person(app)
    await app.store.deliver(acc, message("Báo cáo Quý I", "Kính gửi đồng chí Nguyễn Đức Thắng"))
    await app.store.deliver(acc, message("Giấy mời họp", "Cuộc họp giao ban tuần", sender="vanthu@phuyen.gov.vn"))
    s = await app.store.session(acc)
    assert await s.search_text("INBOX", "bao cao", "header:subject") == {1}
    assert await s.search_text("INBOX", "GIẤY MỜI", "header:subject") == {2}
    assert await s.search_text("INBOX", "duc thang", "body") == {1}  # Đ → d
    assert await s.search_text("INBOX", "nguyễn", "body") == {1}
    assert await s.search_text("INBOX", "giao ban", "text") == {2}
    assert await s.search_text("INBOX", "vanthu@", "header:from") == {2}
    assert await s.search_text("INBOX", "example.vn", "header:message-id") == {1, 2}  # read from the files
    assert await s.search_text("INBOX", "họp", "text", uids=[1]) == set()


async def test_messages_dropped_into_new_by_another_program_are_picked_up(app):
    acc = await person(app)
    await app.store.deliver(acc, message(token="ours"))
    s = await app.store.session(acc)
    await s.snapshot("INBOX")
    root = app.store.mailbox_path(acc)
    foreign = message(token="procmail")
    (root / "tmp" / "1800000000.P99.other").write_bytes(foreign)
    os.rename(root / "tmp" / "1800000000.P99.other", root / "new" / "1800000000.P99.other")
    snap = await s.snapshot("INBOX", claim_recent=True)
    assert [m[0] for m in snap.messages] == [1, 2] and snap.recent == {1, 2}
    assert await s.read("INBOX", 2) == foreign
    assert (await app.store.usage(acc)).bytes == len(message(token="ours")) + len(foreign)
    assert (await s.snapshot("INBOX", claim_recent=True)).recent == frozenset()  # claimed once
    assert "2 :1800000000.P99.other" in (root / "dovecot-uidlist").read_text()
    assert os.listdir(root / "new") == []  # moved to cur/ once indexed


async def test_in_process_events(app):
    acc = await person(app)
    events = []
    s = await app.store.session(acc)
    s.subscribe_events(events.append)
    st = await app.store.deliver(acc, message())
    await s.store_flags("INBOX", [st.uid], ["\\Deleted"])
    await s.expunge("INBOX")
    await s.create_folder("Mới")
    await s.rename_folder("Mới", "Cũ")
    await s.delete_folder("Cũ")
    assert [(e.kind, e.folder, e.uids) for e in events] == [
        ("new", "INBOX", (1,)), ("flags", "INBOX", (1,)), ("expunge", "INBOX", (1,)),
        ("folder-created", "Mới", ()), ("folder-renamed", "Cũ", ()), ("folder-deleted", "Cũ", ())]
    assert events[4].old_name == "Mới" and all(e.account_id == acc.id for e in events)
    s.close()
    await app.store.deliver(acc, message())
    assert len(events) == 6


async def test_another_process_changes_reach_listeners_through_the_index(app, tmp_path):
    """Two MailStore instances on the same files behave as two worker processes."""
    from storage.store import MailStore

    acc = await person(app)
    other = MailStore(app.settings.paths.mail_dir, app.policy, app.directory, watch_interval=0.05)
    try:
        got: list = []
        app.store.watch_interval = 0.05
        app.store.subscribe(acc, got.append)
        await asyncio.sleep(0.2)  # the watcher takes its starting position
        st = await other.deliver(acc, message())
        await (await other.session(acc)).store_flags("INBOX", [st.uid], ["\\Seen"])
        for _ in range(100):
            if len(got) >= 2:
                break
            await asyncio.sleep(0.05)
        assert [(e.kind, e.uids) for e in got] == [("new", (st.uid,)), ("flags", (st.uid,))]
        # and mail dropped into new/ by another program wakes listeners too
        root = app.store.mailbox_path(acc)
        (root / "new" / "1800000001.P7.other").write_bytes(message(token="x"))
        for _ in range(100):
            if len(got) >= 3:
                break
            await asyncio.sleep(0.05)
        assert got[2].kind == "new" and got[2].uids == (2,)
    finally:
        await other.close()


async def test_a_real_second_worker_process_wakes_this_ones_listeners(app, config_file):
    """Production runs several worker processes: deliveries committed by another process (here
    tests/store_worker.py, a real one) reach this process's listeners, each exactly once."""
    import sys

    from tests.helpers import ROOT

    acc = await person(app)
    got: list = []
    app.store.watch_interval = 0.05
    app.store.subscribe(acc, got.append)
    await asyncio.sleep(0.3)  # the watcher takes its starting position
    env = {k: v for k, v in os.environ.items() if k != "MAILSERVER_CONFIG"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.store_worker", str(config_file), "40", "8", acc.local_part,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT, env=env)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    confirmed = sorted((ln.split()[1], int(ln.split()[2])) for ln in out.decode().splitlines()[1:])
    assert len(confirmed) == 40

    def seen() -> list[tuple[str, int]]:
        return sorted((e.folder, uid) for e in got if e.kind == "new" for uid in e.uids)

    for _ in range(200):
        if len(seen()) >= len(confirmed):
            break
        await asyncio.sleep(0.05)
    assert seen() == confirmed  # every delivery, once, in the folder it went to
    assert {e.kind for e in got} == {"new"} and all(e.account_id == acc.id for e in got)


async def test_pool_shares_and_closes_idle_indexes(app):
    from storage.store import MailStore

    accounts = [await person(app, f"Người Dùng {i}") for i in range(6)]
    store = MailStore(app.settings.paths.mail_dir, app.policy, app.directory, max_open=3, idle_seconds=0.1)
    try:
        for acc in accounts:
            await store.deliver(acc, message())
        assert store.pool.open_count <= 3
        sessions = [await store.session(accounts[0]) for _ in range(50)]
        await asyncio.gather(*(s.snapshot("INBOX") for s in sessions))
        assert store.pool.open_count <= 3  # 50 sessions of one account share one index
        await asyncio.sleep(0.5)
        assert store.pool.open_count == 0  # idle indexes are closed
        assert (await sessions[0].status("INBOX")).messages == 1  # and reopened on demand
    finally:
        await store.close()


async def test_indexes_evicted_under_load_are_never_closed_under_a_user(app):
    """More busy accounts than the pool keeps open: eviction must only close indexes nobody is
    about to use (a handle just opened, or handed to callers waiting for it, is in use)."""
    from storage.store import MailStore

    accounts = [await person(app, f"Người Dùng {i}") for i in range(6)]
    store = MailStore(app.settings.paths.mail_dir, app.policy, app.directory, max_open=2)
    try:
        for acc in accounts:
            await store.deliver(acc, message())
        sessions = [await store.session(acc) for acc in accounts]
        for _ in range(3):
            results = await asyncio.gather(*(sessions[i % 6].status("INBOX") for i in range(120)),
                                           *(store.deliver(accounts[i % 6], message(token=str(i)))
                                             for i in range(30)), return_exceptions=True)
            assert [r for r in results if isinstance(r, BaseException)] == []
        for _ in range(100):  # over the limit while everything was busy; back under it once released
            if store.pool.open_count <= 2:
                break
            await asyncio.sleep(0.02)
        assert store.pool.open_count <= 2
        assert sum([(await store.usage(a)).messages for a in accounts]) == 6 + 90
    finally:
        await store.close()


async def test_deleted_index_is_rebuilt_while_running(app):
    acc = await person(app)
    await app.store.deliver(acc, message())
    s = await app.store.session(acc)
    before = await s.snapshot("INBOX")
    root = app.store.mailbox_path(acc)
    for suffix in ("", "-wal", "-shm"):
        (root / (INDEX_NAME + suffix)).unlink(missing_ok=True)
    after = await s.snapshot("INBOX")
    assert (after.uidvalidity, [m[0] for m in after.messages]) == (before.uidvalidity, [1])
    assert (await app.store.usage(acc)).messages == 1


async def test_large_folder_snapshots_stay_exact_when_served_from_memory(app, monkeypatch):
    """SELECT of big folders is answered from a kept snapshot brought up to date by MODSEQ and
    expunge records; it must always equal a fresh read of the index."""
    from storage import index, snapshots
    from storage.store import MailStore

    monkeypatch.setattr(snapshots, "SNAPSHOT_CACHE_MIN", 1)
    acc = await person(app)
    for i in range(12):
        await app.store.deliver(acc, message(token=str(i)))
    s = await app.store.session(acc)
    other = MailStore(app.settings.paths.mail_dir, app.policy, app.directory)  # a second worker process
    try:
        o = await other.session(acc)

        async def check() -> None:
            served = await s.snapshot("INBOX")
            snapshots.SNAPSHOTS.forget(str(app.store.mailbox_path(acc) / index.INDEX_NAME))
            fresh = await s.snapshot("INBOX")
            assert served == fresh

        await check()
        await s.store_flags("INBOX", [2, 5], ["\\Seen", "Việc_gấp"])
        await check()
        await o.store_flags("INBOX", [3], ["\\Deleted"])
        await o.expunge("INBOX")
        await check()
        await other.deliver(acc, message(token="new"))
        await s.move("INBOX", [7], "Trash")
        await check()
        await s.store_flags("INBOX", range(1, 14), ["\\Flagged"])  # most of the folder: reloaded whole
        await check()
        assert [m[0] for m in (await s.snapshot("INBOX")).messages] == [1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13]
    finally:
        await other.close()


async def test_old_expunge_records_are_summarised_for_qresync(app, monkeypatch):
    from storage import index

    monkeypatch.setattr(index, "EXPUNGED_KEPT", 4)
    acc = await person(app)
    for i in range(10):
        await app.store.deliver(acc, message(token=str(i)))
    s = await app.store.session(acc)
    start = (await s.status("INBOX")).highestmodseq
    for uid in range(1, 8):
        await s.store_flags("INBOX", [uid], ["\\Deleted"])
        await s.expunge("INBOX")
    recent = await s.changes_since("INBOX", (await s.status("INBOX")).highestmodseq - 2)
    assert recent.expunged_exact and recent.expunged == [7]
    old = await s.changes_since("INBOX", start)  # older than the records kept (RFC 7162 §3.2.5.1)
    assert not old.expunged_exact and old.expunged == [1, 2, 3, 4, 5, 6, 7]


async def test_disk_failure_is_a_temporary_error_that_changes_nothing(app):
    from storage.errors import StoreUnavailable

    acc = await person(app)
    root = app.store.mailbox_path(acc)
    os.rmdir(root / "tmp")
    (root / "tmp").write_text("a file where tmp/ should be")  # writing the message fails
    with pytest.raises(StoreUnavailable) as e:
        await app.store.deliver(acc, message())
    assert e.value.field == "store" and "try again later" in e.value.message
    assert (await app.store.usage(acc)).messages == 0
    (root / "tmp").unlink()
    (root / "tmp").mkdir()
    assert (await app.store.deliver(acc, message())).uid == 1


async def test_cancelled_deliveries_never_break_the_others(app):
    """An SMTP client that disconnects mid-delivery cancels its task; the group commit it shared
    with others must still succeed for them, and files and index must agree."""
    acc = await person(app)
    async with app.store.pool.use(acc) as handle:
        async with handle.lock:  # hold the account busy so the deliveries queue for one group commit
            tasks = [asyncio.create_task(app.store.deliver(acc, message(token=str(i)))) for i in range(20)]
            for _ in range(500):
                if len(handle.pending) == len(tasks):
                    break
                await asyncio.sleep(0.01)
            assert len(handle.pending) == len(tasks)
            for t in tasks[::4]:
                t.cancel()
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for i, r in enumerate(results):
        if i % 4 == 0:
            assert isinstance(r, asyncio.CancelledError)  # its caller is gone...
        else:
            assert isinstance(r, Stored), r
    await handle.drained()
    s = await app.store.session(acc)
    assert len(await s.uids("INBOX")) == 20  # ...but the message was stored: SMTP will get it again
    drift = await app.store.recalc(acc)
    assert (drift.drift_bytes, drift.drift_messages) == (0, 0)


async def test_a_delivery_in_progress_with_an_old_internal_date_is_not_cleaned_away(app):
    """APPEND of old mail (Đ8.2.d migration, a client copying an archive) writes its tmp/ file with the
    internal date as mtime, years ago: the abandoned-file sweep must go by the inode change time."""
    acc = await person(app)
    await app.store.deliver(acc, message(token="first"))
    root = app.store.mailbox_path(acc)
    inflight = root / "tmp" / "1400000000.M1P1Q1.inflight"
    inflight.write_bytes(b"Subject: 2014\r\n\r\nold mail being appended\r\n")
    os.utime(inflight, (1_400_000_000, 1_400_000_000))
    (root / "new" / "1800000000.P98.other").write_bytes(message(token="dropped"))  # makes the store rescan
    s = await app.store.session(acc)
    snap = await s.snapshot("INBOX")
    assert len(snap.messages) == 2
    assert inflight.exists()
