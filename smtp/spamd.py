"""The one way to reach SpamAssassin's spamd (Đ8.2.b): score, report, learn, ping.

Built on `aiospamc` (asyncio, maintained; COMPONENTS.md): it speaks the
SPAMC/1.5 protocol, so this module only adds what the mail server needs on
top — one timeout for the whole request, one exception
(`SpamdUnavailable`) for every way of not getting an answer, and typed
results:

* `score()` uses SYMBOLS: the score and the names of the rules that fired,
  for the SMTP checks, the headers and the mail log;
* `report()` uses REPORT: each rule with its points and description, for
  `mailserver spam check FILE`;
* `learn()` uses TELL with `Set: local` — exactly what `spamc -L spam|ham`
  sends — so spamd must run with `--allow-tell` (`-l`).

No `User:` header is sent: the province uses one global Bayes database (the
one of the user spamd runs as), see the README's design notes.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import aiospamc
from aiospamc.exceptions import ClientException, TimeoutException
from aiospamc.responses import ResponseException

from smtp.daemons import DaemonAddress


class SpamdUnavailable(Exception):
    """spamd gave no answer: not running, refused, too slow, or an error reply."""


@dataclass(frozen=True)
class Score:
    score: float
    rules: tuple[str, ...]
    # spamd's own required_score; ours are in policy.yaml (spam.junk ...), this is for reports only
    required: float = 5.0


@dataclass(frozen=True)
class RuleHit:
    points: float
    name: str
    description: str


@dataclass(frozen=True)
class Report:
    score: float
    required: float
    rules: list[RuleHit] = field(default_factory=list)


# "pts rule name description" lines of a SpamAssassin report, e.g. " 2.7 DEAR_FRIEND  BODY: Dear Friend? ..."
_RULE_LINE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)\s*(.*)$")


def parse_report(text: str) -> list[RuleHit]:
    """The rules table at the end of a REPORT body; continuation lines extend the description."""
    hits: list[RuleHit] = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("----"):
            in_table = True
            continue
        if not in_table or not line.strip():
            continue
        m = _RULE_LINE.match(line)
        if m:
            hits.append(RuleHit(float(m.group(1)), m.group(2), m.group(3).strip()))
        elif hits and line[:1].isspace():
            last = hits[-1]
            hits[-1] = RuleHit(last.points, last.name, f"{last.description} {line.strip()}".strip())
    return hits


class SpamdClient(DaemonAddress):
    def _where(self) -> dict[str, object]:
        if not self.configured:
            raise SpamdUnavailable("spamd is not configured (spamd.socket, or spamd.host and spamd.port)")
        if self.socket is not None:
            return {"socket_path": self.socket}
        return {"host": self.host, "port": self.port}

    async def _call(self, what: str, fn: object, *args: object, **kwargs: object) -> aiospamc.responses.Response:
        """One request with one overall timeout; every failure becomes SpamdUnavailable."""
        where = self._where()
        try:
            return await asyncio.wait_for(
                fn(*args, **where, timeout=aiospamc.Timeout(total=self.timeout), **kwargs),  # type: ignore[operator]
                self.timeout + 1,
            )
        except (TimeoutError, TimeoutException):
            raise SpamdUnavailable(f"spamd at {self.address} did not answer {what} within {self.timeout:g} s") \
                from None
        except ResponseException as e:
            raise SpamdUnavailable(f"spamd at {self.address} refused {what}: {e}") from None
        except (ClientException, OSError) as e:
            cause = e.__cause__ or e  # aiospamc wraps the OSError that says why
            raise SpamdUnavailable(f"spamd at {self.address} is unreachable ({cause.__class__.__name__}: "
                                   f"{getattr(cause, 'strerror', None) or cause})") from None

    async def score(self, message: bytes) -> Score:
        """SYMBOLS: the score and the rules that fired."""
        r = await self._call("SYMBOLS", aiospamc.symbols, message)
        spam = r.headers.spam
        if spam is None:
            raise SpamdUnavailable(f"spamd at {self.address} answered SYMBOLS without a Spam header")
        names = tuple(n.strip() for n in r.body.decode("ascii", "replace").split(",") if n.strip())
        return Score(float(spam.score), names, float(spam.threshold))

    async def report(self, message: bytes) -> Report:
        """REPORT: every rule with its points and description (what an operator reads)."""
        r = await self._call("REPORT", aiospamc.report, message)
        spam = r.headers.spam
        if spam is None:
            raise SpamdUnavailable(f"spamd at {self.address} answered REPORT without a Spam header")
        return Report(float(spam.score), float(spam.threshold), parse_report(r.body.decode("utf-8", "replace")))

    async def learn(self, message: bytes, *, spam: bool) -> bool:
        """`spamc -L spam|ham`: TELL with Message-class and `Set: local`. True when spamd says it
        learned (a message already learned the same way is not counted again)."""
        r = await self._call("TELL", aiospamc.tell, message, "spam" if spam else "ham", set_action="local")
        did = r.headers.get("DidSet")  # absent when the message was learned this way before
        return bool(did is not None and getattr(getattr(did, "action", None), "local", False))

    async def ping(self) -> bool:
        try:
            await self._call("PING", aiospamc.ping)
        except SpamdUnavailable:
            return False
        return True
