"""Đ7.3.c: a warning is put into the mailbox when it nears its quota — once per crossing, in
Vietnamese with an English part, from postmaster@, never refused for quota."""

from __future__ import annotations

import asyncio
import email
from email.policy import default as default_policy

import pytest

from mailserver.app import App
from policy.loader import load
from storage.errors import OverQuota
from storage.mime import decode_words
from tests.helpers import write_config
from tests.mailhelpers import message, person

QUOTA = 1024 * 1024  # policy quota.default for these tests


@pytest.fixture
async def small(tmp_path, clock):
    cfg = write_config(tmp_path, policy="quota:\n  default: 1MiB\n  warn_percent: [90, 95]\n")
    app = await App.open(loaded=load(cfg), clock=clock)
    yield app
    await app.close()


async def raw_notices(app, acc) -> list[bytes]:
    s = await app.store.session(acc)
    return [await s.read("INBOX", meta.uid) for meta in await s.metadata("INBOX", await s.uids("INBOX"))
            if "postmaster@" in (meta.envelope["from"] or "")]


async def notices(app, acc):
    return [email.message_from_bytes(raw, policy=default_policy) for raw in await raw_notices(app, acc)]


async def fill_to(app, acc, percent: float) -> None:
    """Deliver one message that brings usage to `percent` of the quota."""
    used = (await app.store.usage(acc)).bytes
    await app.store.deliver(acc, message(size=int(QUOTA * percent / 100) - used))


async def test_d7_3_c_warning_once_per_threshold_vietnamese_and_english(small):
    app = small
    acc = await person(app)
    await fill_to(app, acc, 50)
    assert await notices(app, acc) == []
    await fill_to(app, acc, 91)
    [first] = await notices(app, acc)
    meta = next(m for m in await (await app.store.session(acc)).metadata("INBOX", [1, 2, 3])
                if "postmaster@" in m.envelope["from"])
    # (decoded by RFC 2047 §6.2 rules; Python's own address parser puts a space between encoded-words)
    assert decode_words(meta.envelope["from"]) == "Hệ thống thư điện tử công vụ tỉnh Phú Yên <postmaster@phuyen.gov.vn>"
    assert first["Subject"].startswith("Cảnh báo: hộp thư đã dùng 90% dung lượng")
    assert "Warning: your mailbox is 90% full" in first["Subject"]
    assert first["Auto-Submitted"] == "auto-generated"
    vi, en = [p for p in first.walk() if p.get_content_type() == "text/plain"]
    assert vi["Content-Language"] == "vi" and en["Content-Language"] == "en"
    vi_text, en_text = vi.get_content(), en.get_content()
    assert "Hộp thư nguyenvana@phuyen.gov.vn đã sử dụng" in vi_text and "điểm c khoản 3 Điều 7" in vi_text
    assert "- INBOX:" in vi_text and '"Trash"' in vi_text  # largest folders, how to free space
    assert "Your mailbox nguyenvana@phuyen.gov.vn is using" in en_text and "Article 7.3.c" in en_text
    [raw] = await raw_notices(app, acc)
    assert b"\r\nSubject: =?utf-8?" in raw and raw.isascii()  # RFC 2047 subject, UTF-8 parts, CRLF
    # more mail between 90% and 95%: no second warning
    await app.store.deliver(acc, message(size=5000))
    assert len(await notices(app, acc)) == 1
    await fill_to(app, acc, 96)
    assert [n["Subject"].split(":")[1].strip()[:12] for n in await notices(app, acc)] == ["hộp thư đã d"] * 2
    assert "95%" in (await notices(app, acc))[1]["Subject"]


async def test_d7_3_c_warning_rearms_only_after_usage_drops_below(small):
    app = small
    acc = await person(app)
    await fill_to(app, acc, 92)
    assert len(await notices(app, acc)) == 1
    s = await app.store.session(acc)
    big = max((await s.metadata("INBOX", await s.uids("INBOX"))), key=lambda m: m.size)
    await s.store_flags("INBOX", [big.uid], ["\\Deleted"])
    await s.expunge("INBOX")  # now far below 90%
    await fill_to(app, acc, 93)
    subjects = [n["Subject"] for n in await notices(app, acc)]
    assert len(subjects) == 2 and all("90%" in x for x in subjects)


async def test_d7_3_c_a_copy_that_crosses_a_threshold_warns_like_a_delivery(small):
    """IMAP COPY grows the mailbox too (hard links are counted in full, as every IMAP quota does)."""
    app = small
    acc = await person(app)
    await fill_to(app, acc, 46)
    s = await app.store.session(acc)
    await s.copy("INBOX", [1], "Archive")  # 46% -> 92%
    assert (await app.store.usage(acc)).percent > 90
    [n] = await notices(app, acc)
    assert "90%" in n["Subject"]
    # re-armed by deleting the copy, crossed again by copying again: a second warning
    await s.store_flags("Archive", [1], ["\\Deleted"])
    await s.expunge("Archive")
    await s.copy("INBOX", [1], "Archive")
    assert [("90%" in x["Subject"]) for x in await notices(app, acc)] == [True, True]
    # moving never grows a mailbox, so it never warns
    await s.move("Archive", [2], "Trash")
    assert len(await notices(app, acc)) == 2


async def test_d7_3_c_one_warning_for_many_concurrent_deliveries(small):
    app = small
    acc = await person(app)
    await fill_to(app, acc, 85)
    await asyncio.gather(*(app.store.deliver(acc, message(size=3000, token=str(i))) for i in range(20)))
    assert (await app.store.usage(acc)).percent > 90
    assert len(await notices(app, acc)) == 1


async def test_d7_3_c_notices_do_not_trigger_themselves_and_are_not_receive_activity(small):
    app = small
    acc = await person(app)
    await app.store.deliver(acc, message(size=int(QUOTA * 0.97)), system=True)
    assert await notices(app, acc) == []  # system mail does not warn...
    fresh = await app.directory.require_account(acc.address)
    assert fresh.last_receive_at is None  # ...and is not receiving activity (Đ6.2.a)
    with pytest.raises(OverQuota):
        await app.store.deliver(acc, message(size=QUOTA))
    await app.store.deliver(acc, message(size=100))
    subjects = [n["Subject"] for n in await notices(app, acc)]
    assert len(subjects) == 1 and "95%" in subjects[0]  # the next real delivery warns, at the highest level
    assert (await app.directory.require_account(acc.address)).last_receive_at is not None


async def test_operator_template_override(tmp_path, clock):
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "quota-warning.txt").write_text(
        "# ours\nSubject: Hộp thư $address sắp đầy ($percent%)\n--- vi\nChào $name, còn $free.\n--- en\nHi.\n",
        encoding="utf-8")
    cfg = write_config(tmp_path, policy="quota:\n  default: 1MiB\n")
    cfg.write_text(cfg.read_text().replace("  data: ../data\n", "  data: ../data\n  templates: ../templates\n"))
    app = await App.open(loaded=load(cfg), clock=clock)
    try:
        acc = await person(app)
        await fill_to(app, acc, 91)
        [n] = await notices(app, acc)
        assert n["Subject"] == "Hộp thư nguyenvana@phuyen.gov.vn sắp đầy (90%)"
        vi = next(p for p in n.walk() if p.get_content_type() == "text/plain")
        assert vi.get_content().startswith("Chào Nguyễn Văn A, còn ")
    finally:
        await app.close()
