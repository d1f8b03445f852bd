"""A real clamd for tests: Debian's `clamav-daemon` with only an EICAR signature.

clamd refuses to start without a signature database and freshclam cannot
download here; one custom `.ndb` line is enough and starts in well under a
second (../shared/spec/COMPONENTS.md). It listens on a unix socket in the
test's temporary folder, so parallel worktrees never share it. The process
is stopped by its own pid, never by name.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from tests.daemons import Daemon

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
CLAMD = shutil.which("clamd") or "/usr/sbin/clamd"


class Clamd(Daemon):
    name = "clamd"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.socket = folder / "clamd.sock"
        self.log_file = folder / "clamd.log"

    def start(self, timeout: float = 30.0, extra: str = "") -> Clamd:
        """`extra`: more clamd.conf lines (e.g. `LocalSocketMode 666` for a client running as another uid)."""
        db = self.folder / "db"
        db.mkdir(parents=True, exist_ok=True)
        (db / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
        conf = self.folder / "clamd.conf"
        conf.write_text(
            f"Foreground yes\nDatabaseDirectory {db}\nLocalSocket {self.socket}\n"
            f"PidFile {self.folder / 'clamd.pid'}\nLogFile {self.log_file}\n"
            "StreamMaxLength 64M\nMaxFileSize 64M\nMaxScanSize 200M\n" + extra
        )
        self.launch([CLAMD, "--config-file", str(conf)], timeout)
        return self

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(self.socket))
                s.sendall(b"zPING\0")
                return s.recv(16) == b"PONG\0"
        except OSError:
            return False
