"""/healthz and /metrics of a running `mailserver serve`, with a real clamd, over real HTTP(S)."""

from __future__ import annotations

import imaplib
import json
import time
import urllib.error
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.clamd import Clamd
from tests.helpers import cli, free_port, write_config
from tests.logins import http_opener, web_probe
from tests.server import ServerProcess


def serve(tmp_path: Path, extra: str = "", tls: bool = False) -> ServerProcess:
    cfg = write_config(tmp_path, extra=extra)
    if tls:
        cfg.write_text(cfg.read_text().replace(", tls: false}", "}"))
    cli(cfg, "init", check=True)
    return ServerProcess(cfg)


def get(server: ServerProcess, path: str) -> tuple[int, dict[str, str], str]:
    try:
        with http_opener(server).open(server.web_url + path, timeout=30) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def health(server: ServerProcess) -> tuple[int, dict]:
    status, headers, body = get(server, "/healthz")
    assert headers["Content-Type"].startswith("application/json")
    return status, json.loads(body)


@pytest.fixture
def clamd(tmp_path):
    daemon = Clamd(tmp_path / "clamd").start()
    yield daemon
    daemon.stop()


def test_healthz_checks_each_listener_clamd_and_disk(tmp_path, clamd):
    with serve(tmp_path, f"clamd: {{socket: {clamd.socket}}}\n") as server:
        status, report = health(server)
        assert status == 200 and report["status"] == "ok", report
        checks = report["checks"]
        host, port = server.address("web")
        assert checks["listener:web"] == {"ok": True, "address": f"{host}:{port}", "ms": checks["listener:web"]["ms"]}
        assert checks["clamd"]["ok"] and checks["clamd"]["address"] == str(clamd.socket)
        assert checks["disk"]["ok"] and checks["disk"]["free_bytes"] >= checks["disk"]["min_free_bytes"]
        # Đ8.2.b: without clamd no message can be scanned, so the server is not healthy
        clamd.stop()
        status, report = health(server)
        assert status == 503 and report["status"] == "fail"
        assert not report["checks"]["clamd"]["ok"] and report["checks"]["clamd"]["error"]
        assert report["checks"]["listener:web"]["ok"]


def test_d8_2_b_healthz_and_the_start_log_say_whether_spam_is_scored(tmp_path, spamd_daemon):
    """No spamd configured is the operator's choice (healthy, but said); a configured spamd that does
    not answer fails /healthz, as clamd does."""
    with serve(tmp_path / "off", "clamd: {socket: null}\n") as server:
        assert "spam filter off: no spamd configured" in server.output
        status, report = health(server)
        assert status == 200 and report["checks"]["spamd"]["ok"] and report["checks"]["spamd"]["configured"] is False
        assert "not scored" in report["checks"]["spamd"]["note"]
    on = f"clamd: {{socket: null}}\nspamd: {{host: 127.0.0.1, port: {spamd_daemon.port}}}\n"
    with serve(tmp_path / "on", on) as server:
        assert f"spam filter: spamd at 127.0.0.1:{spamd_daemon.port}" in server.output
        status, report = health(server)
        assert status == 200 and report["checks"]["spamd"]["address"] == f"127.0.0.1:{spamd_daemon.port}"
    down = f"clamd: {{socket: null}}\nspamd: {{host: 127.0.0.1, port: {free_port()}}}\n"
    with serve(tmp_path / "down", down) as server:
        status, report = health(server)
        assert status == 503 and not report["checks"]["spamd"]["ok"] and "spamd is down" in \
            report["checks"]["spamd"]["error"]


def test_healthz_fails_when_the_disk_is_nearly_full(tmp_path):
    with serve(tmp_path, "clamd: {socket: null}\nmonitoring: {min_free_disk: 1000TiB}\n") as server:
        status, report = health(server)
        assert status == 503
        assert not report["checks"]["disk"]["ok"] and "clamd" not in report["checks"]


def test_metrics_count_logins_by_protocol_and_outcome(tmp_path):
    with serve(tmp_path, "clamd: {socket: null}\n") as server:
        acc = json.loads(cli(server.config, "account", "add", "--name", "Phạm Thị Dung", "--unit", "stttt",
                             "--password-stdin", "--json", input="Matkhau@123\n", check=True).stdout)
        assert not web_probe(server, acc["address"], "Wrong@pass1").ok
        assert web_probe(server, acc["address"], "Matkhau@123").ok
        status, headers, body = get(server, "/metrics")
        assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(body) for s in family.samples}
        assert samples[("mailserver_login_failures_total",
                        (("outcome", "bad-credentials"), ("protocol", "web")))] == 1
        assert samples[("mailserver_logins_total", (("protocol", "web"),))] == 1
        names = {family.name for family in text_string_to_metric_families(body)}
        for metric in ("mailserver_connections", "mailserver_messages_accepted", "mailserver_messages_rejected",
                       "mailserver_virus_found", "mailserver_deliveries", "mailserver_queue_depth",
                       "mailserver_imap_sessions", "mailserver_login_failures", "mailserver_job_runs",
                       "mailserver_password_changes", "mailserver_spam_checks", "mailserver_spam_score",
                       "mailserver_spam_learned", "process_resident_memory_bytes"):
            assert metric in names, metric


def metric_samples(server: ServerProcess) -> dict[tuple[str, tuple], float]:
    status, _, body = get(server, "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples}


def test_imap_sessions_gauge_follows_logins_and_disconnects(tmp_path):
    with serve(tmp_path, "clamd: {socket: null}\n") as server:
        acc = json.loads(cli(server.config, "account", "add", "--name", "Huỳnh Văn Giang", "--unit", "stttt",
                             "--password-stdin", "--json", input="Matkhau@123\n", check=True).stdout)
        host, port = server.address("imaps")
        first = imaplib.IMAP4_SSL(host, port, ssl_context=server.tls_client_context())
        second = imaplib.IMAP4_SSL(host, port, ssl_context=server.tls_client_context())
        first.login(acc["address"], "Matkhau@123")
        second.login(acc["address"], "Matkhau@123")
        assert metric_samples(server)[("mailserver_imap_sessions", ())] == 2
        assert metric_samples(server)[("mailserver_logins_total", (("protocol", "imap"),))] == 2
        first.logout()
        second.shutdown()  # a client that just goes away (no LOGOUT) is counted out too
        deadline = time.monotonic() + 10
        while metric_samples(server)[("mailserver_imap_sessions", ())] != 0:
            assert time.monotonic() < deadline, "the IMAP session gauge did not drop to 0"
            time.sleep(0.1)


def test_monitoring_answers_only_the_allowed_networks(tmp_path):
    with serve(tmp_path, "clamd: {socket: null}\nmonitoring: {allow: [192.0.2.0/24]}\n") as server:
        for path in ("/healthz", "/metrics"):
            status, _, body = get(server, path)
            assert status == 403 and "monitoring.allow" in body


def test_tls_listener_end_to_end(tmp_path):
    """Production shape: the web listener speaks TLS with the server certificate, and says so (HSTS)."""
    with serve(tmp_path, "clamd: {socket: null}\n", tls=True) as server:
        assert server.web_url.startswith("https://")
        assert "web listening on https://" in server.output
        status, headers, body = get(server, "/account")  # the certificate is verified against its CA
        assert status == 200 and "Đăng nhập" in body
        assert headers["Strict-Transport-Security"].startswith("max-age=")
        status, report = health(server)
        assert status == 200 and report["checks"]["listener:web"]["ok"]
