"""The server's own configuration (`mailserver.yaml`).

Defaults are the production values so a bare install listens where a mail
server should; `config/dev.yaml` moves everything to loopback ports for
development. Key names are an interface: tools outside the project read them.
Relative paths are resolved against the folder of the file that names them,
so a config directory can be moved or mounted anywhere.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from policy.units import ByteSize, CalendarDuration, Duration

LISTENER_NAMES = ("smtp", "submission", "submissions", "imap", "imaps", "web")
ALL_ADDRESSES = "*"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Listener(Section):
    # "*" listens on every IPv4 and IPv6 address.
    host: str = ALL_ADDRESSES
    port: int = Field(ge=0, le=65535)
    enabled: bool = True
    # Only meaningful for `web`: plain HTTP is allowed on loopback only.
    tls: bool = True
    # Only meaningful for `imap` (port 143): accept LOGIN without STARTTLS. For
    # development on loopback only; everywhere else LOGINDISABLED until TLS.
    allow_plaintext_login: bool = False

    @property
    def bind_host(self) -> str | None:
        return None if self.host in (ALL_ADDRESSES, "") else self.host

    @property
    def is_loopback(self) -> bool:
        return _is_loopback(self.host)


class Listeners(Section):
    smtp: Listener = Listener(port=25)
    submission: Listener = Listener(port=587)
    submissions: Listener = Listener(port=465)
    imap: Listener = Listener(port=143)
    imaps: Listener = Listener(port=993)
    web: Listener = Listener(port=443)

    @model_validator(mode="after")
    def _web_plaintext_only_on_loopback(self) -> Listeners:
        if not self.web.tls and not self.web.is_loopback:
            raise ValueError("web.tls may be false only when web.host is a loopback address")
        for name, listener in self.items():
            if listener.allow_plaintext_login and not listener.is_loopback:
                raise ValueError(
                    f"{name}.allow_plaintext_login may be true only when {name}.host is a loopback address"
                )
        return self

    def items(self) -> list[tuple[str, Listener]]:
        return [(name, getattr(self, name)) for name in LISTENER_NAMES]


class Paths(Section):
    data: Path = Path("/var/lib/mailserver")
    # Defaults below are folders inside `data`.
    logs: Path | None = None
    # Operator-edited copies of the notice templates (Đ7.3.c quota warning, ...). A file missing
    # here falls back to the built-in one (mailserver/templates/notices/).
    templates: Path | None = None
    # Archives of revoked mailboxes (Đ5.3.b); may be a larger, slower disk. Default <data>/archive.
    archive: Path | None = None

    @property
    def directory_db(self) -> Path:
        return self.data / "directory.sqlite3"

    @property
    def log_dir(self) -> Path:
        return self.logs or self.data / "log"

    @property
    def tls_dir(self) -> Path:
        return self.data / "tls"

    @property
    def web_session_key(self) -> Path:
        """The key that signs web sessions; shared by every worker process, kept across restarts."""
        return self.data / "web-session.key"

    @property
    def archive_dir(self) -> Path:
        return self.archive or self.data / "archive"

    @property
    def mail_dir(self) -> Path:
        """One Maildir++ tree per account: mail/<domain>/<local part>~<account id>/."""
        return self.data / "mail"

    @property
    def dkim_dir(self) -> Path:
        return self.data / "dkim"

    @property
    def queue_dir(self) -> Path:
        """The outbound queue: queue.sqlite3 (envelopes, per-recipient state) and messages/."""
        return self.data / "queue"


class TLS(Section):
    # PEM files; default: the self-signed pair `mailserver init` writes into <data>/tls.
    cert: Path | None = None
    key: Path | None = None


class Clamd(Section):
    # Either a unix socket or host+port; the SMTP checks stream every message to it.
    socket: Path | None = Path("/run/clamav/clamd.ctl")
    host: str | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    # Seconds for one scan (connect, stream, verdict) before it counts as unreachable.
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_address(self) -> Clamd:
        if (self.host is None) != (self.port is None):
            raise ValueError("clamd.host and clamd.port go together")
        if self.host is not None:
            self.socket = None
        return self


class Spamd(Section):
    # SpamAssassin's daemon (Debian: `spamd`, listening on 127.0.0.1:783 by
    # default). Either a unix socket (set: replaces host and port) or
    # host+port; all three null: no spam scoring, which the server says at
    # start and in /healthz (Đ8.2.b).
    socket: Path | None = None
    host: str | None = "127.0.0.1"
    port: int | None = Field(default=783, ge=1, le=65535)
    # Seconds for one score or one learning request before spamd counts as
    # unreachable (then the policy's spam.on_spamd_error decides).
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_address(self) -> Spamd:
        if self.socket is not None:
            self.host = None
            self.port = None
        elif (self.host is None) != (self.port is None):
            raise ValueError("spamd.host and spamd.port go together")
        return self

    @property
    def configured(self) -> bool:
        return self.socket is not None or self.host is not None


class Monitoring(Section):
    # Who may read /healthz and /metrics on the web listener: they reveal
    # traffic and failed logins, so by default only this machine (a container
    # health check, a local Prometheus agent). Add your monitoring hosts.
    allow: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # /healthz reports failure when the data folder has less free space than this.
    min_free_disk: ByteSize = 1024**3

    @field_validator("allow")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return _check_networks(v)


def _check_networks(v: list[str]) -> list[str]:
    for net in v:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError as e:
            raise ValueError(f'"{net}" is not an IP network') from e
    return v

class Smtp(Section):
    # Connections at once per listener, and from one client address.
    max_connections: int = Field(default=200, ge=1)
    max_connections_per_ip: int = Field(default=20, ge=1)
    # Seconds a client may stay silent between commands (RFC 5321 §4.5.3.2.7: 5 minutes).
    command_timeout: float = Field(default=300.0, gt=0)
    # Seconds for the whole DATA transfer of one message (§4.5.3.2.6 asks 3 minutes per block).
    data_timeout: float = Field(default=600.0, gt=0)
    # RCPT TO per message (RFC 5321 §4.5.3.1.8 requires at least 100).
    max_recipients: int = Field(default=100, ge=1)


class Dns(Section):
    # Resolver for SPF, DKIM and DMARC. Empty: the system's /etc/resolv.conf.
    nameservers: list[str] = Field(default_factory=list)
    port: int = Field(default=53, ge=1, le=65535)
    # Seconds per lookup; a timeout only records "temperror", it never refuses mail.
    timeout: float = Field(default=5.0, gt=0)

    @field_validator("nameservers")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for ns in v:
            try:
                ipaddress.ip_address(ns)
            except ValueError as e:
                raise ValueError(f'"{ns}" is not an IP address') from e
        return v


class Dkim(Section):
    # Submitted mail is signed with <keys>/<domain>/<selector>.rsa.pem (and
    # .ed25519.pem when present); `mailserver dkim keygen` writes them.
    selector: str = "mail"
    # Default: <data>/dkim
    keys: Path | None = None
    ed25519: bool = False


class Jobs(Section):
    # The scheduler inside `mailserver serve` (retirement, inactivity, password warnings, retention,
    # maintenance notices, daily counters). Every worker process may run it: the directory database
    # records what was done, so nothing happens twice. `mailserver jobs run` runs the same jobs once.
    enabled: bool = True
    # How often it looks for what has fallen due. Day-based work (counters, retention) runs once per
    # local day, at the first look after midnight.
    interval: Duration = CalendarDuration(seconds=15 * 60)

    @field_validator("interval")
    @classmethod
    def _seconds_only(cls, v: CalendarDuration) -> CalendarDuration:
        if v.months or v.seconds < 10:
            raise ValueError(f'"{v}" is not a scheduler interval (use e.g. 15 minutes)')
        return v


class Smarthost(Section):
    # A relay every outbound message goes through (providers that must relay).
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    # starttls: STARTTLS required (port 587); tls: implicit TLS (port 465);
    # none: plain text, accepted only for a loopback relay.
    tls: Literal["starttls", "tls", "none"] = "starttls"
    username: str | None = None
    password: str | None = None
    # Check the relay's certificate (system CAs, or ca_file); false only for tests.
    verify: bool = True
    ca_file: Path | None = None

    @model_validator(mode="after")
    def _safe_login(self) -> Smarthost:
        if (self.username is None) != (self.password is None):
            raise ValueError("smarthost.username and smarthost.password go together")
        if self.tls == "none" and not _is_loopback(self.host):
            raise ValueError("smarthost.tls may be none only for a loopback relay (127.0.0.1, ::1, localhost)")
        return self


class OutboundTimeouts(Section):
    # Seconds, RFC 5321 §4.5.3.2: the minimum a client waits for each reply.
    connect: float = Field(default=30.0, gt=0)
    greeting: float = Field(default=300.0, gt=0)  # §4.5.3.2.1 initial 220: 5 minutes
    command: float = Field(default=300.0, gt=0)  # EHLO, STARTTLS, AUTH, RSET (§4.5.3.2.7 server side)
    mail: float = Field(default=300.0, gt=0)  # §4.5.3.2.2 MAIL: 5 minutes
    rcpt: float = Field(default=300.0, gt=0)  # §4.5.3.2.3 RCPT: 5 minutes
    data_init: float = Field(default=120.0, gt=0)  # §4.5.3.2.4 DATA initiation: 2 minutes
    data_block: float = Field(default=180.0, gt=0)  # §4.5.3.2.5 each block sent: 3 minutes
    data_end: float = Field(default=600.0, gt=0)  # §4.5.3.2.6 reply to the final dot: 10 minutes


class Outbound(Section):
    # Relay everything through this host instead of looking up MX records.
    smarthost: Smarthost | None = None
    # Per-domain static routes, "host:port" or "[IPv6]:port" (port optional):
    # they replace the MX lookup for that domain and nothing else (TLS policy,
    # timeouts, retries still apply). They win over the smarthost.
    routes: dict[str, str] = Field(default_factory=dict)
    # TCP port of remote MX hosts (25; tests point it elsewhere).
    port: int = Field(default=25, ge=1, le=65535)
    # Messages being delivered at once by one server process.
    max_deliveries: int = Field(default=20, ge=1)
    # Connections at once to one destination domain (or route, or the smarthost).
    destination_concurrency: int = Field(default=5, ge=1)
    # Recipients per transaction (RFC 5321 §4.5.3.1.8: servers take at least 100).
    max_recipients: int = Field(default=100, ge=1)
    # A finished connection waits this many seconds for the next message to the same host ...
    connection_idle: float = Field(default=10.0, ge=0)
    # ... and carries at most this many messages.
    connection_reuse: int = Field(default=100, ge=1)
    # Seconds between looks at the queue for work added by the CLI or another process.
    poll_interval: float = Field(default=2.0, gt=0)
    # Try IPv6 addresses of MX hosts too (after IPv4).
    ipv6: bool = True
    timeouts: OutboundTimeouts = OutboundTimeouts()

    @field_validator("routes")
    @classmethod
    def _routes(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for domain, target in v.items():
            d = domain.strip().rstrip(".").lower()
            if not d or "." not in d:
                raise ValueError(f'"{domain}" is not a domain name')
            parse_hostport(target, 25)
            out[d] = target.strip()
        return out


def parse_hostport(text: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]:port`, `1.2.3.4:port` → (host, port)."""
    t = text.strip()
    host, port = t, str(default_port)
    if t.startswith("["):
        end = t.find("]")
        if end < 0:
            raise ValueError(f'"{text}" is not host:port ("]" missing)')
        host, rest = t[1:end], t[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f'"{text}" is not host:port')
            port = rest[1:]
    elif t.count(":") == 1:
        host, port = t.split(":")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f'"{text}" is not host:port')
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f'"{text}": the port must be a number from 1 to 65535')
    return host, int(port)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Operators(Section):
    # Đ5.1: Sở TT&TT runs the directory. `init` creates this unit; its unit
    # mailbox receives postmaster@, abuse@ and support@ (Đ5.2).
    unit_name: str = "Sở Thông tin và Truyền thông"
    unit_abbrev: str | None = None


class Settings(Section):
    hostname: str = "mail.phuyen.gov.vn"
    # The first domain is the primary one: new accounts get it.
    domains: list[str] = Field(default_factory=lambda: ["phuyen.gov.vn"], min_length=1)
    paths: Paths = Paths()
    tls: TLS = TLS()
    listeners: Listeners = Listeners()
    clamd: Clamd = Clamd()
    spamd: Spamd = Spamd()
    smtp: Smtp = Smtp()
    dns: Dns = Dns()
    dkim: Dkim = Dkim()
    outbound: Outbound = Outbound()
    # The policy file (the regulation's numbers); null: built-in defaults.
    policy_file: Path | None = None
    # Offices behind one NAT address are not blocked per IP by the brute-force limiter.
    trusted_networks: list[str] = Field(default_factory=list)
    # Public address of the web pages (password change); default https://<hostname>/.
    web_url: str | None = None
    monitoring: Monitoring = Monitoring()
    operators: Operators = Operators()
    jobs: Jobs = Jobs()
    # Seconds SIGTERM waits for messages being received and IMAP commands in progress before closing
    # (idle connections are closed at once). Keep it below the stopper's own limit: `docker/podman stop`
    # 10 s unless --time, compose stop_grace_period, systemd TimeoutStopSec.
    shutdown_grace: float = Field(default=8.0, ge=0, le=600)

    @field_validator("domains")
    @classmethod
    def _lower_domains(cls, v: list[str]) -> list[str]:
        out = []
        for d in v:
            d = d.strip().rstrip(".").lower()
            if not d or "." not in d or any(c.isspace() for c in d):
                raise ValueError(f'"{d}" is not a domain name')
            out.append(d)
        return out

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        return _check_networks(v)

    @property
    def primary_domain(self) -> str:
        return self.domains[0]

    @property
    def cert_path(self) -> Path:
        return self.tls.cert or self.paths.tls_dir / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.tls.key or self.paths.tls_dir / "key.pem"

    @property
    def dkim_keys(self) -> Path:
        return self.dkim.keys or self.paths.dkim_dir

    @property
    def account_url(self) -> str:
        base = self.web_url
        if not base:
            web = self.listeners.web
            scheme = "https" if web.tls else "http"
            default_port = 443 if web.tls else 80
            host = self.hostname if web.host in (ALL_ADDRESSES, "") else web.host
            port = "" if web.port == default_port else f":{web.port}"
            base = f"{scheme}://{host}{port}/"
        return base.rstrip("/") + "/account"

    def resolve_paths(self, base: Path) -> None:
        """Make relative paths absolute against the config file's folder."""

        def fix(p: Path | None) -> Path | None:
            return None if p is None else (p if p.is_absolute() else (base / p).resolve())

        self.paths.data = fix(self.paths.data)  # type: ignore[assignment]
        self.paths.logs = fix(self.paths.logs)
        self.paths.templates = fix(self.paths.templates)
        self.paths.archive = fix(self.paths.archive)
        self.tls.cert = fix(self.tls.cert)
        self.tls.key = fix(self.tls.key)
        self.clamd.socket = fix(self.clamd.socket)
        self.spamd.socket = fix(self.spamd.socket)
        self.dkim.keys = fix(self.dkim.keys)
        if self.outbound.smarthost is not None:
            self.outbound.smarthost.ca_file = fix(self.outbound.smarthost.ca_file)
        self.policy_file = fix(self.policy_file)
