"""Sessions, CSRF tokens and security headers of the web service.

Sessions are signed cookies, not server-side rows: production may run more
than one worker process, and nothing shared may live only in one process's
memory. The cookie carries the account id, when it was issued, when it was
last used, its CSRF token and a fingerprint of the account's password hash;
an HMAC-SHA256 with a key kept in the data folder (`web-session.key`, 0600,
created on first start, shared by every worker) makes it tamper-proof.

* Expiry: 15 minutes idle, 8 hours at most, checked against the App's
  clock, so tests can move time.
* A password change anywhere (this page, an operator's reset, a restore)
  changes the hash and so ends every other session of the account.
* Suspension or revocation ends the session at the next request: the
  account's state is read from the directory every time.
* Signing out clears the cookie; a copied cookie stays valid until it
  expires (at most 15 idle minutes), the cost of not keeping server state.

CSRF: every form carries a token that must match the one bound to the
session (or, before sign-in, the one in a separate signed cookie), and a
POST whose `Origin` is another site is refused. Cookies are HttpOnly and
SameSite=Strict, Secure with the `__Host-` prefix when the listener speaks
TLS (plain HTTP is only allowed on loopback, for development).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

SESSION_IDLE = 15 * 60
SESSION_MAX = 8 * 3600
LANG_COOKIE_AGE = 365 * 24 * 3600

# Everything the pages need comes from this origin: no CDN, no inline script or style.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HSTS = "max-age=31536000"


def load_or_create_key(path: Path) -> bytes:
    """32 random bytes, created once (0600) and shared by every worker process."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes()
        if len(key) < 32:
            raise ValueError(f"{path} is shorter than 32 bytes; delete it to create a new one") from None
        return key
    key = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    return key


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    account_id: int
    issued: float
    seen: float
    csrf: str
    pw: str  # fingerprint of the password hash the session was opened with
    flash: str = ""  # a one-time message code shown on the next page


class Signer:
    """HMAC-signed JSON values for cookies, with a purpose so one kind cannot stand in for another."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, purpose: str, body: str) -> str:
        return _b64(hmac.new(self.key, f"{purpose}\0{body}".encode(), hashlib.sha256).digest())

    def sign(self, purpose: str, value: Any) -> str:
        body = _b64(json.dumps(value, separators=(",", ":")).encode())
        return f"{body}.{self._mac(purpose, body)}"

    def unsign(self, purpose: str, token: str | None) -> Any:
        if not token or token.count(".") != 1:
            return None
        body, mac = token.split(".")
        if not hmac.compare_digest(mac, self._mac(purpose, body)):
            return None
        try:
            return json.loads(_unb64(body))
        except (ValueError, UnicodeDecodeError):
            return None

    def fingerprint(self, password_hash: str | None) -> str:
        return _b64(hmac.new(self.key, f"pw\0{password_hash}".encode(), hashlib.sha256).digest()[:12])


class Cookies:
    """Names and attributes of the three cookies, which depend on whether the listener is TLS."""

    def __init__(self, signer: Signer, tls: bool) -> None:
        self.signer = signer
        self.tls = tls
        prefix = "__Host-" if tls else ""
        self.session_name = f"{prefix}session"
        self.csrf_name = f"{prefix}csrf"
        self.lang_name = f"{prefix}lang"

    def _set(self, response: web.StreamResponse, name: str, value: str, max_age: int | None,
             samesite: str = "Strict") -> None:
        response.set_cookie(name, value, max_age=max_age, path="/", secure=self.tls, httponly=True,
                            samesite=samesite)

    # session -----------------------------------------------------------------

    def read_session(self, request: web.Request, now: float) -> tuple[Session | None, bool]:
        """(valid session or None, whether an expired one was presented)."""
        data = self.signer.unsign("session", request.cookies.get(self.session_name))
        if not isinstance(data, dict):
            return None, False
        try:
            session = Session(**data)
        except TypeError:
            return None, False
        if now - session.seen > SESSION_IDLE or now - session.issued > SESSION_MAX or session.seen > now + 60:
            return None, True
        return session, False

    def new_session(self, account_id: int, password_hash: str | None, now: float, flash: str = "") -> Session:
        return Session(account_id, now, now, secrets.token_urlsafe(24), self.signer.fingerprint(password_hash),
                       flash)

    def write_session(self, response: web.StreamResponse, session: Session) -> None:
        self._set(response, self.session_name, self.signer.sign("session", asdict(session)), SESSION_MAX)

    def clear_session(self, response: web.StreamResponse) -> None:
        response.del_cookie(self.session_name, path="/", secure=self.tls, httponly=True, samesite="Strict")

    # CSRF before sign-in ------------------------------------------------------

    def anonymous_csrf(self, request: web.Request) -> str | None:
        value = self.signer.unsign("csrf", request.cookies.get(self.csrf_name))
        return value if isinstance(value, str) else None

    def write_anonymous_csrf(self, response: web.StreamResponse, token: str) -> None:
        self._set(response, self.csrf_name, self.signer.sign("csrf", token), None)

    # language ---------------------------------------------------------------------

    def write_lang(self, response: web.StreamResponse, lang: str) -> None:
        # Lax: following a link to the page from elsewhere keeps the chosen language.
        self._set(response, self.lang_name, lang, LANG_COOKIE_AGE, samesite="Lax")


def same_origin(request: web.Request) -> bool:
    """A POST from another site is refused even before the token is compared (defence in depth)."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.scheme}://{request.host}"


def tokens_match(sent: str | None, expected: str | None) -> bool:
    return bool(sent) and bool(expected) and hmac.compare_digest(str(sent), str(expected))


def security_headers(tls: bool) -> Any:
    """An `on_response_prepare` hook: every response, errors and static files included, gets the headers."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h["Server"] = "mailserver"  # no version banner
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("X-Content-Type-Options", "nosniff")
        # "no-referrer" would make browsers send `Origin: null` on our own form posts
        h.setdefault("Referrer-Policy", "same-origin")
        h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if tls:
            h.setdefault("Strict-Transport-Security", HSTS)
        if not request.path.startswith("/static/"):
            h.setdefault("Cache-Control", "no-store")

    return add
