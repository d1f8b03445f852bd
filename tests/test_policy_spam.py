"""Đ8.2.b, Đ13.6 spam rules as plain values: thresholds, allow and block lists, the policy file's checks."""

from __future__ import annotations

import pytest

from policy.model import Policy, SpamPolicy
from policy.spam import (
    ListMatch,
    Verdict,
    list_decision,
    normalise_sender_entry,
    outbound_refused,
    policy_list_decision,
    sender_matches,
    verdict,
)
from tests.helpers import cli, write_config


@pytest.mark.parametrize(("score", "expected"), [
    (-2.0, Verdict.ham), (4.9, Verdict.ham), (5.0, Verdict.junk), (14.9, Verdict.junk), (15.0, Verdict.reject),
    (1000.0, Verdict.reject),
])
def test_d8_2_b_thresholds_are_inclusive_like_spamassassin_required_score(score, expected):
    assert verdict(score, 5.0, 15.0) == expected


def test_d13_6_outbound_threshold_is_inclusive():
    assert not outbound_refused(4.9, 5.0)
    assert outbound_refused(5.0, 5.0)


def test_the_defaults_are_the_issue_s_numbers():
    p = SpamPolicy()
    assert (p.junk, p.reject, p.outbound_reject, p.on_spamd_error) == (5.0, 15.0, 5.0, "accept")


@pytest.mark.parametrize(("entry", "normal"), [
    ("NguyenVanA@Example.ORG", "nguyenvana@example.org"), ("@example.org", "example.org"),
    ("*.example.org", "example.org"), ("example.org.", "example.org"), (" mail.example.org ", "mail.example.org"),
])
def test_entries_are_normalised(entry, normal):
    assert normalise_sender_entry(entry) == normal


@pytest.mark.parametrize("entry", ["", "example", "@", "a@", "@b@example.org", "nguyen van a@example.org",
                                   "a@example"])
def test_bad_entries_are_refused(entry):
    with pytest.raises(ValueError):
        normalise_sender_entry(entry)


def test_a_domain_entry_covers_its_subdomains_but_not_look_alikes():
    assert sender_matches("example.org", "a@example.org")
    assert sender_matches("example.org", "<A@Mail.Example.org>")
    assert not sender_matches("example.org", "a@badexample.org")
    assert not sender_matches("example.org", "a@example.org.vn")
    assert sender_matches("a@example.org", "A@example.org") and not sender_matches("a@example.org", "b@example.org")
    assert not sender_matches("example.org", "")  # the null sender of a bounce matches nothing


ALLOW = {"*": ["chinhphu.vn"], "nguyenvana@phuyen.gov.vn": ["example.org"]}
BLOCK = {"*": ["example.org"], "phuyen.gov.vn": ["chinhphu.vn"], "stttt@phuyen.gov.vn": ["spam.example"]}


def test_the_most_specific_key_decides():
    # a mailbox's own allow beats the server-wide block
    assert list_decision(ALLOW, BLOCK, "nguyenvana@phuyen.gov.vn", ["x@example.org"]) == \
        ListMatch("allow", "nguyenvana@phuyen.gov.vn", "example.org")
    # someone else's mailbox: the server-wide block
    assert list_decision(ALLOW, BLOCK, "tranthib@phuyen.gov.vn", ["x@example.org"]) == \
        ListMatch("block", "*", "example.org")
    # the domain's block beats the server-wide allow
    assert list_decision(ALLOW, BLOCK, "tranthib@phuyen.gov.vn", ["vp@chinhphu.vn"]).action == "block"
    assert list_decision(ALLOW, BLOCK, "tranthib@other.gov.vn", ["vp@chinhphu.vn"]).action == "allow"
    assert list_decision(ALLOW, BLOCK, "tranthib@phuyen.gov.vn", ["a@elsewhere.net"]) is None


def test_on_one_level_a_block_beats_an_allow():
    assert list_decision({"*": ["example.org"]}, {"*": ["bad@example.org"]}, "a@phuyen.gov.vn",
                         ["bad@example.org"]).action == "block"


def test_any_sender_address_matches_the_envelope_or_a_from_address():
    assert list_decision({}, BLOCK, "stttt@phuyen.gov.vn", ["ok@fine.net", "x@spam.example"]).action == "block"
    assert list_decision({}, BLOCK, "stttt@phuyen.gov.vn", []) is None


def test_an_allow_entry_is_ignored_for_a_forged_sender_but_a_block_is_not():
    match = list_decision(ALLOW, {}, "nguyenvana@phuyen.gov.vn", ["x@example.org"], allow_trusted=False)
    assert match is None
    assert list_decision({}, BLOCK, "a@phuyen.gov.vn", ["x@example.org"], allow_trusted=False).action == "block"


def test_lists_from_the_policy_model_are_normalised():
    p = Policy.model_validate({"spam": {"allow": {"NguyenVanA@PhuYen.gov.vn": ["@Example.ORG"]}}})
    assert p.spam.allow == {"nguyenvana@phuyen.gov.vn": ["example.org"]}
    assert policy_list_decision(p.spam, "nguyenvana@phuyen.gov.vn", ["b@mail.example.org"]).action == "allow"


def test_policy_file_errors_name_the_line_and_the_key(tmp_path):
    cfg = write_config(tmp_path, policy="spam:\n  junk: 20\n  reject: 15\n  block:\n    '*': [not a domain]\n")
    proc = cli(cfg, "config", "check")
    assert proc.returncode == 1
    assert "policy.yaml" in proc.stderr and "spam.block" in proc.stderr and "neither an address" in proc.stderr
    cfg = write_config(tmp_path / "b", policy="spam:\n  junk: 20\n  reject: 15\n")
    proc = cli(cfg, "config", "check")
    assert proc.returncode == 1 and "reject (15) is below junk (20)" in proc.stderr
    cfg = write_config(tmp_path / "c", policy="spam:\n  on_spamd_error: ignore\n")
    assert cli(cfg, "config", "check").returncode == 1


def test_spamd_address_settings(tmp_path):
    from policy.loader import load

    cfg = write_config(tmp_path, extra="spamd: {socket: run/spamd.sock}\n")
    s = load(cfg).settings.spamd
    assert s.socket == tmp_path / "etc" / "run" / "spamd.sock" and s.host is None and s.configured
    cfg = write_config(tmp_path / "b", extra="spamd: {host: 127.0.0.1, port: null}\n")
    proc = cli(cfg, "config", "check")
    assert proc.returncode == 1 and "spamd.host and spamd.port go together" in proc.stderr
    assert not load(write_config(tmp_path / "c")).settings.spamd.configured  # tests: none unless asked
