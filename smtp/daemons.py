"""Where a helper daemon listens (clamd, spamd): a unix socket, or a host and port, and one timeout.

Both clients (`smtp.clamd.ClamdClient`, `smtp.spamd.SpamdClient`) are built
by the composition root from a `mailserver.yaml` section of this shape and
share these few properties, so `/healthz`, the server log and the CLI name
a daemon the same way whichever it is.
"""

from __future__ import annotations

from pathlib import Path


class DaemonAddress:
    def __init__(self, *, socket: Path | None = None, host: str | None = None, port: int | None = None,
                 timeout: float = 30.0) -> None:
        self.socket = socket
        self.host = host
        self.port = port
        self.timeout = timeout

    @property
    def configured(self) -> bool:
        return self.socket is not None or (self.host is not None and self.port is not None)

    @property
    def address(self) -> str:
        if self.socket is not None:
            return str(self.socket)
        return f"{self.host}:{self.port}" if self.configured else "(not configured)"
