"""A real Dovecot (Debian dovecot-imapd) on loopback as the "old server" of migration tests (Đ8.2.d).

Started by the tests as a foreground process with its own configuration in
a temporary folder: free ports for IMAP (STARTTLS) and IMAPS, a passwd-file
of users with {SHA512-CRYPT} hashes, a master user (`admin`) for
AUTHENTICATE PLAIN with an authorization identity, Maildir++ with "." as
the hierarchy separator (Dovecot's default for Maildir, so names are mapped
from "." to "/"), and SPECIAL-USE on some folders only, so both ways of
finding special folders are exercised. No system service, no port 143,
no systemd. When Dovecot is missing the tests fail with the package name:
`make test` installs it (.ci/test-packages.txt).
"""

from __future__ import annotations

import contextlib
import imaplib
import os
import pwd
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
DOVEADM = shutil.which("doveadm") or "/usr/bin/doveadm"
MASTER_USER, MASTER_PASSWORD = "admin", "Quản-trị#2026"


@dataclass
class Dovecot:
    base: Path
    imap_port: int
    imaps_port: int
    proc: subprocess.Popen[bytes] | None = None
    users: dict[str, str] = field(default_factory=dict)

    @property
    def cert(self) -> Path:
        return self.base / "cert.pem"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def add_user(self, user: str, password: str) -> None:
        """Rewrite the passwd-file atomically (Dovecot rereads it when it changes; a file truncated and
        rewritten within one clock tick could be read half-written and kept) and wait until it logs in."""
        self.users[user] = password
        lines = [f"{u}:{hash_password(p)}" for u, p in self.users.items()]
        tmp = self.base / "users.tmp"
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.base / "users")
        deadline = time.monotonic() + 60
        while True:
            try:
                self.login(user).logout()
                return
            except imaplib.IMAP4.error:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def login(self, user: str) -> imaplib.IMAP4_SSL:
        c = imaplib.IMAP4_SSL("localhost", self.imaps_port, ssl_context=self.context(), timeout=60)
        c._encoding = "utf-8"  # Vietnamese passwords through LOGIN
        c.login(user, self.users[user])
        return c

    def maildir(self, user: str) -> Path:
        return self.base / "mail" / user


def hash_password(password: str, scheme: str = "SHA512-CRYPT") -> str:
    """What Dovecot itself writes: `doveadm pw` (with its {SCHEME} prefix)."""
    out = subprocess.run([DOVEADM, "pw", "-s", scheme, "-p", password], capture_output=True, text=True, check=True,
                         timeout=60)
    return out.stdout.strip()


def _config(base: Path, imap_port: int, imaps_port: int) -> str:
    if os.geteuid() == 0:
        login_user, internal_user, mail_user = "dovenull", "dovecot", "dovecot"
    else:  # Dovecot runs unprivileged when every user it would switch to is the one running it
        login_user = internal_user = mail_user = pwd.getpwuid(os.geteuid()).pw_name
    return f"""
base_dir = {base}/run
state_dir = {base}/state
instance_name = dovecot-migrate-test-{imap_port}
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{base}/cert.pem
ssl_key = <{base}/key.pem
default_login_user = {login_user}
default_internal_user = {internal_user}
mail_location = maildir:{base}/mail/%u
mail_uid = {mail_user}
mail_gid = {pwd.getpwnam(mail_user).pw_gid}
first_valid_uid = 1
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_master_user_separator = *
passdb {{
  driver = passwd-file
  args = {base}/master-users
  master = yes
  result_success = continue
}}
passdb {{
  driver = passwd-file
  args = {base}/users
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={pwd.getpwnam(mail_user).pw_gid} home={base}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
namespace inbox {{
  inbox = yes
  separator = .
  mailbox "Deleted Items" {{
    special_use = \\Trash
  }}
  mailbox Drafts {{
    special_use = \\Drafts
  }}
}}
"""


@contextlib.contextmanager
def running_dovecot() -> Iterator[Dovecot]:
    if not os.path.exists(DOVECOT):
        raise RuntimeError("dovecot is not installed: apt-get install dovecot-imapd dovecot-core "
                           "(make test does this; see .ci/test-packages.txt)")
    # not under pytest's 0700 tmp folders: Dovecot's mail processes run as another user
    base = Path(tempfile.mkdtemp(prefix="dovecot-migrate-"))
    base.chmod(0o755)
    dv = Dovecot(base, free_port(), free_port())
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(base / "key.pem"),
                        "-out", str(dv.cert), "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=120)
        (base / "master-users").write_text(f"{MASTER_USER}:{hash_password(MASTER_PASSWORD)}\n", encoding="utf-8")
        (base / "users").write_text("", encoding="utf-8")
        mail = base / "mail"
        mail.mkdir()
        if os.geteuid() == 0:
            pw = pwd.getpwnam("dovecot")
            os.chown(mail, pw.pw_uid, pw.pw_gid)
        (base / "dovecot.conf").write_text(_config(base, dv.imap_port, dv.imaps_port), encoding="utf-8")
        dv.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(base / "dovecot.conf")],
                                   stdout=subprocess.DEVNULL, stderr=open(base / "stderr", "wb"))  # noqa: SIM115
        _wait_ready(dv)
        yield dv
    finally:
        if dv.proc is not None:
            dv.proc.terminate()
            try:
                dv.proc.wait(60)
            except subprocess.TimeoutExpired:
                dv.proc.kill()
                dv.proc.wait(30)
        shutil.rmtree(base, ignore_errors=True)


def _wait_ready(dv: Dovecot) -> None:
    deadline = time.monotonic() + 120  # a loaded shared machine: generous
    while time.monotonic() < deadline:
        assert dv.proc is not None
        if dv.proc.poll() is not None:
            log = (dv.base / "stderr").read_text(errors="replace")
            with contextlib.suppress(FileNotFoundError):
                log += (dv.base / "dovecot.log").read_text(errors="replace")
            raise RuntimeError(f"dovecot exited ({dv.proc.returncode}): {log}")
        try:
            with socket.create_connection(("127.0.0.1", dv.imap_port), timeout=5) as s:
                if s.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("dovecot did not start listening")
