"""The container image, built from the Dockerfile unchanged and run with podman (issue 11).

Run by `.ci/container-check` (`make container-check`, part of `make test`),
which installs podman and builds the stand-in base image first. Not a
pytest module: it takes minutes and needs root's podman, so developers can
run `pytest` alone.

What it proves, against the real image and real clients on loopback:

1. the image builds (multi-stage, wheels then a slim runtime);
2. the first start on empty volumes initialises them by itself (the
   configuration from the templates and MAILSERVER_* variables, the data
   folder), as the non-root user, and binds the standard ports
   25/465/587/143/993/443 inside the container (the file capability of
   bind-low-ports.py);
3. SMTP answers on 25 (with STARTTLS) and a message sent in on 25 and one
   submitted on 587 (STARTTLS + AUTH) are read back over IMAP on 993 (TLS);
4. /healthz answers: the image's HEALTHCHECK (`podman healthcheck run`)
   passes, and the web listener answers from outside;
5. SIGHUP reloads (policy and certificate, logged), SIGTERM to PID 1 (no
   --init) drains and stops with exit status 0;
6. the server log is on the data volume as well as on stdout (Đ7.2);
7. a second start on the same volumes keeps the mail;
8. `mailserver backup -` out of the running container, restored into an
   empty volume by a new container, serves the same mail.

Everything it creates (containers, volumes, the image) has a unique name
and is removed at the end, also on failure; the cached stand-in base image
is kept. It uses clamd from Debian on the host, with an EICAR-only
database, shared into the container as the unix socket the configuration
template names (/run/clamav/clamd.ctl), as compose.yaml shares clamav's.
"""

from __future__ import annotations

import hashlib
import imaplib
import json
import os
import secrets
import shutil
import smtplib
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import default
from pathlib import Path
from typing import Any

from tests.clamd import Clamd
from tests.helpers import ROOT, free_port
from tests.smtp_fixtures import client_tls as unverified

PORTS = {"smtp": 25, "submissions": 465, "submission": 587, "imap": 143, "imaps": 993, "web": 443}
PASSWORD = "Matkhau@2026"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class CheckFailed(Exception):
    pass


def step(text: str) -> None:
    print(f"container check: {text}", flush=True)


def podman(*args: str, check: bool = True, timeout: float = 600, input: str | None = None,
           capture: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], capture_output=capture, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise CheckFailed(f"podman {' '.join(args[:3])} ... failed ({proc.returncode}):\n"
                          f"{(proc.stderr or '')[-3000:]}{(proc.stdout or '')[-2000:]}")
    return proc


def wait_until(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
    """Poll `probe` until it is true; the machine is shared and slow, so timeouts are generous."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:g} s waiting for {what}")


class Check:
    def __init__(self) -> None:
        self.id = f"{os.getpid()}-{secrets.token_hex(3)}"
        self.image = f"localhost/phuyen-mailserver-check:{self.id}"
        self.containers: list[str] = []
        self.volumes: list[str] = []
        self.work = Path(tempfile.mkdtemp(prefix="mailserver-container-check-"))
        self.ready_seconds = 0.0  # of the last wait_ready: from `podman run`/`start` to "ready:" in the log
        self.clamd = Clamd(self.work / "clamd")

    # ------------------------------------------------------------------ podman objects (ours only)

    def volume(self, role: str) -> str:
        name = f"phuyen-check-{self.id}-{role}"
        podman("volume", "create", name)
        self.volumes.append(name)
        return name

    def run(self, name: str, data: str, etc: str, ports: dict[str, int]) -> str:
        cname = f"phuyen-check-{self.id}-{name}"
        args = ["run", "-d", "--name", cname,
                # PID 1 is `mailserver serve` itself (no --init): its SIGTERM handling is under test
                "--health-interval", "disable",  # no systemd timers here; `podman healthcheck run` below
                "-v", f"{data}:/var/lib/mailserver", "-v", f"{etc}:/etc/mailserver",
                "-v", f"{self.clamd.socket}:/run/clamav/clamd.ctl",
                # used only while the config volume is empty (first-config.py); the socket above
                "-e", "MAILSERVER_HOSTNAME=mail.phuyen.gov.vn", "-e", "MAILSERVER_DOMAINS=phuyen.gov.vn",
                "-e", "MAILSERVER_CLAMD=/run/clamav/clamd.ctl"]
        for listener, host_port in ports.items():
            args += ["-p", f"127.0.0.1:{host_port}:{PORTS[listener]}"]
        podman(*args, self.image)
        self.containers.append(cname)
        return cname

    def logs(self, cname: str) -> str:
        p = podman("logs", cname, check=False)
        return (p.stdout or "") + (p.stderr or "")

    def wait_ready(self, cname: str, count: int = 1) -> str:
        """Until the server has logged its `count`-th "ready:"; also records how long that took."""
        t = time.monotonic()

        def ready() -> bool:
            state = podman("inspect", "--format", "{{.State.Status}}", cname, check=False).stdout.strip()
            if state in ("exited", "stopped"):
                raise CheckFailed(f"{cname} exited:\n{self.logs(cname)[-4000:]}")
            return self.logs(cname).count("ready:") >= count

        wait_until(f"{cname} to be ready", ready, timeout=240)
        self.ready_seconds = time.monotonic() - t
        return self.logs(cname)

    def exec(self, cname: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", cname, *args, check=check, timeout=120)

    def cleanup(self) -> None:
        for c in reversed(self.containers):
            podman("rm", "-f", "-t", "5", c, check=False)
        for v in self.volumes:
            podman("volume", "rm", "-f", v, check=False)
        podman("rmi", "-f", self.image, check=False)
        self.clamd.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    # ------------------------------------------------------------------ the check

    def main(self) -> None:
        started = time.monotonic()
        (self.work / "clamd").mkdir()
        self.clamd.start(extra="LocalSocketMode 666\n")  # the container's uid must be able to connect

        step(f"building the Dockerfile unchanged as {self.image}")
        t = time.monotonic()
        podman("build", "--format", "docker", "--pull=never", "--layers=false",
               "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro", "-t", self.image, str(ROOT), timeout=1800)
        size = podman("image", "inspect", "--format", "{{.Size}}", self.image).stdout.strip()
        step(f"built in {time.monotonic() - t:.0f} s, {int(size) / 1e6:.0f} MB")
        user = podman("image", "inspect", "--format", "{{.Config.User}}", self.image).stdout.strip()
        health = podman("image", "inspect", "--format", "{{json .Config.Healthcheck}}", self.image).stdout
        if user != "mailserver" or "healthcheck" not in health:
            raise CheckFailed(f"image user {user!r}, healthcheck {health.strip()}")

        data, etc = self.volume("data"), self.volume("etc")
        ports = {name: free_port() for name in PORTS}
        first = self.run("first", data, etc, ports)
        logs = self.wait_ready(first)
        step(f"first start on empty volumes: initialised and ready in {self.ready_seconds:.1f} s")
        for needle in ("first start: wrote /etc/mailserver/mailserver.yaml", "ok: /etc/mailserver/mailserver.yaml",
                       "created self-signed for mail.phuyen.gov.vn, autoconfig.phuyen.gov.vn",
                       "temporary password", "smtp listening on", "imaps listening on"):
            if needle not in logs:
                raise CheckFailed(f"{needle!r} not in the first start's log:\n{logs[-4000:]}")
        uid = self.exec(first, "id", "-u").stdout.strip()
        pid1 = self.exec(first, "cat", "/proc/1/cmdline").stdout.replace("\0", " ")
        if uid == "0" or "mailserver serve" not in pid1:
            raise CheckFailed(f"uid {uid}, PID 1 is {pid1!r}")
        step(f"runs as uid {uid}; PID 1 is `{pid1.strip()}`; standard ports bound inside the container")

        added = json.loads(self.exec(first, "mailserver", "--json", "account", "add", "--name",
                                     "Nguyễn Thị Kiểm Tra", "--password", PASSWORD).stdout)
        address = added["address"]
        self.smtp_in(ports, address, "Thư vào qua cổng 25")
        self.submit(ports, address, "Thư gửi qua cổng 587")
        self.read_back(ports, address, {"Thư vào qua cổng 25", "Thư gửi qua cổng 587"})
        step(f"SMTP 25 (STARTTLS) and 587 (STARTTLS + AUTH) in, IMAP 993 out: both messages read back for {address}")

        self.health(first, ports)

        podman("kill", "--signal", "HUP", first)
        wait_until("the SIGHUP reload in the log",
                   lambda: "certificate unchanged" in self.logs(first) and "policy unchanged" in self.logs(first),
                   timeout=60)
        step("SIGHUP: policy and certificate reloaded (unchanged), server still serving")

        backup = self.work / "backup.tar.gz"
        with backup.open("wb") as f:
            p = subprocess.run(["podman", "exec", first, "mailserver", "backup", "-", "--gzip"], stdout=f,
                               stderr=subprocess.PIPE, text=False, timeout=600)
        if p.returncode != 0:
            raise CheckFailed(f"backup failed: {p.stderr.decode(errors='replace')}")
        step(f"`mailserver backup -` of the live container: {backup.stat().st_size / 1e3:.0f} kB")

        t = time.monotonic()
        podman("stop", "-t", "30", first, timeout=120)
        stopped = time.monotonic() - t
        code = podman("inspect", "--format", "{{.State.ExitCode}}", first).stdout.strip()
        logs = self.logs(first)
        if code != "0" or "stopping: no new connections" not in logs or "stopped" not in logs.splitlines()[-1]:
            raise CheckFailed(f"SIGTERM: exit code {code}, log ends:\n{logs[-2000:]}")
        step(f"SIGTERM to PID 1: drained and stopped in {stopped:.1f} s, exit status 0")

        self.logs_on_volume(data)

        podman("start", first)
        self.wait_ready(first, count=2)
        again = self.ready_seconds
        self.read_back(ports, address, {"Thư vào qua cổng 25", "Thư gửi qua cổng 587"})
        if self.logs(first).count("temporary password") != 1:
            raise CheckFailed("the second start initialised the directory again")
        step(f"second start on the same volumes: ready in {again:.1f} s, nothing re-initialised, "
             "the mail is still there")
        podman("stop", "-t", "30", first, timeout=120)

        restored_data, restored_etc = self.volume("restored-data"), self.volume("restored-etc")
        restore = podman("run", "--rm", "-i", "-v", f"{restored_data}:/var/lib/mailserver",
                         "-v", f"{restored_etc}:/etc/mailserver", "-v", f"{backup}:/backup.tar.gz:ro",
                         self.image, "restore", "/backup.tar.gz", timeout=600)
        restored = next(line for line in restore.stdout.splitlines() if line.startswith("restored"))
        step("`mailserver restore` into empty volumes: " + " ".join(restored.split()[1:]))
        second = self.run("restored", restored_data, restored_etc, ports)
        self.wait_ready(second)
        self.read_back(ports, address, {"Thư vào qua cổng 25", "Thư gửi qua cổng 587"})
        step(f"the restored server (ready in {self.ready_seconds:.1f} s) serves the same mail over IMAP")
        podman("stop", "-t", "30", second, timeout=120)
        step(f"PASSED in {time.monotonic() - started:.0f} s")

    # ------------------------------------------------------------------ probes (real clients)

    def smtp_in(self, ports: dict[str, int], rcpt: str, subject: str) -> None:
        """From the internet to the MX: EHLO, STARTTLS, MAIL, RCPT, DATA on port 25."""
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=120) as c:
            code, banner = c.ehlo("mx.example.org")
            if code != 250 or b"STARTTLS" not in banner:
                raise CheckFailed(f"EHLO on 25: {code} {banner!r}")
            c.starttls(context=unverified())
            c.send_message(self.message("nguoigui@example.org", rcpt, subject))

    def submit(self, ports: dict[str, int], address: str, subject: str) -> None:
        """Staff sending: STARTTLS then AUTH on 587, as Outlook does."""
        with smtplib.SMTP("127.0.0.1", ports["submission"], timeout=120) as c:
            c.starttls(context=unverified())
            c.login(address, PASSWORD)
            c.send_message(self.message(address, address, subject))

    @staticmethod
    def message(sender: str, rcpt: str, subject: str) -> EmailMessage:
        m = EmailMessage()
        m["From"], m["To"], m["Subject"] = sender, rcpt, subject
        m["Message-ID"] = f"<{secrets.token_hex(8)}@container-check.example>"
        m.set_content(f"{subject}: nội dung kiểm tra.\n")
        return m

    def read_back(self, ports: dict[str, int], address: str, subjects: set[str]) -> None:
        def found() -> bool:
            c = imaplib.IMAP4_SSL("127.0.0.1", ports["imaps"], ssl_context=unverified(), timeout=60)
            try:
                c.login(address, PASSWORD)
                c.select("INBOX", readonly=True)
                _, data = c.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                c.logout()
            except (OSError, imaplib.IMAP4.error):
                return False
            parser = BytesHeaderParser(policy=default)
            seen = {str(parser.parsebytes(part[1])["subject"]) for part in data if isinstance(part, tuple)}
            return subjects <= seen

        wait_until(f"{', '.join(sorted(subjects))} over IMAP", found, timeout=90, interval=2)

    def health(self, cname: str, ports: dict[str, int]) -> None:
        hc = podman("healthcheck", "run", cname, check=False)
        if hc.returncode != 0:
            detail = self.exec(cname, "mailserver", "healthcheck", check=False)
            raise CheckFailed(f"HEALTHCHECK failed: {hc.stdout}{hc.stderr}\n{detail.stdout}{detail.stderr}")
        report = json.loads(self.exec(cname, "mailserver", "--json", "healthcheck").stdout)
        failing = [n for n, c in report["checks"].items() if not c["ok"]]
        if failing or not {"clamd", "disk", "listener:smtp", "listener:imaps", "listener:web"} <= set(report["checks"]):
            raise CheckFailed(f"/healthz: {report}")
        # From outside the container the web listener answers too; /healthz itself is for
        # monitoring.allow only (127.0.0.0/8 unless configured), which a port-forward may not be.
        try:
            with urllib.request.urlopen(f"https://127.0.0.1:{ports['web']}/healthz", context=unverified(),
                                        timeout=30) as r:
                outside: Any = r.status
        except urllib.error.HTTPError as e:
            outside = e.code
        if outside not in (200, 403):
            raise CheckFailed(f"/healthz from outside: HTTP {outside}")
        step(f"HEALTHCHECK passes ({len(report['checks'])} checks: {', '.join(report['checks'])}); "
             f"https://…:443/healthz from outside: HTTP {outside}")

    def logs_on_volume(self, data: str) -> None:
        mount = Path(podman("volume", "inspect", "--format", "{{.Mountpoint}}", data).stdout.strip())
        logs = sorted((mount / "log").glob("server-*.log"))
        text = "".join(p.read_text(errors="replace") for p in logs)
        if "ready:" not in text or "stopped" not in text:
            raise CheckFailed(f"server log on the data volume: {[p.name for p in logs]}")
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        step(f"server log also on the data volume: {', '.join(p.name for p in logs)} ({digest})")


def main() -> int:
    check = Check()
    try:
        check.main()
        return 0
    except (CheckFailed, subprocess.TimeoutExpired) as e:
        print(f"container check FAILED: {e}", file=sys.stderr)
        for c in check.containers:
            print(f"--- log of {c} ---\n{check.logs(c)[-3000:]}", file=sys.stderr)
        return 1
    finally:
        check.cleanup()


if __name__ == "__main__":
    sys.exit(main())
