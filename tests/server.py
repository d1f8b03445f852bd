"""`mailserver serve` as a real subprocess for end-to-end tests.

The server's output is drained by a thread into `lines`: a server that logs
every request would otherwise fill the pipe and stop, which looks like a
hang in whichever test runs longest.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path

from policy.loader import load
from policy.settings import Settings
from tests.helpers import ROOT


class ServerProcess:
    def __init__(self, config: Path, *args: str) -> None:
        self.config = config
        self.args = args
        self.settings: Settings = load(config).settings
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._new_line = threading.Condition()

    # ------------------------------------------------------------------ life cycle

    def start(self, ready: str = "ready:", timeout: float = 30.0) -> ServerProcess:
        env = {**os.environ}
        env.pop("MAILSERVER_CONFIG", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mailserver", "--config", str(self.config), "serve", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
        )
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()
        self.wait_for(ready, timeout)
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._new_line:
                self.lines.append(line)
                self._new_line.notify_all()
        with self._new_line:
            self._new_line.notify_all()

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30.0, count: int = 1) -> str:
        """Block until `text` appears in `count` lines of the output; the output so far is returned."""
        deadline = time.monotonic() + timeout
        with self._new_line:
            while True:
                if sum(text in line for line in self.lines) >= count:
                    return self.output
                if self.proc is not None and self.proc.poll() is not None and not self._reader_alive():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._new_line.wait(min(remaining, 0.5))
        raise AssertionError(f"{text!r} not seen in the server output:\n{self.output}")

    def _reader_alive(self) -> bool:
        return self._reader is not None and self._reader.is_alive()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Stop the server (only the process this object started) and return its exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ where it listens

    def address(self, listener: str) -> tuple[str, int]:
        lst = getattr(self.settings.listeners, listener)
        return (lst.bind_host or "127.0.0.1", lst.port)

    @property
    def web_url(self) -> str:
        host, port = self.address("web")
        scheme = "https" if self.settings.listeners.web.tls else "http"
        return f"{scheme}://{host}:{port}"

    def tls_client_context(self) -> ssl.SSLContext:
        """A client context that trusts the server's (self-signed) certificate and checks its name."""
        return ssl.create_default_context(cafile=str(self.settings.cert_path))
