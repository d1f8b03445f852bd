"""`mailserver serve`: start every service in one event loop and stop them cleanly.

Each protocol package provides a service object with `start()` (returns
what it listens on) and `stop()`. Services are built here, in the
composition root, from the App; the order of `build_services` is the start
order, and they stop in reverse so nothing is still accepting mail while
the store it writes to closes.

A service may also name the `listeners` (keys of `listeners:` in
mailserver.yaml) it serves: once it has started, `/healthz` checks that each
of them accepts connections, and the tests log in through each of them.

Signals: SIGTERM and SIGINT stop. A service with `drain(grace)` (SMTP,
IMAP) first stops accepting, closes idle connections at once and lets work
under way finish for at most `shutdown_grace` seconds; all drain together,
then each `stop()` runs in reverse order. SIGHUP reloads policy.yaml and
the TLS certificate (`mailserver.reload`); the certificate is one object
owned by the App (`mailserver.tls`) that every listener shares.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import signal
from collections.abc import Callable
from typing import Any, Protocol

from imap_gateway.server import ImapBackend, ImapServer
from mailserver.app import App
from mailserver.health import clamd_check, disk_check, listener_check, queue_check, spamd_check
from mailserver.reload import Reloader
from mailserver.scheduler import JobScheduler
from mailserver.smtp_wiring import build_mail_services, clamd_client, spamd_client
from mailserver.spamtraining import SpamTrainer
from mailserver.web.service import WebService
from policy.limits import message_size_limit
from policy.model import Policy
from policy.settings import LISTENER_NAMES
from storage.metrics import ServerMetrics

log = logging.getLogger("mailserver.serve")


class Service(Protocol):
    name: str
    # Optional: the keys of `listeners:` this service serves (e.g. ("imap", "imaps")).
    # listeners: tuple[str, ...]
    # Optional, for SIGTERM: stop accepting, let work under way finish for at most `grace` seconds.
    # async def drain(self, grace: float) -> None: ...

    async def start(self) -> list[str]: ...

    async def stop(self) -> None: ...


def imap_session_gauge(metrics: ServerMetrics) -> Callable[[str, Any], None]:
    """`mailserver_imap_sessions`: up at LOGIN/AUTHENTICATE, down when that session ends, however it ends."""

    def observe(event: str, session: Any) -> None:
        if event == "login":
            metrics.imap_sessions.inc()
        elif event == "logout":
            metrics.imap_sessions.dec()

    return observe


def spam_trainer(app: App) -> SpamTrainer | None:
    """Đ8.2.b: moving mail into or out of Junk over IMAP teaches spamd (when one is configured). Its
    queue is drained when the App closes."""
    spamd = spamd_client(app.settings)
    if not spamd.configured:
        return None
    trainer = SpamTrainer(app.store, spamd, app.policy.folders, app.metrics, app.policy.spam.max_scan_size)
    app.closers.append(trainer.close)

    def follow(policy: Policy) -> None:  # SIGHUP: the Junk folder's name and how much of a message is taught
        trainer.folders = policy.folders
        trainer.max_scan_size = policy.spam.max_scan_size

    app.policy_listeners.append(follow)
    return trainer


def imap_services(app: App) -> list[Service]:
    """IMAP on 143 (STARTTLS) and 993 (implicit TLS), sharing one backend (sessions, events)."""
    settings = app.settings
    backend = ImapBackend(
        hostname=settings.hostname,
        auth=app.auth,
        store=app.store,
        # RFC 7889: APPENDLIMIT equals the SMTP SIZE limit, so whatever submission
        # accepted can always be saved to Sent.
        append_limit=message_size_limit(app.policy.attachments),
        attachments=app.policy.attachments,
        ssl_context=app.server_tls().context,  # one certificate for every listener (mailserver/tls.py)
        timezone=app.policy.tz,
        metrics=app.metrics,
    )
    backend.observers.append(imap_session_gauge(app.metrics))

    def follow(policy: Policy) -> None:  # SIGHUP: APPENDLIMIT and the attachment rule of APPEND
        backend.append_limit = message_size_limit(policy.attachments)
        backend.attachments = policy.attachments

    app.policy_listeners.append(follow)
    trainer = spam_trainer(app)
    if trainer is not None:
        backend.transfer_observers.append(trainer.on_transfer)
    services: list[Service] = []
    for name, implicit in (("imap", False), ("imaps", True)):
        listener = getattr(settings.listeners, name)
        if listener.enabled:
            services.append(ImapServer(name, listener.bind_host, listener.port, backend, implicit_tls=implicit,
                                       allow_plaintext_login=listener.allow_plaintext_login and not implicit))
    return services


def build_services(app: App) -> list[Service]:
    """The services this version provides, in start order (the scheduler last: it starts working at
    once and its notices go through the store the others already use). The queue's workers start
    before the SMTP listeners that feed them and stop after them."""
    outbound, smtp = build_mail_services(app)
    app.health.add("outbound-queue", queue_check(app.queue))
    services: list[Service] = [outbound, smtp]
    services += imap_services(app)
    services.append(WebService(app))
    if app.settings.jobs.enabled:
        services.append(JobScheduler(app))
    return services


def register_health_checks(app: App) -> None:
    """Checks that do not belong to one service: disk space, clamd when configured, and spamd (Đ8.2.b),
    whose configuration is also said in the log at start."""
    settings = app.settings
    app.health.add("disk", disk_check(settings.paths.data, settings.monitoring.min_free_disk))
    clamd = clamd_client(settings)
    if clamd.configured:
        app.health.add("clamd", clamd_check(clamd))
    spamd = spamd_client(settings)
    app.health.add("spamd", spamd_check(spamd))
    if spamd.configured:
        log.info("spam filter: spamd at %s; Junk from score %.1f, refused from %.1f, submitted mail refused from "
                 "%.1f", spamd.address, app.policy.spam.junk, app.policy.spam.reject, app.policy.spam.outbound_reject)
    else:
        log.warning("spam filter off: no spamd configured (spamd.host/port or spamd.socket); messages are not "
                    "scored for spam (Article 8.2.b)")


def served_listeners(service: Service) -> tuple[str, ...]:
    """The listeners a service names, or the one it is named after (the IMAP services are "imap", "imaps")."""
    names = getattr(service, "listeners", None)
    if names is not None:
        return tuple(names)
    return (service.name,) if service.name in LISTENER_NAMES else ()


async def drain(services: list[Service], grace: float) -> None:
    """SIGTERM, first step: every service that can stops accepting and lets what is under way finish, all at
    the same time, so the whole stop takes `grace` at most (not `grace` per service)."""
    drains = [(s, s.drain(grace)) for s in services if hasattr(s, "drain")]
    results = await asyncio.gather(*(d for _, d in drains), return_exceptions=True)
    for (service, _), result in zip(drains, results, strict=True):
        if isinstance(result, BaseException):
            log.error("error draining %s: %r", service.name, result)


# glibc mallopt() parameter number (malloc.h); not exposed by Python.
M_MMAP_THRESHOLD = -3


def return_large_allocations_to_the_system() -> None:
    """Make glibc give every freed block of 1 MiB or more straight back to the system.

    Every password verification allocates argon2's 19 MiB (policy `hashing`,
    OWASP cost) on a worker thread. glibc raises its mmap threshold to the
    largest block freed so far, so after the first login those 19 MiB come
    from a thread's heap arena and stay resident: a morning of logins left
    ~40 MB more RSS in bench/imap_sync.py's 1,000-connection run (166 MB vs
    124 MB). A fixed threshold keeps such blocks mmap()ed and unmapped on
    free. The cost is a system call for each large allocation, which is
    small next to what allocates them (argon2, 20 MB messages).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass


async def serve(app: App, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or `stop`); SIGHUP reloads the policy and the certificate (mailserver/reload.py).

    In a container this process is PID 1: the kernel gives PID 1 no default signal actions, so every
    signal the server should act on has a handler here, installed before anything else can go wrong.
    """
    return_large_allocations_to_the_system()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # The certificate is checked before any port opens: a missing or broken one is one clear error.
    app.server_tls()
    reloader = Reloader(app)
    loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    started: list[Service] = []
    register_health_checks(app)
    try:
        for service in build_services(app):
            where = await service.start()
            started.append(service)
            for name in served_listeners(service):
                app.health.add(f"listener:{name}", listener_check(getattr(app.settings.listeners, name)))
            if getattr(service, "listeners", None) == ():
                log.info("%s started: %s", service.name, ", ".join(where))  # the scheduler: no socket
            else:
                log.info("%s listening on %s", service.name, ", ".join(where) or "(no listener)")
        if started:
            log.info("ready: %s", ", ".join(s.name for s in started))
        else:
            log.info("ready: no protocol services in this version yet (directory only); Ctrl-C stops")
        await stop.wait()
        grace = app.settings.shutdown_grace
        log.info("stopping: no new connections; finishing what is under way (at most %g s)", grace)
        await drain(started, grace)
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("error stopping %s", service.name)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    log.info("stopped")
