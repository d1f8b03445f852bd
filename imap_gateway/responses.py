"""Command outcomes: how a handler says NO, and what a tagged OK carries.

Handlers raise `No` for a failure the client should show or act on (with an
RFC 5530 response code), let `ParseError` propagate for `BAD`, and return
an `Ok` (or plain text) for success; the session writes the tagged line.
"""

from __future__ import annotations

from dataclasses import dataclass

from policy.errors import Conflict, MailserverError, NotFound, ValidationFailed


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


# The store's refusals (storage.errors), by class name so this module needs no
# storage import; their base classes catch anything newer.
_CODES = {
    "OverQuota": "OVERQUOTA",  # RFC 9208 §5.3 / RFC 5530
    "FolderNotFound": "NONEXISTENT",
    "FolderExists": "ALREADYEXISTS",
    "KeywordLimit": "LIMIT",
    "MessageNotFound": "EXPUNGEISSUED",
    "StoreUnavailable": "UNAVAILABLE",
}


def refusal(e: MailserverError) -> No:
    """A store or policy refusal as `NO [CODE] message` (RFC 5530 codes)."""
    code = _CODES.get(type(e).__name__)
    if code is None:
        if isinstance(e, NotFound):
            code = "NONEXISTENT"
        elif isinstance(e, Conflict):
            code = "ALREADYEXISTS"
        elif isinstance(e, ValidationFailed):
            code = "CANNOT"
    return No(code, e.message)
