"""Command outcomes: how a handler says NO, and what a tagged OK carries.

Handlers raise `No` for a failure the client should show or act on (with an
RFC 5530 response code), let `ParseError` propagate for `BAD`, and return
an `Ok` (or plain text) for success; the session writes the tagged line.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class No(Exception):
    code: str | None
    text: str
    status: str = "NO"  # "BAD" for a state error found after parsing

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Ok:
    text: str = "done"
    code: str | None = None


# A handler that wrote its own tagged reply (STARTTLS must answer before the handshake).
REPLIED = Ok("(already sent)")


def line(tag: str, status: str, text: str, code: str | None = None) -> bytes:
    body = f"[{code}] {text}" if code else text
    return f"{tag} {status} {body}\r\n".encode()
