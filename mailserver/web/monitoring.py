"""`/healthz` (JSON, 200 or 503) and `/metrics` (Prometheus text), for the networks in `monitoring.allow`.

Both reveal how the server is doing (failed logins, traffic, free disk), so
they answer only the addresses operators list; the default is this machine,
which is where a container health check or a local Prometheus agent runs.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mailserver.app import App


class Monitoring:
    def __init__(self, app: App) -> None:
        self.app = app
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in app.settings.monitoring.allow]

    def permitted(self, request: web.Request) -> bool:
        try:
            addr = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.allowed)

    def refuse(self) -> web.Response:
        return web.json_response({"error": "not allowed from this address (monitoring.allow)"}, status=403)

    async def healthz(self, request: web.Request) -> web.Response:
        if not self.permitted(request):
            return self.refuse()
        healthy, report = await self.app.health.run()
        return web.json_response(report, status=200 if healthy else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        if not self.permitted(request):
            return self.refuse()
        body = generate_latest(self.app.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
