"""The server's Prometheus metrics: one set of objects every package counts into.

Why here, in `storage`: the import direction is policy ← storage ← smtp,
imap_gateway ← mailserver, so the protocol packages cannot import anything
from `mailserver`. Defining the shared metric objects in `storage` lets SMTP
and IMAP import the *type* (`ServerMetrics`) while the composition root
(`mailserver.app.App`) builds the one instance, on a registry the App owns,
and hands it to every service it constructs. `/metrics` (the web service)
renders that registry. Nothing here is a global: two Apps in one test process
never share counters.

Metric names follow Prometheus conventions (`_total` for counters, base
units). Label values must come from small fixed sets (listener names,
outcome codes, SMTP reply reasons), never from addresses or message ids,
or the series count grows without bound.

A production deployment with several worker processes would scrape each
worker's `/metrics`; prometheus-client's multiprocess mode is not used.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from storage.auth import LoginEvent, Outcome

PREFIX = "mailserver"
# SpamAssassin points: the policy's default thresholds (5 junk, 15 reject) are bucket edges; GTUBE is 1000
SPAM_SCORE_BUCKETS = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 50.0, 100.0, float("inf"))


class ServerMetrics:
    """Every counter and gauge the mail server exposes, on one registry.

    Usage from a protocol package (handed `metrics` by the composition root):

        metrics.connections.labels(listener="smtp").inc()
        metrics.messages_rejected.labels(listener="smtp", reason="virus").inc()
        metrics.imap_sessions.inc(); ...; metrics.imap_sessions.dec()
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # memory, CPU, open files of this process
        PlatformCollector(registry=r)  # the Python version

        self.connections = Counter(
            f"{PREFIX}_connections", "Connections accepted, per listener", ["listener"], registry=r
        )
        self.messages_accepted = Counter(
            f"{PREFIX}_messages_accepted", "Messages accepted (250 after DATA), per listener", ["listener"],
            registry=r,
        )
        self.messages_rejected = Counter(
            f"{PREFIX}_messages_rejected",
            "Messages or recipients refused, per listener and reason "
            "(size, attachments, quota, virus, relay, sender, locked, rate, spam, auth, temporary ...)",
            ["listener", "reason"], registry=r,
        )
        self.virus_found = Counter(
            f"{PREFIX}_virus_found", "Messages in which clamd found malware (Đ8.2.b), per listener", ["listener"],
            registry=r,
        )
        self.spam_checks = Counter(
            f"{PREFIX}_spam_checks",
            "Messages judged by the spam filter (Đ8.2.b, Đ13.6), per listener and decision (ham, junk, reject, "
            "allowed, blocked, unscored, tempfail, outbound-ok, outbound-refused)",
            ["listener", "decision"], registry=r,
        )
        self.spam_score = Histogram(
            f"{PREFIX}_spam_score", "SpamAssassin scores of the messages scored, per listener", ["listener"],
            buckets=SPAM_SCORE_BUCKETS, registry=r,
        )
        self.spam_learned = Counter(
            f"{PREFIX}_spam_learned",
            "Messages taught to spamd's Bayes filter by users moving mail into or out of Junk over IMAP, per "
            "kind (spam, ham) and result (learned, known: learned that way before, failed)",
            ["kind", "result"], registry=r,
        )
        self.deliveries = Counter(
            f"{PREFIX}_deliveries",
            "Delivery attempts by result: local, remote, deferred, bounced", ["result"], registry=r,
        )
        self.queue_depth = Gauge(f"{PREFIX}_queue_depth", "Messages waiting in the outbound queue", registry=r)
        self.imap_sessions = Gauge(f"{PREFIX}_imap_sessions", "IMAP sessions open now", registry=r)
        self.logins = Counter(
            f"{PREFIX}_logins", "Successful logins, per protocol", ["protocol"], registry=r
        )
        self.login_failures = Counter(
            f"{PREFIX}_login_failures",
            "Refused logins, per protocol and outcome (bad-credentials, blocked, suspended, revoked, "
            "password-expired, must-change-password)",
            ["protocol", "outcome"], registry=r,
        )
        self.job_runs = Counter(
            f"{PREFIX}_job_runs", "Scheduled job runs, per job and result (ok, failed)", ["job", "result"],
            registry=r,
        )
        self.password_changes = Counter(
            f"{PREFIX}_password_changes",
            "Self-service password changes (Đ9, Đ13.3), per result (changed, refused)", ["result"], registry=r,
        )

    def observe_login(self, event: LoginEvent) -> None:
        """AuthService listener: every protocol's logins are counted in one place."""
        if event.outcome == Outcome.ok:
            self.logins.labels(protocol=event.protocol).inc()
        else:
            self.login_failures.labels(protocol=event.protocol, outcome=event.outcome.value).inc()
