"""Configuration: defaults are production, YAML overrides, every error has file, line and key."""

from pathlib import Path

import pytest

from policy.errors import ConfigError
from policy.loader import ENV_CONFIG, find_config, load
from policy.settings import Settings
from tests.helpers import ROOT, cli, cli_json


def test_built_in_defaults_are_production_values(monkeypatch):
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    s = Settings()
    assert s.paths.data == Path("/var/lib/mailserver")
    assert [(n, listener.host, listener.port) for n, listener in s.listeners.items()] == [
        ("smtp", "*", 25), ("submission", "*", 587), ("submissions", "*", 465),
        ("imap", "*", 143), ("imaps", "*", 993), ("web", "*", 443),
    ]
    assert s.listeners.web.tls and s.primary_domain == "phuyen.gov.vn"


def test_shipped_templates_validate_and_dev_uses_loopback_ports():
    prod = load(ROOT / "config" / "mailserver.yaml")
    assert prod.settings.paths.data == Path("/var/lib/mailserver")
    assert prod.policy_file == ROOT / "config" / "policy.yaml"
    dev = load(ROOT / "config" / "dev.yaml")
    ports = {n: (lst.host, lst.port) for n, lst in dev.settings.listeners.items()}
    assert ports == {
        "smtp": ("127.0.0.1", 2525), "submission": ("127.0.0.1", 2587), "submissions": ("127.0.0.1", 2465),
        "imap": ("127.0.0.1", 2143), "imaps": ("127.0.0.1", 2993), "web": ("127.0.0.1", 8080),
    }
    # `../var` in config/dev.yaml is the repository's var/ folder
    assert dev.settings.paths.data == ROOT / "var"
    # the shipped policy.yaml states exactly the built-in defaults
    assert dev.policy == type(dev.policy)()


def test_discovery_order(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_CONFIG, raising=False)
    explicit = tmp_path / "a.yaml"
    assert find_config(explicit) == explicit
    monkeypatch.setenv(ENV_CONFIG, str(tmp_path / "env.yaml"))
    assert find_config(None) == tmp_path / "env.yaml"
    assert find_config(explicit) == explicit


def test_relative_paths_resolve_against_the_file(tmp_path):
    cfg = tmp_path / "etc" / "mail" / "m.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("paths: {data: ../../data}\ntls: {cert: certs/c.pem, key: /abs/k.pem}\n")
    s = load(cfg).settings
    assert s.paths.data == tmp_path / "data"
    assert s.cert_path == tmp_path / "etc" / "mail" / "certs" / "c.pem"
    assert s.key_path == Path("/abs/k.pem")


def errors_of(tmp_path: Path, main: str, policy: str | None = None) -> list[str]:
    cfg = tmp_path / "mailserver.yaml"
    cfg.write_text(main)
    if policy is not None:
        (tmp_path / "policy.yaml").write_text(policy)
    with pytest.raises(ConfigError) as e:
        load(cfg)
    return [str(p) for p in e.value.problems]


def test_errors_name_file_line_and_key(tmp_path):
    errors = errors_of(
        tmp_path,
        "hostname: mail.example\npolicy_file: policy.yaml\n",
        "timezone: Asia/Ho_Chi_Minh\nquota:\n  default: 2 gigs\n",
    )
    assert errors == ['policy.yaml:3 quota.default: "2 gigs" is not a size (use e.g. 15MiB, 2GiB, 20MB)']


def test_unknown_keys_are_errors_not_ignored(tmp_path):
    errors = errors_of(tmp_path, "hostname: x.example\nlisteners:\n  smtp:\n    port: 25\n    prot: 26\n")
    assert errors == ["mailserver.yaml:5 listeners.smtp.prot: unknown key"]


def test_all_errors_of_both_files_at_once(tmp_path):
    errors = errors_of(
        tmp_path,
        "policy_file: policy.yaml\ndomains: [phuyen]\nlisteners:\n  web: {host: 0.0.0.0, port: 80, tls: false}\n",
        "passwords:\n  max_age: 1 fortnight\n  min_length: x\nretirement:\n  staff: {revoke_after: 6 months}\n"
        "timezone: Mars/Olympus\nquota: {warn_percent: [90, 120]}\nquota: {}\n",
    )
    text = "\n".join(errors)
    assert 'mailserver.yaml:2 domains: "phuyen" is not a domain name' in text
    assert "policy.yaml:2 passwords.max_age" in text and "not a duration" in text
    assert "policy.yaml:3 passwords.min_length" in text
    assert "policy.yaml:5 retirement.staff.send_lock_after: is required" in text
    assert 'policy.yaml:6 timezone: "Mars/Olympus" is not a known time zone' in text
    assert "policy.yaml:8 quota: duplicate key" in text


def test_plain_http_web_only_on_loopback(tmp_path):
    errors = errors_of(tmp_path, "listeners:\n  web: {host: 0.0.0.0, port: 80, tls: false}\n")
    assert errors == ["mailserver.yaml:1 listeners: web.tls may be false only when web.host is a loopback address"]


def test_imap_plaintext_login_only_on_loopback(tmp_path):
    """Issue 6: LOGINDISABLED until STARTTLS on 143; the development exception is for loopback only."""
    errors = errors_of(tmp_path, "listeners:\n  imap: {host: 0.0.0.0, port: 143, allow_plaintext_login: true}\n")
    assert errors == ["mailserver.yaml:1 listeners: imap.allow_plaintext_login may be true only when imap.host "
                      "is a loopback address"]
    cfg = tmp_path / "mailserver.yaml"
    cfg.write_text("listeners:\n  imap: {host: 127.0.0.1, port: 1143, allow_plaintext_login: true}\n")
    assert load(cfg).settings.listeners.imap.allow_plaintext_login


def test_yaml_syntax_error_has_a_line(tmp_path):
    errors = errors_of(tmp_path, "hostname: a\nlisteners: [\n")
    assert errors[0].startswith("mailserver.yaml:") and "not valid YAML" in errors[0]


def test_missing_policy_file(tmp_path):
    errors = errors_of(tmp_path, "policy_file: nowhere.yaml\n")
    assert errors == [f"{tmp_path / 'nowhere.yaml'}: file not found"]


def test_config_check_cli_exit_status(tmp_path):
    cfg = tmp_path / "m.yaml"
    (tmp_path / "p.yaml").write_text("quota:\n  default: 2 gigs\n")
    cfg.write_text("policy_file: p.yaml\n")
    bad = cli(cfg, "config", "check")
    assert bad.returncode == 1
    assert 'p.yaml:2 quota.default: "2 gigs" is not a size' in bad.stderr
    (tmp_path / "p.yaml").write_text("quota:\n  default: 5GiB\n")
    good = cli_json(cfg, "config", "check")
    assert good["ok"] and good["message_size_limit"] > 20 * 2**20


def test_invalid_config_never_starts_a_server(tmp_path):
    cfg = tmp_path / "m.yaml"
    cfg.write_text("listeners: {smtp: {port: seventy}}\n")
    proc = cli(cfg, "serve")
    assert proc.returncode == 1
    assert "m.yaml:1 listeners.smtp.port" in proc.stderr
