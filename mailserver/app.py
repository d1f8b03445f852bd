"""The composition root: configuration, policy and the services built from them.

Every entry point (each CLI command, `serve`) builds one `App` and closes it.
Nothing below `mailserver/` constructs its own dependencies; they are handed
in here, which is what keeps the import direction one way
(policy ← storage ← smtp, imap_gateway ← mailserver).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from mailserver.health import HealthChecks
from mailserver.notices import Notices
from mailserver.tls import ServerTls, tls_for
from policy.calendar import utc_now
from policy.loader import Loaded, load
from policy.model import Policy
from policy.settings import Settings
from storage.auth import AuthService
from storage.directory import Directory
from storage.hashing import PasswordHasher
from storage.limiter import BruteForceLimiter
from storage.metrics import ServerMetrics
from storage.queue import OutboundQueue
from storage.store import MailStore


@dataclass
class App:
    loaded: Loaded
    directory: Directory
    auth: AuthService
    store: MailStore
    # The outbound queue (<data>/queue): SMTP hands remote mail to it, serve delivers, the CLI inspects.
    queue: OutboundQueue
    clock: Callable[[], datetime]
    # One metrics registry per App, handed to every service (see storage/metrics.py).
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    # What /healthz runs; services add their checks when they start (mailserver/serve.py).
    health: HealthChecks = field(default_factory=HealthChecks)
    closers: list[Callable[[], object]] = field(default_factory=list)
    # The certificate of every listener, built on first use (CLI commands never need it); SIGHUP reloads it.
    tls: ServerTls | None = None
    # How each object built from the policy follows a reloaded one (SIGHUP, mailserver/reload.py): whoever
    # builds something that keeps a policy value registers here, so `apply_policy` reaches everything.
    policy_listeners: list[Callable[[Policy], None]] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    @property
    def policy(self) -> Policy:
        return self.loaded.policy

    def server_tls(self) -> ServerTls:
        """The one TLS context every listener serves (mailserver/tls.py): one reload swaps it everywhere."""
        if self.tls is None:
            self.tls = tls_for(self.settings)
        return self.tls

    def apply_policy(self, policy: Policy) -> None:
        """Use a new, already validated policy from now on, everywhere in this process."""
        self.loaded = replace(self.loaded, policy=policy)
        self.directory.policy = policy  # lock states, quotas, password rules are read from it at each use
        self.directory.hasher.set_rules(policy.passwords.hashing)
        self.auth.limiter.set_rules(policy.auth)
        self.auth.cache_ttl = policy.auth.cache_ttl.approx_seconds
        self.store.set_policy(policy)
        for listener in self.policy_listeners:
            listener(policy)

    @classmethod
    async def open(cls, config: str | Path | None = None, *, clock: Callable[[], datetime] = utc_now,
                   loaded: Loaded | None = None) -> App:
        loaded = loaded or load(config)
        settings, policy = loaded.settings, loaded.policy
        hasher = PasswordHasher(policy.passwords.hashing)
        try:
            directory = await Directory.open(settings.paths.directory_db, policy, settings.domains, hasher, clock)
        except BaseException:
            hasher.close()
            raise
        limiter = BruteForceLimiter(policy.auth, settings.trusted_networks)
        auth = AuthService(directory, limiter, settings.account_url)
        store = MailStore(settings.paths.mail_dir, policy, directory, clock=clock)
        try:
            queue = await OutboundQueue.open(settings.paths.queue_dir, policy.outbound, clock)
        except BaseException:
            await store.close()
            await directory.close()
            hasher.close()
            raise
        # Đ7.3.c: the store says when a threshold is crossed; the notice text lives in mailserver/
        quota_notices = Notices(settings, policy, store, clock)
        store.on_quota_threshold = quota_notices.quota_warning
        # every new account gets its Maildir++ tree and special folders at once
        directory.on_created.append(store.create_mailbox)
        app = cls(loaded=loaded, directory=directory, auth=auth, store=store, queue=queue, clock=clock)
        app.policy_listeners.append(quota_notices.set_policy)
        app.policy_listeners.append(lambda p: queue.set_policy(p.outbound))
        auth.listeners.append(app.metrics.observe_login)
        return app

    async def close(self) -> None:
        for closer in reversed(self.closers):
            result = closer()
            if hasattr(result, "__await__"):
                await result  # type: ignore[misc]
        await self.queue.close()
        await self.store.close()
        await self.directory.close()
        self.directory.hasher.close()
