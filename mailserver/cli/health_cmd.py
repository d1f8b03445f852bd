"""`mailserver healthcheck`: ask the running server's `/healthz`, for container HEALTHCHECKs and monitoring.

Slim images have no curl, and the web listener speaks TLS with a certificate
issued for the public host name, so a generic HTTP probe would need flags
for both. This command reads mailserver.yaml for where the web listener is,
connects over loopback (which `monitoring.allow` admits by default), and
exits 0 only when every check passed. The certificate is not verified: the
probe only talks to this machine, and an expired certificate is reported by
its own metric rather than by restarting the container.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from mailserver.cli.common import Context, out, pairs
from mailserver.health import probe_address
from policy.errors import MailserverError


def register(sub: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "healthcheck", parents=parents, help="ask the running server's /healthz (exit status 0 when healthy)",
        description="Connect to the web listener of the running server over loopback, read /healthz and exit "
        "0 when every check passed, 1 otherwise (the failing checks are printed). Used by the container "
        "image's HEALTHCHECK.",
    )
    p.add_argument("--timeout", type=float, default=8.0, help="seconds (default 8)")
    p.set_defaults(handler=run)


def fetch(url: str, timeout: float) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:  # 503 carries the report too
        try:
            return e.code, json.load(e)
        except ValueError:
            return e.code, {}


async def run(ctx: Context, args: argparse.Namespace) -> int:
    web = ctx.loaded.settings.listeners.web
    if not web.enabled:
        raise MailserverError("listeners.web", "the web listener is disabled; /healthz is served there")
    host, port = probe_address(web)
    host = f"[{host}]" if ":" in host else host
    url = f"{'https' if web.tls else 'http'}://{host}:{port}/healthz"
    try:
        status, report = await asyncio.to_thread(fetch, url, args.timeout)
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise MailserverError("healthz", f"no answer from {url}: {reason}") from e
    checks = report.get("checks", {})
    failing = {name: c for name, c in checks.items() if not c.get("ok")}
    healthy = status == 200 and not failing
    lines = [("status", f"{'healthy' if healthy else 'UNHEALTHY'} (HTTP {status}, {len(checks)} checks)")]
    lines += [(name, c.get("error") or json.dumps(c, ensure_ascii=False)) for name, c in failing.items()]
    out(ctx, {"url": url, "status": status, "healthy": healthy, **report}, pairs(lines))
    return 0 if healthy else 1
