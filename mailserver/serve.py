"""`mailserver serve`: start every service in one event loop and stop them cleanly.

Each protocol package provides a service object with `start()` (returns
what it listens on) and `stop()`. Services are built here, in the
composition root, from the App; the order of `build_services` is the start
order, and they stop in reverse so nothing is still accepting mail while
the store it writes to closes.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Protocol

from mailserver.app import App

log = logging.getLogger("mailserver.serve")


class Service(Protocol):
    name: str

    async def start(self) -> list[str]: ...

    async def stop(self) -> None: ...


def build_services(app: App) -> list[Service]:
    """The services this version provides, in start order."""
    services: list[Service] = []
    return services


async def serve(app: App, stop: asyncio.Event | None = None) -> None:
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started: list[Service] = []
    try:
        for service in build_services(app):
            where = await service.start()
            started.append(service)
            log.info("%s listening on %s", service.name, ", ".join(where) or "(no listener)")
        if started:
            log.info("ready: %s", ", ".join(s.name for s in started))
        else:
            log.info("ready: no protocol services in this version yet (directory only); Ctrl-C stops")
        await stop.wait()
        log.info("stopping")
    finally:
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("error stopping %s", service.name)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("stopped")
