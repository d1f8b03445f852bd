"""`mailserver dns records`: every record a mail domain needs, read back with a real DNS zone parser."""

from __future__ import annotations

import json

import dkim
import dns.rdatatype
import dns.zone

from policy.loader import load
from tests.helpers import cli, cli_json, write_config


def zone_of(text: str, origin: str = "phuyen.gov.vn.") -> dns.zone.Zone:
    return dns.zone.from_text(text, origin=origin, relativize=False, check_origin=False)


def rdatas(zone: dns.zone.Zone, name: str, rdtype: str) -> list[str]:
    rrset = zone.get_rdataset(name, dns.rdatatype.from_text(rdtype))
    return sorted(r.to_text() for r in rrset) if rrset else []


def txt_values(zone: dns.zone.Zone, name: str) -> list[str]:
    rrset = zone.get_rdataset(name, dns.rdatatype.TXT)
    return [b"".join(r.strings).decode() for r in rrset] if rrset else []


def test_every_record_with_hosts_and_ports_from_the_configuration(tmp_path):
    cfg = write_config(tmp_path)
    listeners = load(cfg).settings.listeners
    proc = cli(cfg, "dns", "records", "--domain", "phuyen.gov.vn", "--ipv4", "203.0.113.10",
               "--ipv6", "2001:db8::25", check=True)
    zone = zone_of(proc.stdout)
    host = "mail.phuyen.gov.vn."
    assert rdatas(zone, "phuyen.gov.vn.", "MX") == [f"10 {host}"]
    assert rdatas(zone, host, "A") == ["203.0.113.10"]
    assert rdatas(zone, host, "AAAA") == ["2001:db8::25"]
    assert txt_values(zone, "phuyen.gov.vn.") == ["v=spf1 mx -all"]
    assert txt_values(zone, "_dmarc.phuyen.gov.vn.") == [
        "v=DMARC1; p=quarantine; rua=mailto:postmaster@phuyen.gov.vn"]
    assert rdatas(zone, "autoconfig.phuyen.gov.vn.", "CNAME") == [host]
    assert rdatas(zone, "autodiscover.phuyen.gov.vn.", "CNAME") == [host]
    # RFC 6186 and RFC 8314: implicit TLS preferred (lower priority number)
    assert rdatas(zone, "_imaps._tcp.phuyen.gov.vn.", "SRV") == [f"0 1 {listeners.imaps.port} {host}"]
    assert rdatas(zone, "_imap._tcp.phuyen.gov.vn.", "SRV") == [f"10 1 {listeners.imap.port} {host}"]
    assert rdatas(zone, "_submissions._tcp.phuyen.gov.vn.", "SRV") == [f"0 1 {listeners.submissions.port} {host}"]
    assert rdatas(zone, "_submission._tcp.phuyen.gov.vn.", "SRV") == [f"10 1 {listeners.submission.port} {host}"]
    assert rdatas(zone, "_pop3._tcp.phuyen.gov.vn.", "SRV") == ["0 0 0 ."]
    assert rdatas(zone, "_pop3s._tcp.phuyen.gov.vn.", "SRV") == ["0 0 0 ."]
    # what only the operator can do is said, as comments
    assert ("; TODO DKIM: no key for phuyen.gov.vn yet; run `mailserver dkim keygen --domain phuyen.gov.vn"
            in proc.stdout)
    assert "; TODO PTR:" in proc.stdout and "203.0.113.10" in proc.stdout


def test_missing_addresses_and_disabled_listeners_are_said(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace("  imap: {host: 127.0.0.1,", "  imap: {enabled: false, host: 127.0.0.1,"))
    proc = cli(cfg, "dns", "records", check=True)
    zone = zone_of(proc.stdout)
    assert rdatas(zone, "mail.phuyen.gov.vn.", "A") == []
    assert "; TODO A/AAAA: give the public address of mail.phuyen.gov.vn with --ipv4/--ipv6" in proc.stdout
    assert rdatas(zone, "_imap._tcp.phuyen.gov.vn.", "SRV") == ["0 0 0 ."]  # RFC 6186 §4: not offered


def test_autodiscover_srv_is_published_with_the_tls_web_port(tmp_path):
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(", tls: false}", "}"))
    port = load(cfg).settings.listeners.web.port
    zone = zone_of(cli(cfg, "dns", "records", check=True).stdout)
    assert rdatas(zone, "_autodiscover._tcp.phuyen.gov.vn.", "SRV") == [f"0 1 {port} mail.phuyen.gov.vn."]


def test_dkim_records_of_the_generated_keys_verify_real_signatures(tmp_path):
    """A DKIM record is only right if a signature made with the key `dkim keygen` wrote verifies against it."""
    cfg = write_config(tmp_path)
    cli(cfg, "dkim", "keygen", "--domain", "phuyen.gov.vn", "--selector", "mail", check=True)
    cli(cfg, "dkim", "keygen", "--domain", "phuyen.gov.vn", "--selector", "ed", "--type", "ed25519", check=True)
    proc = cli(cfg, "dns", "records", check=True)
    assert "TODO DKIM" not in proc.stdout
    assert "selector mail (signing now)" in proc.stdout  # dkim.selector defaults to "mail"
    zone = zone_of(proc.stdout)
    rsa_txt = txt_values(zone, "mail._domainkey.phuyen.gov.vn.")
    ed_txt = txt_values(zone, "ed._domainkey.phuyen.gov.vn.")
    assert rsa_txt[0].startswith("v=DKIM1; k=rsa;") and ed_txt[0].startswith("v=DKIM1; k=ed25519; p=")
    assert max(len(s) for r in zone.get_rdataset("mail._domainkey.phuyen.gov.vn.", "TXT") for s in r.strings) <= 255

    message = "From: a@phuyen.gov.vn\r\nTo: b@example.org\r\nSubject: Thư thử\r\n\r\nXin chào\r\n".encode()
    records = {b"mail._domainkey.phuyen.gov.vn.": rsa_txt[0].encode(),
               b"ed._domainkey.phuyen.gov.vn.": ed_txt[0].encode()}

    def dnsfunc(name, timeout=5):
        return records.get(name if name.endswith(b".") else name + b".", b"")

    keys = load(cfg).settings.dkim_keys / "phuyen.gov.vn"
    for selector, alg, secret in ((b"mail", b"rsa-sha256", (keys / "mail.rsa.pem").read_bytes()),
                                  (b"ed", b"ed25519-sha256", (keys / "ed.ed25519.key").read_bytes().strip())):
        signature = dkim.sign(message, selector, b"phuyen.gov.vn", secret, signature_algorithm=alg)
        assert dkim.verify(signature + message, dnsfunc=dnsfunc)
    # the same record `dkim keygen` printed when it wrote the key
    again = cli(cfg, "dkim", "keygen", "--domain", "phuyen.gov.vn", "--selector", "third", "--json", check=True)
    printed = json.loads(again.stdout)["record"]
    assert txt_values(zone_of(cli(cfg, "dns", "records", check=True).stdout),
                      "third._domainkey.phuyen.gov.vn.") == [printed]


def test_json_and_refusals(tmp_path):
    cfg = write_config(tmp_path)
    data = cli_json(cfg, "dns", "records")
    assert data["domain"] == "phuyen.gov.vn"
    assert {(r["type"], r["name"]) for r in data["records"]} >= {
        ("MX", "phuyen.gov.vn."), ("TXT", "_dmarc.phuyen.gov.vn."), ("SRV", "_submissions._tcp.phuyen.gov.vn.")}
    assert any(t.startswith("DKIM:") for t in data["todo"])
    proc = cli(cfg, "dns", "records", "--domain", "example.org")
    assert proc.returncode == 1
    assert proc.stderr.startswith('error: domain: "example.org" is not a domain this server serves')
    proc = cli(cfg, "dns", "records", "--ipv4", "2001:db8::1")
    assert proc.returncode == 1 and proc.stderr.startswith('error: ipv4: "2001:db8::1" is not an IPv4 address')
