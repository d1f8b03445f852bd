"""The operators' view of the store: mailboxes for new accounts, `account show` usage (Đ7.3),
`quota show|recalc` and `reindex`, run as subprocesses against the files a server uses."""

from __future__ import annotations

import asyncio
import os

from mailserver.app import App
from policy.loader import load
from tests.helpers import cli, cli_json
from tests.mailhelpers import PW, message


def deliver(config, address: str, *messages: bytes, folder: str = "INBOX") -> None:
    async def go() -> None:
        app = await App.open(loaded=load(config))
        try:
            acc = await app.directory.require_account(address)
            for m in messages:
                await app.store.deliver(acc, m, folder=folder)
        finally:
            await app.close()

    asyncio.run(go())


def mailbox(config, address: str) -> str:
    return cli_json(config, "account", "show", address)["mailbox"]


def test_every_way_of_adding_accounts_creates_the_mailbox(initialised, tmp_path):
    c = initialised
    assert os.path.isdir(os.path.join(mailbox(c, "stttt"), "cur"))  # `init`: the operators' unit
    cli(c, "account", "add", "--name", "Nguyễn Văn A", "--password", PW, check=True)
    cli(c, "unit", "add", "Tuy Hòa", "--kind", "district", check=True)
    rows = tmp_path / "people.csv"
    rows.write_text("name,birth,unit,role\nTrần Thị B,1980-01,tuyhoa,staff\nLê Văn C,,tuyhoa,leader\n",
                    encoding="utf-8")
    cli(c, "account", "import", str(rows), check=True)
    for address in ("nguyenvana", "tuyhoa", "tranthib", "levanc"):
        root = mailbox(c, address)
        assert os.path.basename(root).startswith(address + "~")
        assert os.path.dirname(root).endswith(os.path.join("data", "mail", "phuyen.gov.vn"))
        for folder in ("", ".Sent", ".Drafts", ".Trash", ".Junk", ".Archive"):
            assert os.path.isdir(os.path.join(root, folder, "cur")), (address, folder)


def test_account_show_and_quota_show_report_exact_usage(initialised):
    c = initialised
    cli(c, "account", "add", "--name", "Nguyễn Văn A", "--password", PW, check=True)
    msgs = [message(size=10_000), message(size=20_000, token="b")]
    deliver(c, "nguyenvana", *msgs)
    deliver(c, "nguyenvana", message(size=5_000, token="s"), folder="Sent")
    shown = cli_json(c, "account", "show", "nguyenvana")
    assert (shown["usage_bytes"], shown["usage_messages"]) == (35_000, 3)
    human = cli(c, "account", "show", "nguyenvana", check=True).stdout
    assert "usage" in human and "3 messages" in human
    q = cli_json(c, "quota", "show", "nguyenvana")
    assert q["usage_bytes"] == 35_000 and q["quota_bytes"] == 2 * 1024**3
    assert q["folders"][:2] == [{"name": "INBOX", "bytes": 30_000, "messages": 2},
                                {"name": "Sent", "bytes": 5_000, "messages": 1}]


def test_quota_recalc_reports_and_corrects_drift(initialised):
    c = initialised
    cli(c, "account", "add", "--name", "Nguyễn Văn A", "--password", PW, check=True)
    deliver(c, "nguyenvana", message(size=10_000))
    assert cli_json(c, "quota", "recalc", "nguyenvana")[0]["drift_bytes"] == 0
    root = mailbox(c, "nguyenvana")
    # an operator restores a message from a backup straight into cur/, another one is deleted by hand
    with open(os.path.join(root, "cur", "1700000000.M1P1.restored:2,S"), "wb") as fh:
        fh.write(message(size=4_000, token="restored"))
    [report] = cli_json(c, "quota", "recalc", "nguyenvana")
    assert (report["recorded_bytes"], report["disk_bytes"], report["drift_bytes"]) == (10_000, 14_000, 4_000)
    assert report["drift_messages"] == 1
    human = cli(c, "quota", "recalc", check=True).stdout
    assert "no drift in 2 mailboxes" in human  # corrected by the previous run; every mailbox checked
    assert cli_json(c, "account", "show", "nguyenvana")["usage_bytes"] == 14_000


def test_reindex_command(initialised):
    c = initialised
    cli(c, "account", "add", "--name", "Nguyễn Văn A", "--password", PW, check=True)
    deliver(c, "nguyenvana", message(), message(token="2"))
    [r] = cli_json(c, "reindex", "nguyenvana")
    assert (r["address"], r["messages"], r["folders"]) == ("nguyenvana@phuyen.gov.vn", 2, 6)
    assert len(cli_json(c, "reindex", "--all")) == 2
    bad = cli(c, "reindex")
    assert bad.returncode == 1 and bad.stderr.strip() == "error: address: give one ADDRESS, or --all"
    bad = cli(c, "reindex", "ghost")
    assert bad.returncode == 1 and bad.stderr.startswith('error: address: no account "ghost"')
