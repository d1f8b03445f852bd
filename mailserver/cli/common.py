"""What every CLI command shares: options, the App, output, errors.

Operators read tables; scripts read `--json`. Every refusal is one line on
stderr naming the field (`error: birth: "1979-13" is not a birth date`) with
exit status 1, and nothing is changed.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import io
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from mailserver.app import App
from policy.errors import ValidationFailed
from policy.loader import Loaded, load
from policy.units import format_size, parse_size

Handler = Callable[["Context", argparse.Namespace], Awaitable[int | None]]


def common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the command (`mailserver --json account list` or
    `mailserver account list --json`). SUPPRESS keeps a subcommand from resetting them."""
    p = argparse.ArgumentParser(add_help=False)
    s = argparse.SUPPRESS
    p.add_argument("--config", default=s, help="mailserver.yaml (default: $MAILSERVER_CONFIG, "
                   "then /etc/mailserver/mailserver.yaml, then built-in defaults)")
    p.add_argument("--json", action="store_true", default=s, help="print JSON for scripts")
    p.add_argument("--now", default=s, metavar="DATETIME",
                   help="simulated current time, e.g. 2027-06-30T08:00 (policy time zone)")
    p.add_argument("--actor", default=s, help="operator name recorded in the audit log")
    return p


@dataclass
class Context:
    args: argparse.Namespace
    _app: App | None = None
    _loaded: Loaded | None = None
    extra_closers: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    @property
    def actor(self) -> str:
        name = getattr(self.args, "actor", None) or os.environ.get("MAILSERVER_ACTOR")
        if not name:
            name = os.environ.get("SUDO_USER") or getpass.getuser()
        return f"cli:{name}"

    @property
    def loaded(self) -> Loaded:
        if self._loaded is None:
            self._loaded = load(getattr(self.args, "config", None))
        return self._loaded

    def now(self) -> datetime:
        """`--now` in the policy's time zone, or the real clock."""
        from policy.calendar import utc_now

        text = getattr(self.args, "now", None)
        if not text:
            return utc_now()
        return parse_moment(text, self.loaded.policy.tz, "now")

    async def app(self) -> App:
        if self._app is None:
            if getattr(self.args, "now", None):
                fixed = self.now()
                self._app = await App.open(loaded=self.loaded, clock=lambda: fixed)
            else:
                self._app = await App.open(loaded=self.loaded)
        return self._app

    async def close(self) -> None:
        if self._app is not None:
            await self._app.close()


def parse_moment(text: str, tz: Any, field_name: str) -> datetime:
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time(0, 0))
        else:
            moment = datetime.fromisoformat(text.replace(" ", "T"))
    except ValueError:
        raise ValidationFailed(field_name, f'"{text}" is not a date-time (use 2027-06-30T08:00)') from None
    return moment if moment.tzinfo else moment.replace(tzinfo=tz)


def served_domain(domains: Sequence[str], text: str | None, field_name: str = "domain") -> str:
    """A domain named on the command line, which must be one this server serves (None: the primary)."""
    domain = (text or domains[0]).strip().rstrip(".").lower()
    if domain not in domains:
        raise ValidationFailed(field_name, f'"{domain}" is not a domain this server serves ({", ".join(domains)})')
    return domain


def parse_day(text: str, field_name: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValidationFailed(field_name, f'"{text}" is not a date (use YYYY-MM-DD)') from None


def parse_quota(text: str, field_name: str = "quota") -> int:
    try:
        return parse_size(text)
    except ValueError as e:
        raise ValidationFailed(field_name, str(e)) from None


def read_password(args: argparse.Namespace) -> str | None:
    """--password P, or --password-stdin (keeps it out of `ps` and shell history)."""
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        return line.rstrip("\r\n")
    return getattr(args, "password", None)


def open_csv(path: Path, field_name: str) -> csv.DictReader[str]:
    """A sheet saved as CSV (UTF-8, with or without the BOM Excel writes); errors name the field."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValidationFailed(field_name, f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ValidationFailed(field_name, f"{path}: not UTF-8 (save the sheet as CSV UTF-8)") from None
    except (IsADirectoryError, PermissionError) as e:
        raise ValidationFailed(field_name, f"{path}: cannot read it ({e.strerror})") from None
    return csv.DictReader(io.StringIO(text))


def out(ctx: Context, data: Any, human: str | Callable[[], str]) -> None:
    if ctx.json:
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print(human() if callable(human) else human)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, v in enumerate(row):
            widths[i] = max(widths[i], len(v))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
    return "\n".join(lines)


def pairs(items: Sequence[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(width)}  {'' if v is None else v}" for k, v in items)


def size(n: int | None) -> str:
    return "" if n is None else format_size(n)
