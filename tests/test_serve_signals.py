"""Signals of `mailserver serve`, as a container runtime or systemd sends them (issue 11).

* SIGHUP swaps the TLS certificate of every listener for new connections,
  also from ECDSA to RSA (OpenSSL keeps one certificate per key type, so an
  in-place load would keep serving the old one); open sessions continue;
  an unusable new certificate is refused and the old one stays.
* SIGHUP applies an edited policy.yaml (the SIZE of new SMTP connections,
  IMAP APPENDLIMIT); a broken edit is refused with the file, line and key,
  and the old policy stays.
* SIGTERM drains: idle SMTP clients get 421 and idle IMAP clients BYE at
  once; a message in the middle of DATA may finish and is acknowledged and
  stored; one that does not finish within `shutdown_grace` is cut (never
  acknowledged); the process exits 0.

The real server runs as a subprocess; clients are smtplib/imaplib/ssl.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import imaplib
import json
import re
import signal
import smtplib
import socket
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from policy.limits import message_size_limit
from policy.model import AttachmentPolicy
from tests.clamd import Clamd
from tests.helpers import FAST_HASHING, cli, write_config
from tests.server import ServerProcess
from tests.smtp_fixtures import client_tls as unverified  # the probes compare certificates, not trust them

PASSWORD = "Matkhau@2026"
TLS_LISTENERS = ("smtp", "submission", "submissions", "imap", "imaps", "web")


def served_certificate(server: ServerProcess, listener: str) -> str:
    """SHA-256 of the certificate a new connection to `listener` is given (STARTTLS where the port uses it)."""
    host, port = server.address(listener)
    if listener in ("smtp", "submission"):
        with smtplib.SMTP(host, port, timeout=30) as c:
            c.starttls(context=unverified())
            der = c.sock.getpeercert(binary_form=True)  # type: ignore[union-attr]
    elif listener == "imap":
        i = imaplib.IMAP4(host, port, timeout=30)
        i.starttls(ssl_context=unverified())
        der = i.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        i.logout()
    else:  # implicit TLS: submissions, imaps, web
        with socket.create_connection((host, port), timeout=30) as raw, \
                unverified().wrap_socket(raw, server_hostname="mail.phuyen.gov.vn") as s:
            der = s.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def file_fingerprint(cert: Path) -> str:
    c = x509.load_pem_x509_certificate(cert.read_bytes())
    return hashlib.sha256(c.public_bytes(serialization.Encoding.DER)).hexdigest()


def write_rsa_certificate(cert: Path, key: Path, name: str = "mail.phuyen.gov.vn") -> None:
    """An RSA certificate, as a CA would issue after the ECDSA one `init` made."""
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    c = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(k.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
         .not_valid_after(now + dt.timedelta(days=90))
         .add_extension(x509.SubjectAlternativeName([x509.DNSName(name), x509.DNSName("autoconfig.phuyen.gov.vn"),
                                                     x509.DNSName("autodiscover.phuyen.gov.vn")]), critical=False)
         .sign(k, hashes.SHA256()))
    key.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))


def prepared(tmp_path: Path, clamd: Clamd, extra: str = "") -> tuple[Path, str]:
    """Config with every listener on TLS (the web too, on loopback), initialised, with one mailbox."""
    cfg = write_config(tmp_path, extra=f"clamd: {{socket: {clamd.socket}}}\n"
                                       "dns: {nameservers: [127.0.0.1], port: 9, timeout: 0.2}\n" + extra)
    cfg.write_text(cfg.read_text().replace(", tls: false", ""))
    cli(cfg, "init", check=True)
    out = cli(cfg, "--json", "account", "add", "--name", "Lê Thị Tín Hiệu", "--password", PASSWORD, check=True)
    return cfg, json.loads(out.stdout)["address"]


def ehlo_size(server: ServerProcess) -> int:
    with smtplib.SMTP(*server.address("smtp"), timeout=30) as c:
        c.ehlo("probe.example.net")
        return int(c.esmtp_features["size"])


# ---------------------------------------------------------------------------- SIGHUP: certificate


def test_sighup_swaps_the_certificate_of_every_listener_and_keeps_open_sessions(tmp_path: Path, clamd_daemon: Clamd):
    cfg, address = prepared(tmp_path, clamd_daemon)
    server = ServerProcess(cfg).start(timeout=90)
    try:
        cert, key = server.settings.cert_path, server.settings.key_path
        first = file_fingerprint(cert)
        assert {n: served_certificate(server, n) for n in TLS_LISTENERS} == dict.fromkeys(TLS_LISTENERS, first)

        # an Outlook session open across the renewal
        open_session = imaplib.IMAP4_SSL(*server.address("imaps"), ssl_context=unverified(), timeout=30)
        open_session.login(address, PASSWORD)
        open_session.select("INBOX")

        write_rsa_certificate(cert, key)  # the ACME client renewed, with another key type
        second = file_fingerprint(cert)
        assert second != first
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        server.wait_for("certificate reloaded for new connections", timeout=60)
        assert {n: served_certificate(server, n) for n in TLS_LISTENERS} == dict.fromkeys(TLS_LISTENERS, second)

        assert open_session.noop()[0] == "OK"  # the open session is untouched ...
        old_der = open_session.sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
        assert hashlib.sha256(old_der).hexdigest() == first  # ... on the certificate it started with
        open_session.logout()

        # a broken renewal (key of another certificate) is refused; the server keeps the good one
        other = tmp_path / "other"
        other.mkdir()
        write_rsa_certificate(other / "c.pem", other / "k.pem")
        key.write_bytes((other / "k.pem").read_bytes())
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        out = server.wait_for("certificate NOT reloaded", timeout=60)
        assert re.search(r"certificate NOT reloaded, the previous one stays in use: tls\.key: .* does not match",
                         out)
        assert {n: served_certificate(server, n) for n in TLS_LISTENERS} == dict.fromkeys(TLS_LISTENERS, second)
        assert server.proc.poll() is None  # type: ignore[union-attr]
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------------------- SIGHUP: policy


def test_sighup_applies_an_edited_policy_and_refuses_a_broken_one(tmp_path: Path, clamd_daemon: Clamd):
    cfg, address = prepared(tmp_path, clamd_daemon)
    policy_file = cfg.parent / "policy.yaml"
    server = ServerProcess(cfg).start(timeout=90)
    try:
        default = message_size_limit(AttachmentPolicy())
        assert ehlo_size(server) == default

        # Đ7.3.b: the province lowers the attachment limit to 5 MiB
        policy_file.write_text(FAST_HASHING + "attachments:\n  max_total: 5MiB\n", encoding="utf-8")
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        server.wait_for("policy reloaded", timeout=60)
        lowered = message_size_limit(AttachmentPolicy(max_total=5 * 1024**2))
        assert lowered < default
        assert ehlo_size(server) == lowered
        imap = imaplib.IMAP4_SSL(*server.address("imaps"), ssl_context=unverified(), timeout=30)
        imap.login(address, PASSWORD)
        caps = imap.capability()[1][0].decode()
        imap.logout()
        assert f"APPENDLIMIT={lowered}" in caps
        assert "attachments changed" in server.output

        # a typo: refused with file, line and key; the 5 MiB policy stays
        policy_file.write_text(FAST_HASHING + "attachments:\n  max_total: lots\n", encoding="utf-8")
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        out = server.wait_for("policy NOT reloaded", timeout=60)
        assert re.search(r"policy NOT reloaded, the previous one stays in use: policy\.yaml:7 "
                         r"attachments\.max_total: ", out)
        assert ehlo_size(server) == lowered

        # the time zone and mailserver.yaml wait for a restart, and say so
        policy_file.write_text(FAST_HASHING + "timezone: Asia/Bangkok\nattachments:\n  max_total: 5MiB\n",
                               encoding="utf-8")
        cfg.write_text(cfg.read_text().replace("hostname: mail.phuyen.gov.vn", "hostname: mx.phuyen.gov.vn"))
        server.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        out = server.wait_for("take effect at the next restart", timeout=60)
        assert "mailserver.yaml changed (hostname)" in out
        server.wait_for("policy timezone changed to 'Asia/Bangkok'", timeout=30)
        server.wait_for("policy unchanged", timeout=30)
        assert ehlo_size(server) == lowered
    finally:
        assert server.stop() == 0


# ---------------------------------------------------------------------------- SIGTERM


def read_reply(sock: socket.socket, timeout: float = 30.0) -> bytes:
    """One complete SMTP reply (multi-line replies until the line with a space after the code)."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
        lines = data.split(b"\r\n")
        if len(lines) > 1 and any(len(line) >= 4 and line[3:4] == b" " for line in lines[:-1]):
            return data


def smtp_session(server: ServerProcess) -> socket.socket:
    s = socket.create_connection(server.address("smtp"), timeout=30)
    assert read_reply(s).startswith(b"220")
    s.sendall(b"EHLO drain.example.net\r\n")
    assert read_reply(s).startswith(b"250")
    return s


def begin_data(server: ServerProcess, rcpt: str, marker: str) -> socket.socket:
    s = smtp_session(server)
    for command, code in ((b"MAIL FROM:<sender@example.org>", b"250"), (f"RCPT TO:<{rcpt}>".encode(), b"250"),
                          (b"DATA", b"354")):
        s.sendall(command + b"\r\n")
        reply = read_reply(s)
        assert reply.startswith(code), reply
    s.sendall(f"From: sender@example.org\r\nTo: {rcpt}\r\nSubject: {marker}\r\n\r\nfirst half\r\n".encode())
    return s


def test_sigterm_drains_connections_and_stops_cleanly(tmp_path: Path, clamd_daemon: Clamd):
    cfg, address = prepared(tmp_path, clamd_daemon, extra="shutdown_grace: 6\n")
    server = ServerProcess(cfg).start(timeout=90)
    try:
        idle_smtp = smtp_session(server)
        idle_imap = imaplib.IMAP4_SSL(*server.address("imaps"), ssl_context=unverified(), timeout=30)
        idle_imap.login(address, PASSWORD)
        idle_imap.select("INBOX")
        finishing = begin_data(server, address, "finishes during the drain")
        stalled = begin_data(server, address, "never finishes")

        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        # idle clients are told at once (RFC 5321 §3.8, RFC 3501 §7.1.5)
        assert read_reply(idle_smtp).startswith(b"421 4.3.2")
        bye = idle_imap.readline()
        assert bye.startswith(b"* BYE"), bye
        assert time.monotonic() - started < 5
        # a new client is not accepted any more
        server.wait_for("stopping: no new connections")
        with pytest.raises(OSError):
            smtp_session(server)

        # the message under way may finish: acknowledged, then the connection is closed
        finishing.sendall(b"second half\r\n.\r\n")
        reply = read_reply(finishing)
        assert reply.startswith(b"250 2.0.0"), reply
        assert read_reply(finishing).startswith(b"421 4.3.2")

        # the stalled one is cut at the end of the grace period, never acknowledged
        assert server.proc.wait(60) == 0  # type: ignore[union-attr]
        elapsed = time.monotonic() - started
        assert 5 <= elapsed < 30
        assert b"250" not in read_reply(stalled)
        server.wait_for("stopped")
        assert "closing 1 SMTP connection(s) in the middle of a transaction" in server.output
    finally:
        for s in (idle_smtp, finishing, stalled):
            s.close()
        server.stop()

    stored = [p.read_bytes() for p in (tmp_path / "data" / "mail").rglob("*")
              if p.is_file() and p.parent.name in ("new", "cur")]
    assert sum(b"Subject: finishes during the drain" in m for m in stored) == 1
    assert not any(b"Subject: never finishes" in m for m in stored)
