"""SIGHUP: read policy.yaml and the TLS certificate again, without a restart.

Operators change the regulation's numbers in policy.yaml and the provider's
ACME client renews the certificate every few weeks; neither should cost a
restart that cuts every IMAP session of the province. `systemctl reload`,
`podman kill --signal HUP` and `docker kill --signal HUP` all send SIGHUP.

Both halves are validate-then-swap: the new files are checked completely
(`policy.loader.load`, the certificate's key and dates) before anything
changes; on any problem the running server keeps what it has and the log
says why, in the same words `mailserver config check` would use. A reload
can therefore never take the server down, however broken the edit.

What a reload does not change: `mailserver.yaml` (listeners, paths, host
name ... are bound at start; a changed file is named in the log as waiting
for a restart) and the policy's `timezone` (the log files and every date
already computed depend on it).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Gauge

from mailserver.app import App
from mailserver.tls import CertificateError
from policy.errors import ConfigError
from policy.loader import load
from policy.model import Policy

log = logging.getLogger("mailserver.reload")

# Policy keys that only a restart changes (see the module docstring).
RESTART_ONLY = ("timezone",)


class ReloadMetrics:
    """`mailserver_reloads_total{what,result}` and the certificate's expiry, for alerting on a failed renewal."""

    def __init__(self, app: App) -> None:
        r = app.metrics.registry
        self.reloads = Counter("mailserver_reloads", "SIGHUP reloads, per part (policy, certificate) and result "
                               "(applied, unchanged, refused)", ["what", "result"], registry=r)
        self.cert_expiry = Gauge("mailserver_certificate_expiry_timestamp_seconds",
                                 "When the served TLS certificate expires (Unix time)", registry=r)


def changed_sections(old: Any, new: Any) -> list[str]:
    """Top-level keys whose values differ (pydantic models compare by value)."""
    return [name for name in type(old).model_fields if getattr(old, name) != getattr(new, name)]


class Reloader:
    def __init__(self, app: App) -> None:
        self.app = app
        self.metrics = ReloadMetrics(app)
        if app.tls is not None:
            self.metrics.cert_expiry.set(app.tls.info.not_after.timestamp())

    def reload(self) -> None:
        """Everything SIGHUP reloads; each part on its own, so a broken policy still lets a new certificate in."""
        log.info("SIGHUP: reloading the policy and the certificate")
        self.reload_certificate()
        self.reload_policy()

    def reload_certificate(self) -> str:
        tls = self.app.tls
        if tls is None:
            return self._count("certificate", "unchanged")  # no listener uses TLS in this process
        try:
            changed = tls.reload()
        except CertificateError as e:
            log.error("certificate NOT reloaded, the previous one stays in use: %s: %s", e.field, e.message)
            return self._count("certificate", "refused")
        self.metrics.cert_expiry.set(tls.info.not_after.timestamp())
        if changed:
            log.info("certificate reloaded for new connections: %s", tls.info.describe())
            return self._count("certificate", "applied")
        log.info("certificate unchanged: %s", tls.info.describe())
        return self._count("certificate", "unchanged")

    def reload_policy(self) -> str:
        app = self.app
        config_file = app.loaded.config_file
        if config_file is None:
            log.info("policy: built-in defaults (no configuration file), nothing to reload")
            return self._count("policy", "unchanged")
        try:
            loaded = load(config_file)
        except ConfigError as e:
            for problem in e.problems:
                log.error("policy NOT reloaded, the previous one stays in use: %s", problem)
            return self._count("policy", "refused")
        waiting = changed_sections(app.settings, loaded.settings)
        if waiting:
            log.warning("%s changed (%s): these settings take effect at the next restart",
                        config_file.name, ", ".join(waiting))
        new = self._keep_restart_only(app.policy, loaded.policy)
        sections = changed_sections(app.policy, new)
        if not sections:
            log.info("policy unchanged (%s)", loaded.policy_file or "built-in defaults")
            return self._count("policy", "unchanged")
        app.apply_policy(new)
        log.info("policy reloaded from %s: %s changed", loaded.policy_file or "built-in defaults",
                 ", ".join(sections))
        return self._count("policy", "applied")

    @staticmethod
    def _keep_restart_only(old: Policy, new: Policy) -> Policy:
        kept = {k: getattr(old, k) for k in RESTART_ONLY if getattr(old, k) != getattr(new, k)}
        for key, value in kept.items():
            log.warning("policy %s changed to %r: this takes effect at the next restart (still %r)",
                        key, getattr(new, key), value)
        return new.model_copy(update=kept) if kept else new

    def _count(self, what: str, result: str) -> str:
        self.metrics.reloads.labels(what=what, result=result).inc()
        return result

