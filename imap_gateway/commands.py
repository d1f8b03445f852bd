"""The command table: which handler runs a command, in which states (RFC 3501 §3, §6).

Each command module registers its handlers with `@command`; `session.py`
imports them all. Keeping the states next to the handler makes "is this
command allowed before login?" a one-line answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imap_gateway.parse import Parser
    from imap_gateway.responses import Ok
    from imap_gateway.session import Session


class State(Enum):
    not_authenticated = "not authenticated"
    authenticated = "authenticated"
    selected = "selected"
    logout = "logout"


ANY = frozenset({State.not_authenticated, State.authenticated, State.selected})
NOT_AUTH = frozenset({State.not_authenticated})
AUTH = frozenset({State.authenticated, State.selected})
SELECTED = frozenset({State.selected})

Handler = Callable[["Session", str, "Parser"], Awaitable["Ok | str | None"]]


@dataclass(frozen=True)
class Command:
    name: str
    handler: Handler
    states: frozenset[State]
    # RFC 3501 §7.4.1: no untagged EXPUNGE while answering FETCH, STORE or SEARCH
    # (message numbers the client just used must stay valid); UID forms may get them.
    expunge_ok: bool = True


COMMANDS: dict[str, Command] = {}


def command(name: str, states: frozenset[State], *, expunge_ok: bool = True) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        COMMANDS[name] = Command(name, fn, states, expunge_ok)
        return fn

    return register


UidHandler = Callable[["Session", str, "Parser", bool], Awaitable["Ok | str | None"]]


def uid_pair(name: str, states: frozenset[State], *, expunge_ok: bool = True) -> Callable[[UidHandler], UidHandler]:
    """Register NAME and UID NAME (RFC 3501 §6.4.8) with one handler that takes `uid`.

    `expunge_ok` is for the message-number form; the UID form may always
    receive EXPUNGE responses.
    """

    def register(fn: UidHandler) -> UidHandler:
        async def by_number(s: Session, tag: str, p: Parser) -> Ok | str | None:
            return await fn(s, tag, p, False)

        async def by_uid(s: Session, tag: str, p: Parser) -> Ok | str | None:
            return await fn(s, tag, p, True)

        COMMANDS[name] = Command(name, by_number, states, expunge_ok)
        COMMANDS["UID " + name] = Command("UID " + name, by_uid, states, True)
        return fn

    return register


# Commands that may refuse a literal before the client sends it (APPEND: quota,
# size; RFC 3501 §7.5 lets the server answer NO instead of "+").
LiteralCheck = Callable[["Session", bytes, int], Awaitable[bytes | None]]
LITERAL_CHECKS: dict[str, LiteralCheck] = {}
