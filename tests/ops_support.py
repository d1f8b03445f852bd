"""Helpers for the operations tests: simulated days, what landed in a mailbox, mail-log lines."""

from __future__ import annotations

import email
import json
from datetime import date, datetime, time
from email import policy as email_policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mailserver.jobs import JobRunner, RunReport
from policy.model import Policy
from storage.directory import PersonRequest
from storage.records import Account

PW = "Matkhau@123"
TZ = Policy().tz


def local(day: date, hour: int = 8, minute: int = 0) -> datetime:
    """A local (Asia/Ho_Chi_Minh) instant on `day`."""
    return datetime.combine(day, time(hour, minute), tzinfo=TZ)


async def person(app: Any, name: str, unit: str | None = None, **kw: Any) -> Account:
    created = await app.directory.add_person(PersonRequest(name=name, unit=unit, password=PW, **kw), actor="test")
    return created.account


async def run_at(app: Any, clock: Any, moment: datetime, **kw: Any) -> RunReport:
    clock.now = moment
    return await JobRunner(app).run(**kw)


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email_policy.default)  # type: ignore[return-value]


async def messages(app: Any, account: Account, folder: str = "INBOX") -> list[EmailMessage]:
    """Every message in a folder, parsed, in UID order (an archived mailbox has none)."""
    if not app.store.has_mailbox(account):
        return []
    s = await app.store.session(account)
    return [parse(await s.read(folder, uid)) for uid in await s.uids(folder)]


async def subjects(app: Any, account: Account, after_uid: int = 0) -> list[tuple[int, str]]:
    """(uid, subject) of the INBOX messages above `after_uid` (none once the mailbox is archived)."""
    if not app.store.has_mailbox(account):
        return []
    s = await app.store.session(account)
    return [(uid, str(parse(await s.read("INBOX", uid))["Subject"])) for uid in await s.uids("INBOX")
            if uid > after_uid]


def text_of(msg: EmailMessage, lang: str) -> str:
    for part in msg.iter_parts():
        if part["Content-Language"] == lang:
            return part.get_content()  # type: ignore[no-any-return]
    raise AssertionError(f"no {lang} part")


def mail_log(folder: Path, day: date, records: list[dict[str, Any]]) -> Path:
    """A day's mail log as SMTP writes it: one JSON object per line, `mail-YYYY-MM-DD.jsonl`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"mail-{day.isoformat()}.jsonl"
    with path.open("a", encoding="utf-8") as fh:
        for rec in records:
            line = {"time": local(day, 10).isoformat(), **rec}
            fh.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    return path


def inbox(config: Path, address: str) -> list[EmailMessage]:
    """The INBOX of `address`, read with a fresh App (after CLI subprocesses changed things)."""
    import asyncio

    from mailserver.app import App
    from policy.loader import load

    async def read() -> list[EmailMessage]:
        app = await App.open(loaded=load(config))
        try:
            acc = await app.directory.get_account(address)
            assert acc is not None, address
            return await messages(app, acc)
        finally:
            await app.close()

    return asyncio.run(read())


def run(config: Path, *args: str, check: bool = False) -> Any:
    """`mailserver --config CONFIG ARGS...` in this process (the same code as the command, without
    an interpreter start per call: these tests make hundreds of calls). Returns an object with
    returncode, stdout and stderr, like subprocess.run."""
    import asyncio
    import concurrent.futures
    import contextlib
    import io
    import os
    import subprocess

    from mailserver.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("MAILSERVER_ACTOR")
    os.environ["MAILSERVER_ACTOR"] = "test-operator"
    argv = ["--config", str(config), *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                code = main(argv)
            else:  # called from an async test: the command runs its own event loop in a thread
                with concurrent.futures.ThreadPoolExecutor(1) as pool:
                    code = pool.submit(main, argv).result()
    finally:
        if old is None:
            os.environ.pop("MAILSERVER_ACTOR", None)
        else:
            os.environ["MAILSERVER_ACTOR"] = old
    proc = subprocess.CompletedProcess(["mailserver", *args], code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"mailserver {' '.join(args)} failed ({code}):\n{proc.stderr}{proc.stdout}")
    return proc


def run_json(config: Path, *args: str) -> Any:
    return json.loads(run(config, *args, "--json", check=True).stdout)
