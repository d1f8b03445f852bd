"""Where mail clients connect: one list for autoconfig, autodiscover, DNS SRV records and the account page.

Every place that tells a client (or an operator writing DNS) which host and
port to use reads it from here, so the four can never disagree with each
other or with `listeners:` in mailserver.yaml. Implicit TLS comes before
STARTTLS for each protocol, as RFC 8314 §3 recommends for mail submission
and access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from policy.settings import Settings

Security = Literal["SSL", "STARTTLS"]  # the words Thunderbird's autoconfig uses


@dataclass(frozen=True)
class Endpoint:
    listener: str  # key in `listeners:` (imaps, imap, submissions, submission)
    kind: Literal["imap", "smtp"]
    host: str
    port: int
    security: Security

    @property
    def implicit_tls(self) -> bool:
        return self.security == "SSL"


# (listener, protocol, security), in order of preference within each protocol.
CLIENT_LISTENERS: tuple[tuple[str, Literal["imap", "smtp"], Security], ...] = (
    ("imaps", "imap", "SSL"),
    ("imap", "imap", "STARTTLS"),
    ("submissions", "smtp", "SSL"),
    ("submission", "smtp", "STARTTLS"),
)


def client_endpoints(settings: Settings) -> list[Endpoint]:
    """The enabled client listeners under the public host name."""
    out = []
    for name, kind, security in CLIENT_LISTENERS:
        listener = getattr(settings.listeners, name)
        if listener.enabled:
            out.append(Endpoint(name, kind, settings.hostname, listener.port, security))
    return out


def preferred(settings: Settings, kind: Literal["imap", "smtp"]) -> Endpoint | None:
    """The one endpoint of a protocol for clients that take a single server (Outlook)."""
    return next((e for e in client_endpoints(settings) if e.kind == kind), None)
