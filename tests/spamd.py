"""A real spamd for tests: Debian's `spamd` (SpamAssassin 4.0.1) on a free loopback port.

It starts offline in a second or two with Debian's rules (no sa-update;
COMPONENTS.md): `-L` (local tests only: no DNS, no network), `-x` (no
per-user configuration), `-l` (allow TELL, which training needs),
`--allowed-ips=127.0.0.1`. Its Bayes database is in a folder of its own,
with automatic learning off, so the learned counts change only when a test
trains it. The process is stopped by its own pid, never by name.

Started as root, spamd drops to `nobody`; the Bayes folder must then be
writable by `nobody` and reachable through every parent folder, which
pytest's temporary folders (mode 0700) are not. So the daemon gets a
private folder of its own under the system's temporary directory
(`tempfile.mkdtemp`, a unique name, removed at the end).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from tests.daemons import Daemon
from tests.helpers import free_port

SPAMD = shutil.which("spamd") or "/usr/sbin/spamd"
SA_LEARN = shutil.which("sa-learn") or "/usr/bin/sa-learn"
# The Generic Test for Unsolicited Bulk Email: SpamAssassin scores it 1000 (COMPONENTS.md).
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


class Spamd(Daemon):
    name = "spamd"

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mailserver-test-spamd-"))
        self.bayes = self.folder / "bayes"
        self.log_file = self.folder / "spamd.log"
        self.port = free_port()
        self.socket = self.folder / "spamd.sock"  # it listens here too (spamd.socket in mailserver.yaml)

    def start(self, timeout: float = 120.0) -> Spamd:
        self.folder.chmod(0o755)
        self.bayes.mkdir()
        args = [SPAMD, f"--listen=127.0.0.1:{self.port}", f"--listen={self.socket}", "--allowed-ips=127.0.0.1",
                "-L", "-x", "-l",
                "--max-children=2", f"--pidfile={self.folder / 'spamd.pid'}", "-s", str(self.log_file),
                f"--cf=bayes_path {self.bayes}/bayes", "--cf=bayes_file_mode 0666", "--cf=bayes_auto_learn 0"]
        if os.geteuid() == 0:
            os.chown(self.bayes, pwd.getpwnam("nobody").pw_uid, -1)
            args += ["-u", "nobody"]
        self.launch(args, timeout, poll=0.1)
        return self

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                s.sendall(b"PING SPAMC/1.5\r\n\r\n")
                return b"PONG" in s.recv(64)
        except OSError:
            return False

    def learned(self) -> tuple[int, int]:
        """(spam, ham) messages in spamd's Bayes database, as `sa-learn --dump magic` reads them."""
        if not any(self.bayes.iterdir()):
            return 0, 0
        proc = subprocess.run([SA_LEARN, "--dbpath", str(self.bayes), "--dump", "magic"], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "HOME": str(self.folder)}, check=True)
        counts = {name: value for value, name in
                  re.findall(r"^\S+\s+\S+\s+(\d+)\s+\S+\s+non-token data: (nspam|nham)$", proc.stdout, re.M)}
        return int(counts.get("nspam", 0)), int(counts.get("nham", 0))

    def stop(self, timeout: float = 30.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.folder, ignore_errors=True)
