"""Where mail goes (RFC 5321 §5.1, RFC 7505), routed by real answers of the test DNS server: MX preference and
fallback, the implicit MX (A and AAAA), null MX, names that do not exist, DNS failures, static routes and the
smarthost with STARTTLS and AUTH."""

from __future__ import annotations

import pytest

from tests.outbound_support import OutboundEnv, reports_in, sink_tls_context


async def test_an_unreachable_mx_falls_back_to_the_next_preference(outbound_env: OutboundEnv):
    env = outbound_env
    backup = await env.sink("alpha.test", preference=20)
    env.dns.zone.mx["alpha.test"].append((10, "mx-dead.alpha.test"))
    env.dns.zone.a["mx-dead.alpha.test"] = [env.free_address()]  # nothing listens there: connection refused
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@alpha.test"])
    await backup.wait_received(1)
    await env.wait_gone(qid)
    (d,) = env.log_events(queue_id=qid, event="delivered")
    assert d["remote_host"].startswith(backup.name)
    (tried,) = env.log_events(queue_id=qid, event="attempt")  # Đ7.2: the server that failed has its line too
    assert tried["remote_host"].startswith("mx-dead.alpha.test") and tried["code"] == "451 4.4.1"
    assert "cannot connect" in tried["reason"]


async def test_no_mx_means_the_domain_itself_by_a_and_aaaa(outbound_env: OutboundEnv):
    """RFC 5321 §5.1: without MX records the domain's own address records are the implicit MX."""
    env = outbound_env
    v4 = await env.sink("plain.test", mx=False)
    v6 = await env.sink("six.test", mx=False, address="::1")
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@plain.test", "ban@six.test"])
    await v4.wait_received(1)
    await v6.wait_received(1)
    await env.wait_gone(qid)
    hosts = {e["remote_host"] for e in env.log_events(queue_id=qid, event="delivered")}
    assert hosts == {f"plain.test [{v4.address}]:{env.port}", f"six.test [::1]:{env.port}"}


@pytest.mark.parametrize(("setup", "status", "words"), [
    ("null", "5.1.10", "không nhận thư"),  # RFC 7505: "MX 0 ." accepts no mail
    ("nxdomain", "5.1.2", "không tồn tại"),
])
async def test_null_mx_and_unknown_domains_fail_at_once_with_a_clear_bounce(outbound_env: OutboundEnv, setup, status,
                                                                             words):
    env = outbound_env
    if setup == "null":
        env.dns.zone.mx["nomail.test"] = [(0, ".")]
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@nomail.test"])
    await env.wait_gone(qid)
    (report,) = await reports_in(env, a)
    assert f"Status: {status}" in report.status and words in report.text
    (b,) = env.log_events(queue_id=qid, event="bounced")
    assert b["code"].endswith(status) and b["attempt"] == 1


async def test_a_dns_timeout_is_temporary(outbound_env: OutboundEnv):
    env = outbound_env
    env.dns.zone.slow.add("slow.test")
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@slow.test"])
    e = await env.wait_state(qid, "ban@slow.test", "pending")
    (r,) = e.recipients
    assert r.attempts == 1 and r.code == "451 4.4.3" and "DNS" in r.reply


async def test_a_static_route_replaces_the_mx_lookup(outbound_env: OutboundEnv):
    env = outbound_env
    target = await env.sink("routed.internal")  # publishes DNS for routed.internal only
    env.outbound.router.settings.routes["example.org"] = f"{target.address}:{env.port}"
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@example.org"])  # example.org has no records in the test DNS at all
    (got,) = await target.wait_received(1)
    assert got.rcpt_tos == ["ban@example.org"]
    await env.wait_gone(qid)


async def test_routes_come_from_the_configuration(tmp_path):
    from policy.loader import load
    from tests.helpers import write_config

    cfg = write_config(tmp_path, extra='outbound:\n  routes: {"Example.ORG": "127.0.0.1:2600", "v6.test": "[::1]"}\n')
    routes = load(cfg).settings.outbound.routes
    assert routes == {"example.org": "127.0.0.1:2600", "v6.test": "[::1]"}
    bad = write_config(tmp_path / "bad", extra='outbound:\n  routes: {"example.org": "127.0.0.1:99999"}\n')
    from policy.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        load(bad)
    assert "port must be a number from 1 to 65535" in str(e.value.problems[0])


async def test_the_smarthost_with_starttls_and_login(outbound_env: OutboundEnv, tmp_path):
    from policy.settings import Smarthost

    env = outbound_env
    relay = await env.sink("relay.provider.test", tls=sink_tls_context(tmp_path), auth=("phuyen", "Relay@123"))
    decoy = await env.sink("alpha.test")  # its MX must not be used: everything goes through the smarthost
    env.outbound.router.settings.smarthost = Smarthost(host=relay.address, port=env.port, tls="starttls",
                                                       username="phuyen", password="Relay@123", verify=False)
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@alpha.test", "ai@elsewhere.test"])
    got = await relay.wait_received(2)  # one transaction per recipient domain, both to the relay
    assert sorted(r for m in got for r in m.rcpt_tos) == ["ai@elsewhere.test", "ban@alpha.test"]
    await env.wait_gone(qid)
    assert all(m.tls for m in got) and decoy.received == []


async def test_a_smarthost_refusing_the_login_keeps_the_mail(outbound_env: OutboundEnv, tmp_path):
    from policy.settings import Smarthost

    env = outbound_env
    relay = await env.sink("relay.provider.test", tls=sink_tls_context(tmp_path), auth=("phuyen", "Relay@123"))
    env.outbound.router.settings.smarthost = Smarthost(host=relay.address, port=env.port, username="phuyen",
                                                       password="wrong", verify=False)
    a = await env.person("Nguyễn Văn An")
    qid = await env.send(a, ["ban@alpha.test"])
    e = await env.wait_state(qid, "ban@alpha.test", "pending")
    assert e.recipients[0].code == "451 4.7.8" and "login" in e.recipients[0].reply


def test_smarthost_settings_refuse_credentials_in_plain_text(tmp_path):
    from policy.errors import ConfigError
    from policy.loader import load
    from tests.helpers import write_config

    cfg = write_config(tmp_path, extra="outbound:\n  smarthost: {host: relay.example.net, tls: none}\n")
    with pytest.raises(ConfigError) as e:
        load(cfg)
    assert "smarthost.tls may be none only for a loopback relay" in str(e.value.problems[0])
