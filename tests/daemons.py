"""Helper daemons the tests start for real (clamd, spamd): launched, pinged until they answer, and
stopped by their own pid, never by name (other engineers' daemons run on the same machine)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


class Daemon:
    name = "daemon"
    log_file: Path
    proc: subprocess.Popen[bytes] | None = None

    def ping(self) -> bool:
        raise NotImplementedError

    def launch(self, args: list[str], timeout: float, poll: float = 0.05) -> None:
        """Start `args` and wait until `ping()` answers; otherwise stop it and raise with its log."""
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(poll)
        log = self.log_file.read_text(errors="replace") if self.log_file.exists() else ""
        self.stop()
        raise RuntimeError(f"{self.name} did not start:\n{log}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
