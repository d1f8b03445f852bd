"""The index is a cache (Dovecot's rule): lose it, corrupt it, rebuild it — UIDs, UIDVALIDITY, flags,
keywords, subscriptions and special use stay exactly as they were."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from mailserver.app import App
from policy.loader import load
from storage.index import INDEX_NAME
from tests.helpers import cli_json
from tests.mailhelpers import message, person


async def build_mailbox(app):
    """Folders (nested, Vietnamese, dotted), flags, keywords, copies, moves, expunges, a rename."""
    acc = await person(app)
    s = await app.store.session(acc)
    await s.create_folder("Dự án/Năm 2026")
    await s.create_folder("v1.0", special_use="\\Archive")
    for i in range(30):
        await app.store.deliver(acc, message(f"Thư {i}", f"nội dung {i}", token=f"m{i}"))
    for i in range(8):
        await app.store.deliver(acc, message(f"Dự án {i}", token=f"p{i}"), folder="Dự án/Năm 2026",
                                flags={"\\Seen", "$Important"} if i % 2 else {"Khẩn"})
    await s.append("Drafts", message("Nháp cũ", token="d1"), flags={"\\Draft"},  # INTERNALDATE years back
                   internal_date=datetime(2019, 5, 17, 1, 30, tzinfo=UTC))
    await s.store_flags("INBOX", range(1, 11), ["\\Seen"])
    await s.store_flags("INBOX", [3, 4, 5], ["\\Flagged", "$Forwarded", "Công_văn"])
    await s.store_flags("INBOX", [7], ["\\Answered", "$Label1"])
    await s.copy("INBOX", [3, 4], "Archive")
    await s.move("INBOX", [5, 6], "Dự án/Năm 2026")
    await s.store_flags("INBOX", [28, 29, 30], ["\\Deleted"])  # the highest UIDs go: UIDNEXT must not drop
    await s.expunge("INBOX")
    await s.rename_folder("Dự án", "Công việc")
    await s.subscribe("Công việc/Năm 2026")
    await s.subscribe("Junk", False)
    return acc


async def restart_without_index(app, acc, config_file, clock):
    """Stop, delete the account's index (database, WAL, shared memory), start again."""
    root = app.store.mailbox_path(acc)
    await app.close()
    for suffix in ("", "-wal", "-shm"):
        (root / (INDEX_NAME + suffix)).unlink(missing_ok=True)
    app = await App.open(loaded=load(config_file), clock=clock)
    return app, await app.directory.require_account(acc.address)


async def state_of(app, acc):
    s = await app.store.session(acc)
    out = {"folders": [(f.name, f.special_use, f.subscribed, f.selectable) for f in await s.list_folders()]}
    for f in await s.list_folders():
        if f.selectable:
            snap = await s.snapshot(f.name)
            metas = await s.metadata(f.name, [u for u, _, _ in snap.messages])
            out[f.name] = (snap.uidvalidity, snap.uidnext, snap.messages and [(u, fl) for u, fl, _ in snap.messages],
                           sorted(snap.keywords), [(m.uid, m.size, m.internal_date) for m in metas])
    u = await app.store.usage(acc)
    out["usage"] = (u.bytes, u.messages)
    return out


async def test_lost_index_is_rebuilt_with_identical_uids_flags_keywords(config_file, clock):
    app = await App.open(loaded=load(config_file), clock=clock)
    acc = await build_mailbox(app)
    before = await state_of(app, acc)
    highest = (await (await app.store.session(acc)).status("INBOX")).highestmodseq
    app, acc = await restart_without_index(app, acc, config_file, clock)
    try:
        after = await state_of(app, acc)
        assert after == before
        s = await app.store.session(acc)
        assert before["INBOX"][1] == 31 and [m[0] for m in (await s.snapshot("INBOX")).messages][-1] == 27
        status = await s.status("INBOX")
        assert status.highestmodseq > highest  # CONDSTORE clients see newer MODSEQs, never older ones
        ch = await s.changes_since("INBOX", highest)
        assert not ch.expunged_exact and {28, 29, 30, 5, 6} <= set(ch.expunged)
        assert await s.search_text("INBOX", "noi dung 12", "body") == {13}  # text index rebuilt too
        # and it keeps working: the next UID follows the old ones
        assert (await app.store.deliver(acc, message())).uid == 31
    finally:
        await app.close()


async def test_corrupt_index_is_set_aside_and_rebuilt(config_file, clock):
    app = await App.open(loaded=load(config_file), clock=clock)
    acc = await build_mailbox(app)
    before = await state_of(app, acc)
    root = app.store.mailbox_path(acc)
    await app.close()
    for suffix in ("-wal", "-shm"):
        (root / (INDEX_NAME + suffix)).unlink(missing_ok=True)
    (root / INDEX_NAME).write_bytes(b"this is not an SQLite database" * 100)

    app = await App.open(loaded=load(config_file), clock=clock)
    try:
        assert await state_of(app, await app.directory.require_account(acc.address)) == before
        assert [n for n in os.listdir(root) if n.startswith(INDEX_NAME + ".corrupt-")]
    finally:
        await app.close()


async def test_reindex_command_keeps_everything(config_file, clock):
    app = await App.open(loaded=load(config_file), clock=clock)
    try:
        acc = await build_mailbox(app)
        before = await state_of(app, acc)
        result = cli_json(config_file, "reindex", acc.address)  # another process, while this one runs
        assert result == [{"address": acc.address, "folders": 9, "messages": before["usage"][1],
                           "bytes": before["usage"][0], "seconds": result[0]["seconds"]}]
        assert await state_of(app, acc) == before
    finally:
        await app.close()


async def test_a_torn_uidlist_line_does_not_cost_the_next_message_its_uid(config_file, clock):
    """A crash or a full disk can leave dovecot-uidlist ending in half a line; the next UID must
    still be recorded on a line of its own, so a rebuild gives every message the UID it had."""
    app = await App.open(loaded=load(config_file), clock=clock)
    acc = await person(app)
    for i in range(2):
        await app.store.deliver(acc, message(token=f"t{i}"))
    root = app.store.mailbox_path(acc)
    with open(root / "dovecot-uidlist", "ab") as fh:
        fh.write(b"3 :17000")  # an append cut short: no base name, no newline
    st = await app.store.deliver(acc, message(token="after"))
    assert st.uid == 3
    app, acc = await restart_without_index(app, acc, config_file, clock)
    try:
        s = await app.store.session(acc)
        assert await s.uids("INBOX") == [1, 2, 3]
        assert await s.read("INBOX", 3) == message(token="after")
        assert (await app.store.deliver(acc, message(token="next"))).uid == 4
    finally:
        await app.close()
