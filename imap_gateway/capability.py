"""What the server advertises, before and after login.

An extension is listed here only once its commands work end to end (each
has a test file driving it). Before login we list what a client needs to
log in (like Dovecot); the full list comes with the login's `OK
[CAPABILITY ...]` (RFC 3501 §7.1, RFC 9051 §7.1.2), which Thunderbird and
imaplib both read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from imap_gateway.commands import State

if TYPE_CHECKING:
    from imap_gateway.session import Session

ALWAYS = (
    "IMAP4rev1",
    "LITERAL+",  # RFC 7888: {n+} without waiting for "+"
    "SASL-IR",  # RFC 4959: AUTHENTICATE PLAIN with the initial response on the command line
    "ID",  # RFC 2971
    "ENABLE",  # RFC 5161
)

AFTER_LOGIN: tuple[str, ...] = ()


def for_session(s: Session) -> list[str]:
    caps = list(ALWAYS)
    if s.state == State.not_authenticated:
        if not s.conn.is_tls and s.server.ssl_context is not None:
            caps.append("STARTTLS")
        # RFC 3501 §6.2.3 / RFC 4616 §4: no cleartext passwords on an unencrypted connection.
        caps.append("AUTH=PLAIN" if s.login_allowed else "LOGINDISABLED")
        return caps
    caps.extend(AFTER_LOGIN)
    return caps
