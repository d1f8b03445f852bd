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

AFTER_LOGIN = (
    "IDLE",  # RFC 2177
    "NAMESPACE",  # RFC 2342
    "UNSELECT",  # RFC 3691
    "UIDPLUS",  # RFC 4315: APPENDUID, COPYUID, UID EXPUNGE
    "MOVE",  # RFC 6851
    "CHILDREN",  # RFC 3348
    "LIST-EXTENDED",  # RFC 5258
    "LIST-STATUS",  # RFC 5819
    "SPECIAL-USE",  # RFC 6154
    "CREATE-SPECIAL-USE",  # RFC 6154 §3
    "QUOTA",  # RFC 9208
    "QUOTA=RES-STORAGE",
    "CONDSTORE",  # RFC 7162
    "QRESYNC",
    "ESEARCH",  # RFC 4731
    "WITHIN",  # RFC 5032: SEARCH OLDER/YOUNGER
    "STATUS=SIZE",  # RFC 8438
    "BINARY",  # RFC 3516
    "UTF8=ACCEPT",  # RFC 6855
)


def for_session(s: Session) -> list[str]:
    caps = list(ALWAYS)
    if s.state == State.not_authenticated:
        if not s.conn.is_tls and s.server.ssl_context is not None:
            caps.append("STARTTLS")
        # RFC 3501 §6.2.3 / RFC 4616 §4: no cleartext passwords on an unencrypted connection.
        caps.append("AUTH=PLAIN" if s.login_allowed else "LOGINDISABLED")
        return caps
    caps.extend(AFTER_LOGIN)
    caps.append(f"APPENDLIMIT={s.server.append_limit}")  # RFC 7889: the SMTP SIZE limit
    return caps
