"""Đ5.3.b: a revoked mailbox is archived, not deleted — a verified tar.gz with a manifest; the live
mailbox goes only after verification; `account purge-archive` after the keeping period; the address is
not reused before its period."""

from __future__ import annotations

import hashlib
import json
import tarfile
from datetime import date

import pytest

import storage.archive as archive_mod
from policy.errors import Conflict
from policy.naming import UnitKind
from storage.archive import ArchiveError, verify
from storage.archives import ArchiveRecords
from storage.directory import PersonRequest
from storage.maildir import folder_dirname
from tests.mailhelpers import message
from tests.ops_support import PW, local, person, run_at
from tests.ops_support import run as cli
from tests.ops_support import run_json as cli_json


async def filled(app, name: str = "Nguyễn Văn An"):  # type: ignore[no-untyped-def]
    acc = await person(app, name, "pnv")
    s = await app.store.session(acc)
    await s.create_folder("Dự án/2026")
    await app.store.deliver(acc, message(subject="Báo cáo", token="1"))
    await app.store.deliver(acc, message(subject="Kế hoạch", token="2", size=40_000), folder="Dự án/2026")
    await app.store.deliver(acc, message(subject="Nháp", token="3"), folder="Drafts", flags={"\\Draft"})
    return acc


async def test_d5_3_b_archive_has_a_manifest_with_every_file_and_the_live_mailbox_goes(app, clock):
    clock.now = local(date(2026, 12, 1))
    await app.directory.add_unit("Phòng Nội vụ", UnitKind.department, abbrev="pnv", actor="t")
    acc = await filled(app)
    root = app.store.mailbox_path(acc)
    await app.directory.retire(acc.address, date(2026, 12, 1), actor="t")
    await run_at(app, clock, local(date(2026, 12, 1), 9))  # the lock notice
    files = {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in root.rglob("*") if p.is_file() and not p.name.startswith("mailserver.index")
             and "/tmp/" not in f"/{p.relative_to(root).as_posix()}"}
    report = await run_at(app, clock, local(date(2027, 6, 1), 0, 10))
    assert report.failed == 0
    (entry,) = await ArchiveRecords(app.directory, clock).list()
    assert entry.path.name == f"nguyenvanan~{acc.id}-20270601.tar.gz"
    assert entry.path.parent == app.settings.paths.archive_dir / "phuyen.gov.vn"
    assert not root.exists() and not app.store.has_mailbox(acc)
    assert oct(entry.path.stat().st_mode & 0o777) == "0o600"
    manifest = json.loads(entry.manifest_path.read_text(encoding="utf-8"))
    assert manifest["format"] == "phuyen-mailserver-archive/1"
    assert {f["path"]: f["sha256"] for f in manifest["files"]} == files  # every file, hashed
    assert manifest["messages"] == 4  # 3 delivered + the Đ5.3.b lock notice
    assert manifest["account"]["address"] == acc.address and manifest["account"]["unit"] == "pnv@phuyen.gov.vn"
    assert manifest["dates"]["revoked_on"] == "2027-06-01" and manifest["dates"]["purge_after"] == "2032-06-01"
    assert set(manifest["folders"]) == {"", folder_dirname("Dự án/2026"), ".Drafts"}
    with tarfile.open(entry.path) as tar:
        inside = json.loads(tar.extractfile("manifest.json").read())
        assert inside == manifest and all(n == "manifest.json" or n.startswith("mailbox/") for n in tar.getnames())
    assert entry.sha256 == hashlib.sha256(entry.path.read_bytes()).hexdigest()
    verify(entry.path)


async def test_verify_detects_a_damaged_archive(app, clock, tmp_path):
    await app.directory.add_unit("Phòng Nội vụ", UnitKind.department, abbrev="pnv", actor="t")
    acc = await filled(app)
    result = archive_mod.archive_mailbox(app.store.mailbox_path(acc), tmp_path / "a.tar.gz", {"address": "x"}, {})
    manifest = result.manifest
    manifest.files[0] = archive_mod.ArchivedFile(manifest.files[0].path, manifest.files[0].size, "0" * 64,
                                                 manifest.files[0].message)
    with pytest.raises(ArchiveError, match="differs from the manifest"):
        verify(result.path, manifest)
    data = bytearray(result.path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    result.path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError):
        verify(result.path)


async def test_the_mailbox_stays_when_the_archive_does_not_verify_and_the_next_run_retries(app, clock, monkeypatch):
    clock.now = local(date(2026, 12, 1))
    await app.directory.add_unit("Phòng Nội vụ", UnitKind.department, abbrev="pnv", actor="t")
    acc = await filled(app)
    root = app.store.mailbox_path(acc)
    await app.directory.revoke(acc.address, actor="cli:operator")  # by hand: archived by the next run

    def broken(path, manifest=None):  # type: ignore[no-untyped-def]
        raise ArchiveError(f"{path}: disk error while reading back")

    monkeypatch.setattr(archive_mod, "verify", broken)
    report = await run_at(app, clock, local(date(2026, 12, 1), 9))
    (failed,) = [r for r in report.results if r.result == "failed"]
    assert failed.key == f"retirement:revoke:{acc.id}" and "disk error" in failed.detail["error"]
    assert root.is_dir() and app.store.has_mailbox(acc)  # nothing lost
    assert list((app.settings.paths.archive_dir / "phuyen.gov.vn").iterdir()) == []  # no half archive
    monkeypatch.undo()
    retry = await run_at(app, clock, local(date(2026, 12, 1), 10))
    assert [r.result for r in retry.results if r.job == "retirement"] == ["done"]
    assert not root.exists()
    (entry,) = await ArchiveRecords(app.directory, clock).list()
    assert entry.revoked_on == date(2026, 12, 1) and entry.messages == 3


async def test_d5_3_b_purge_archive_only_after_the_keeping_period(app, clock, config_file):
    clock.now = local(date(2026, 12, 1))
    await app.directory.add_unit("Phòng Nội vụ", UnitKind.department, abbrev="pnv", actor="t")
    acc = await filled(app)
    await app.directory.revoke(acc.address, actor="t")
    await run_at(app, clock, local(date(2026, 12, 1), 9))
    (entry,) = await ArchiveRecords(app.directory, clock).list()
    # the operator's commands below open the same files, as from another process

    listed = cli_json(config_file, "--now", "2031-11-30T10:00", "account", "archives")
    assert [(a["address"], a["purge_after"], a["due"]) for a in listed] == [(acc.address, "2031-12-01", False)]
    early = cli(config_file, "--now", "2031-11-30T10:00", "account", "purge-archive", "nguyenvanan")
    assert early.returncode == 1
    assert early.stderr.strip() == (
        "error: address: the archive of nguyenvanan@phuyen.gov.vn is kept until 2031-11-30 "
        "(retirement.archive_keep 5 years after revocation, Đ5.3.b)")
    assert entry.path.exists()
    dry = cli_json(config_file, "--now", "2031-12-01T10:00", "account", "purge-archive", "--due", "--dry-run")
    assert [a["address"] for a in dry] == [acc.address] and entry.path.exists()
    cli(config_file, "--now", "2031-12-01T10:00", "account", "purge-archive", "nguyenvanan", check=True)
    assert not entry.path.exists() and not entry.manifest_path.exists()
    assert cli_json(config_file, "account", "archives") == []
    (row,) = cli_json(config_file, "account", "archives", "--all")
    assert row["purged_by"] == "cli:test-operator"
    audit = cli_json(config_file, "audit", "list", "--target", "nguyenvanan")
    assert [e["action"] for e in audit[:2]] == ["account.purge-archive", "account.archive"]
    assert audit[0]["rule"].startswith("Đ5.3.b")
    missing = cli(config_file, "account", "purge-archive", "nobody")
    assert missing.returncode == 1 and "no archive of nobody@phuyen.gov.vn" in missing.stderr


async def test_d5_3_b_a_revoked_address_is_not_reused_before_its_period(app, clock):
    clock.now = local(date(2026, 12, 1))
    await app.directory.add_unit("Phòng Nội vụ", UnitKind.department, abbrev="pnv", actor="t")
    old = await filled(app)
    await app.directory.retire(old.address, date(2026, 12, 1), actor="t")
    await run_at(app, clock, local(date(2027, 6, 1), 1))  # revoked on 1/6/2027
    new_person = PersonRequest(name="Nguyễn Văn An", unit="pnv", password=PW, address="nguyenvanan")
    clock.now = local(date(2028, 5, 31), 23, 59)
    with pytest.raises(Conflict, match="already taken"):
        await app.directory.add_person(new_person, actor="t")
    clock.now = local(date(2028, 6, 1), 0, 1)  # 12 months (retirement.address_reuse_after)
    created = await app.directory.add_person(new_person, actor="t")
    assert created.account.address == old.address and created.account.id != old.id
    # the new person's mailbox is a new, empty one: the old mail is only in the archive
    assert app.store.mailbox_path(created.account) != app.store.mailbox_path(old)
    assert (await app.store.usage(created.account)).messages == 0
    (entry,) = await ArchiveRecords(app.directory, clock).of_account(old.id)
    assert entry.address == old.address
