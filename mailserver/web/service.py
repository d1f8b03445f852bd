"""The web service: aiohttp on the `web` listener, in the same event loop as every other service.

One listener carries the account page, the client autoconfiguration
documents, `/healthz` and `/metrics`. It speaks TLS with the server's
certificate; `listeners.web.tls: false` is accepted only on a loopback
address (enforced by the configuration model), for development and tests.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from mailserver.app import App
from mailserver.web.account import AccountPages
from mailserver.web.autoconfig import (
    MAX_REQUEST_BYTES,
    AutodiscoverError,
    domain_of,
    outlook_error,
    outlook_response,
    parse_outlook_request,
    thunderbird_config,
)
from mailserver.web.i18n import t
from mailserver.web.monitoring import Monitoring
from mailserver.web.pages import error_page
from mailserver.web.security import Cookies, Signer, load_or_create_key, security_headers

log = logging.getLogger("mailserver.web")

STATIC = Path(__file__).parent / "static"
XML = "application/xml"
# Forms are a few hundred bytes; nothing here accepts uploads.
MAX_BODY = 64 * 1024


def build_web_app(app: App, key: bytes, tls: bool) -> web.Application:
    """The aiohttp application (separate from the listener so tests can also run it on port 0)."""
    cookies = Cookies(Signer(key), tls)
    pages = AccountPages(app, cookies)
    monitoring = Monitoring(app)
    settings = app.settings

    async def root(request: web.Request) -> web.Response:
        return web.Response(status=302, headers={"Location": "/account"})

    async def thunderbird(request: web.Request) -> web.Response:
        address = request.query.get("emailaddress")
        if address is not None and domain_of(address) not in settings.domains:
            return web.Response(status=404, text="no configuration for this domain\n")
        return web.Response(body=thunderbird_config(settings), content_type=XML, charset="utf-8")

    async def autodiscover(request: web.Request) -> web.Response:
        body = await request.content.read(MAX_REQUEST_BYTES + 1)
        try:
            document = outlook_response(settings, parse_outlook_request(body))
        except AutodiscoverError as e:
            document = outlook_error(e, app.clock())
        return web.Response(body=document, content_type=XML, charset="utf-8")

    @web.middleware
    async def not_found(request: web.Request, handler: web.Handler) -> web.StreamResponse:
        """A friendly, bilingual 404 for people; machines get the same status."""
        try:
            return await handler(request)
        except web.HTTPNotFound:
            lang = pages.lang(request)
            return web.Response(text=error_page(lang, t(lang, "not_found")), status=404, content_type="text/html",
                                charset="utf-8")

    webapp = web.Application(client_max_size=MAX_BODY, middlewares=[not_found])
    webapp.on_response_prepare.append(security_headers(tls))
    webapp.router.add_get("/", root)
    webapp.router.add_get("/account", pages.show)
    webapp.router.add_post("/account/signin", pages.sign_in)
    webapp.router.add_post("/account/password", pages.change_password)
    webapp.router.add_post("/account/signout", pages.sign_out)
    webapp.router.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
    webapp.router.add_get("/.well-known/autoconfig/mail/config-v1.1.xml", thunderbird)
    webapp.router.add_get("/mail/config-v1.1.xml", thunderbird)
    for path in ("/autodiscover/autodiscover.xml", "/Autodiscover/Autodiscover.xml"):
        webapp.router.add_post(path, autodiscover)
    webapp.router.add_get("/healthz", monitoring.healthz)
    webapp.router.add_get("/metrics", monitoring.metrics)
    return webapp


class WebService:
    """`mailserver serve`'s web listener (see mailserver/serve.py for the Service protocol)."""

    name = "web"

    def __init__(self, app: App) -> None:
        self.app = app
        self.runner: web.AppRunner | None = None

    @property
    def listeners(self) -> tuple[str, ...]:
        return ("web",) if self.app.settings.listeners.web.enabled else ()

    async def start(self) -> list[str]:
        settings = self.app.settings
        listener = settings.listeners.web
        if not listener.enabled:
            return []
        key = load_or_create_key(settings.paths.web_session_key)
        webapp = build_web_app(self.app, key, listener.tls)
        self.runner = web.AppRunner(webapp, access_log=logging.getLogger("mailserver.web.access"),
                                    access_log_format='%a "%r" %s %b %Tfs', handle_signals=False,
                                    # SIGTERM: requests under way finish within the server's grace period
                                    shutdown_timeout=settings.shutdown_grace)
        await self.runner.setup()
        tls = self.app.server_tls().context if listener.tls else None  # shared by every listener, reloadable
        site = web.TCPSite(self.runner, listener.bind_host, listener.port, ssl_context=tls, reuse_address=True)
        await site.start()
        scheme = "https" if listener.tls else "http"
        return [f"{scheme}://{listener.host}:{listener.port}"]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
