"""`mailserver spam check FILE` and `spam learn` against the real spamd (tests/spamd.py), as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import cli, free_port, write_config
from tests.spamd import GTUBE


def config(tmp_path: Path, port: int, policy: str = "") -> Path:
    return write_config(tmp_path, policy=policy, extra=f"spamd: {{host: 127.0.0.1, port: {port}, timeout: 60}}\n")


def eml(tmp_path: Path, name: str, body: str, sender: str = "ban@example.org") -> Path:
    path = tmp_path / name
    path.write_bytes((f"From: {sender}\nTo: nguyenvanan@phuyen.gov.vn\nSubject: Thư thử\n"
                      "Message-ID: <cli-check@example.org>\nMIME-Version: 1.0\n"
                      f"Content-Type: text/plain; charset=utf-8\n\n{body}\n").encode())
    return path


def test_spam_check_shows_the_score_the_rules_and_what_the_policy_does(tmp_path, spamd_daemon):
    cfg = config(tmp_path, spamd_daemon.port)
    proc = cli(cfg, "spam", "check", str(eml(tmp_path, "gtube.eml", GTUBE)), check=True)
    text = proc.stdout
    assert f"127.0.0.1:{spamd_daemon.port}" in text
    assert "refused at DATA with 550 5.7.1 (Article 8.2.b)" in text
    assert "refused with 550 5.7.1 (Article 13.6)" in text
    assert "GTUBE" in text and "Generic Test for Unsolicited Bulk Email" in text
    rules = text.split("description\n", 1)[1].splitlines()[1:]
    assert rules[0].split()[:2] == ["1000.0", "GTUBE"]  # the heaviest rule first


def test_spam_check_json_with_the_lists_of_a_mailbox(tmp_path, spamd_daemon):
    cfg = config(tmp_path, spamd_daemon.port, policy="spam:\n  block:\n    phuyen.gov.vn: [example.org]\n")
    data = json.loads(cli(cfg, "spam", "check", str(eml(tmp_path, "m.eml", "Kính gửi đồng chí.")),
                          "--to", "nguyenvanan@phuyen.gov.vn", "--json", check=True).stdout)
    assert data["received"] == "ham" and data["submitted"] == "sent" and data["score"] < 5
    assert data["thresholds"] == {"junk": 5.0, "reject": 15.0, "outbound_reject": 5.0}
    assert data["list"] == {"action": "block", "scope": "phuyen.gov.vn", "entry": "example.org"}
    assert all({"points", "name", "description"} <= set(r) for r in data["rules"])


def test_spam_check_names_what_is_wrong(tmp_path):
    cfg = write_config(tmp_path)  # no spamd configured
    msg = eml(tmp_path, "m.eml", "Chào.")
    proc = cli(cfg, "spam", "check", str(msg))
    assert proc.returncode == 1 and proc.stderr.startswith("error: spamd: no spamd is configured")
    down = config(tmp_path / "down", free_port())
    proc = cli(down, "spam", "check", str(msg))
    assert proc.returncode == 1 and "unreachable" in proc.stderr and proc.stderr.startswith("error: spamd:")
    proc = cli(down, "spam", "check", str(tmp_path / "missing.eml"))
    assert proc.returncode == 1 and proc.stderr.startswith("error: file: cannot read")


def test_spam_learn_teaches_the_bayes_filter_like_spamc_minus_l(tmp_path, spamd_daemon):
    cfg = config(tmp_path, spamd_daemon.port)
    spam, ham = spamd_daemon.learned()
    msg = eml(tmp_path, "ham.eml", f"Báo cáo tuần số {tmp_path.name}: kết quả công tác của phòng.")
    out = json.loads(cli(cfg, "spam", "learn", "ham", str(msg), "--json", check=True).stdout)
    assert out == [{"file": str(msg), "learned": True}]
    assert spamd_daemon.learned() == (spam, ham + 1)
    again = json.loads(cli(cfg, "spam", "learn", "ham", str(msg), "--json", check=True).stdout)
    assert again == [{"file": str(msg), "learned": False}]  # spamd remembers the message: counted once


def test_spamd_over_a_unix_socket(tmp_path, spamd_daemon):
    """`spamd.socket` instead of host and port (a spamd on the same machine, no TCP port at all)."""
    cfg = write_config(tmp_path, extra=f"spamd: {{socket: {spamd_daemon.socket}}}\n")
    data = json.loads(cli(cfg, "spam", "check", str(eml(tmp_path, "g.eml", GTUBE)), "--json", check=True).stdout)
    assert data["spamd"] == str(spamd_daemon.socket) and data["received"] == "reject"
