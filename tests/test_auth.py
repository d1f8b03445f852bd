"""The one authentication service: states, cache, rehash of imported hashes, brute-force limiter."""

import base64
import hashlib
import os
import subprocess
from datetime import timedelta

import bcrypt
import pytest

from policy.errors import ValidationFailed
from policy.model import AuthPolicy
from policy.units import parse_duration
from storage.auth import Outcome, Purpose
from storage.directory import PersonRequest
from storage.hashing import normalize_imported
from storage.limiter import BruteForceLimiter

PW = "Matkhau@123"
IP = "198.51.100.7"


async def person(app, name="Nguyễn Văn A", **kw):
    kw.setdefault("password", PW)
    return (await app.directory.add_person(PersonRequest(name=name, unit="stttt", **kw), actor="t")).account


async def login(app, address, password=PW, ip=IP, purpose=Purpose.mail):
    return await app.auth.authenticate(address, password, client_ip=ip, protocol="test", purpose=purpose)


async def test_good_and_bad_password(app):
    acc = await person(app)
    r = await login(app, acc.address)
    assert r.ok and r.account.id == acc.id
    bad = await login(app, acc.address, "Wrong@123")
    assert bad.outcome == Outcome.bad_credentials and bad.account is None
    unknown = await login(app, "ghost@phuyen.gov.vn")
    assert unknown.outcome == Outcome.bad_credentials  # same answer: no account enumeration


async def test_login_with_local_part_and_case(app):
    acc = await person(app)
    assert (await login(app, "NguyenVanA")).ok
    assert (await login(app, acc.address.upper())).ok


async def test_states_follow_the_lock_table(app):
    d = app.directory
    acc = await person(app)
    await d.suspend(acc.address, "virus (Đ6.2.b)", actor="t")
    r = await login(app, acc.address)
    assert r.outcome == Outcome.suspended
    assert "virus (Đ6.2.b)" in r.text_en and "tạm khóa" in r.text_vi
    assert (await login(app, acc.address, purpose=Purpose.web)).outcome == Outcome.suspended
    # a wrong password on a suspended account says nothing about the suspension
    assert (await login(app, acc.address, "Wrong@123")).outcome == Outcome.bad_credentials
    acc, temp = await d.restore(acc.address, actor="t")
    r = await login(app, acc.address, temp)
    assert r.outcome == Outcome.must_change
    assert app.settings.account_url in r.text_en and "đổi mật khẩu" in r.text_vi
    assert (await login(app, acc.address, temp, purpose=Purpose.web)).ok  # the web page lets them change it
    await d.revoke(acc.address, actor="t")
    assert (await login(app, acc.address, temp, purpose=Purpose.web)).outcome == Outcome.revoked


async def test_d13_3_expired_password(app, clock):
    acc = await person(app)
    clock.now = clock.now + timedelta(days=31)
    r = await login(app, acc.address)
    assert r.outcome == Outcome.password_expired and "13.3" in r.text_en
    assert (await login(app, acc.address, purpose=Purpose.web)).ok


async def test_send_locked_accounts_can_log_in(app, clock):
    acc = await person(app)
    await app.directory.retire(acc.address, clock().astimezone(app.policy.tz).date(), actor="t")
    r = await login(app, acc.address)
    assert r.ok and not r.access.may_send


async def test_cache_skips_argon2_on_reconnect_and_misses_after_a_change(app):
    acc = await person(app)
    app.auth.stats.update(verifications=0, cache_hits=0)
    for _ in range(5):
        assert (await login(app, acc.address)).ok
    assert app.auth.stats == {"verifications": 1, "cache_hits": 4}
    # a wrong password is never answered from the cache
    assert not (await login(app, acc.address, "Matkhau@124")).ok
    # after a change the old password fails at once and the new one works
    acc = await app.directory.require_account(acc.address)
    await app.auth.change_password(acc, PW, "Moi@Matkhau456", actor="web")
    assert (await login(app, acc.address)).outcome == Outcome.bad_credentials
    assert (await login(app, acc.address, "Moi@Matkhau456")).ok


async def test_cache_notices_a_change_made_by_another_process(app):
    acc = await person(app)
    assert (await login(app, acc.address)).ok
    # simulate the CLI (another process) changing the hash behind the cache's back
    new_hash = app.directory.hasher.hash("Other@Pass789")
    await app.directory.db.execute("UPDATE accounts SET password_hash=? WHERE id=?", (new_hash, acc.id))
    assert not (await login(app, acc.address)).ok
    assert (await login(app, acc.address, "Other@Pass789")).ok


async def test_change_password_rules(app):
    acc = await person(app)
    with pytest.raises(ValidationFailed) as e:
        await app.auth.change_password(acc, "Wrong@123", "Moi@Matkhau456", actor="web")
    assert e.value.field == "current_password"
    with pytest.raises(ValidationFailed) as e:
        await app.auth.change_password(acc, PW, "short", actor="web")
    assert e.value.field == "password"
    with pytest.raises(ValidationFailed) as e:
        await app.auth.change_password(acc, PW, PW, actor="web")
    assert "differ" in e.value.message
    entries = await app.directory.audit_entries(target=acc.address)
    assert all(x.action != "account.password-change" for x in entries)


def imported_hashes(password: str) -> dict[str, str]:
    salt = os.urandom(8)
    ssha512 = "{SSHA512}" + base64.b64encode(hashlib.sha512(password.encode() + salt).digest() + salt).decode()
    salt4 = os.urandom(4)
    ssha = "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt4).digest() + salt4).decode()
    crypt6 = subprocess.check_output(["openssl", "passwd", "-6", password], text=True).strip()
    blf = bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode().replace("$2b$", "$2y$", 1)
    return {
        "SSHA512 (Zimbra/LDAP)": ssha512,
        "SSHA (LDAP)": ssha,
        "SHA512-CRYPT (Dovecot)": "{SHA512-CRYPT}" + crypt6,
        "bare $6$": crypt6,
        "BLF-CRYPT (Dovecot)": "{BLF-CRYPT}" + blf,
    }


@pytest.mark.parametrize("kind", list(imported_hashes("x")))
async def test_imported_hashes_verify_and_are_rehashed_to_argon2id(app, kind):
    acc = await person(app)
    stored = normalize_imported(imported_hashes(PW)[kind])
    await app.directory.db.execute("UPDATE accounts SET password_hash=? WHERE id=?", (stored, acc.id))
    assert not (await login(app, acc.address, "Wrong@123")).ok
    r = await login(app, acc.address)
    assert r.ok
    rehashed = (await app.directory.require_account(acc.address)).password_hash
    assert rehashed.startswith("$argon2id$")
    assert (await login(app, acc.address)).ok
    entries = await app.directory.audit_entries(target=acc.address)
    assert entries[0].action == "account.rehash"


def test_unknown_hash_formats_are_refused():
    with pytest.raises(ValidationFailed) as e:
        normalize_imported("{MD5}abcdef")
    assert e.value.field == "hash"


async def test_production_hash_cost_comes_from_policy(app):
    from policy.model import HashPolicy
    from storage.hashing import PasswordHasher

    h = PasswordHasher(HashPolicy())
    assert "$argon2id$v=19$m=19456,t=2,p=1$" in h.hash(PW)
    h.close()
    assert "m=1024,t=1,p=1" in app.directory.hasher.hash(PW)  # the tests' cheap policy


# ---------------------------------------------------------------- limiter


class Tick:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def limiter(clock, trusted=None, **kw) -> BruteForceLimiter:
    rules = AuthPolicy(**{"max_failures_per_ip_account": 3, "max_failures_per_ip": 5,
                          "max_failures_per_account": 4, **kw})
    return BruteForceLimiter(rules, trusted or [], clock)


def test_limiter_blocks_after_distinct_failures_and_cools_off():
    tick = Tick()
    lim = limiter(tick)
    for i in range(2):
        assert lim.record_failure(IP, "a@x", f"wrong{i}") is None
    block = lim.record_failure(IP, "a@x", "wrong2")
    assert block and block.scope == "ip-account"
    assert lim.check(IP, "a@x") is not None
    assert lim.check("203.0.113.9", "a@x") is None  # another client is not blocked for this account
    tick.t += 15 * 60 + 1
    assert lim.check(IP, "a@x") is None


def test_limiter_counts_a_repeated_wrong_password_once():
    # a phone retrying last month's password after the Đ13.3 change
    lim = limiter(Tick())
    for _ in range(50):
        assert lim.record_failure(IP, "a@x", "OldPass@1") is None
    assert lim.check(IP, "a@x") is None
    assert lim.failures("ip-account", f"{IP} a@x") == 1


def test_limiter_per_ip_spray_and_per_account_distributed():
    lim = limiter(Tick())
    for i in range(5):
        lim.record_failure(IP, f"user{i}@x", "guess")
    assert lim.check(IP, "fresh@x").scope == "ip"
    lim2 = limiter(Tick())
    for i in range(4):
        lim2.record_failure(f"192.0.2.{i}", "target@x", f"guess{i}")
    assert lim2.check("192.0.2.200", "target@x").scope == "account"


def test_trusted_networks_are_exempt_from_ip_and_account_blocks():
    lim = limiter(Tick(), trusted=["10.0.0.0/8"])
    for i in range(10):
        lim.record_failure("10.1.2.3", f"user{i}@x", "guess")
    assert lim.check("10.1.2.3", "someone@x") is None  # the office NAT is not blocked
    for i in range(3):
        lim.record_failure("10.1.2.3", "me@x", f"typo{i}")
    assert lim.check("10.1.2.3", "me@x").scope == "ip-account"  # but guessing one account still is


def test_ipv6_clients_are_counted_per_64():
    lim = limiter(Tick())
    for i in range(3):
        lim.record_failure(f"2001:db8:1:2::{i + 1}", "a@x", f"w{i}")
    assert lim.check("2001:db8:1:2::ffff", "a@x") is not None


async def test_blocks_are_audited_and_refuse_even_the_right_password(app):
    acc = await person(app)
    app.auth.limiter.rules = AuthPolicy(max_failures_per_ip_account=2)
    for i in range(2):
        await login(app, acc.address, f"Wrong@{i}")
    r = await login(app, acc.address)
    assert r.outcome == Outcome.blocked and "try again" in r.text_en and "thử lại" in r.text_vi
    entries = await app.directory.audit_entries(target=acc.address)
    assert entries[0].action == "auth.block" and entries[0].after["scope"] == "ip-account"


def test_cooling_off_is_a_policy_value():
    lim = BruteForceLimiter(AuthPolicy(cooling_off=parse_duration("2 hours")), [], Tick())
    assert lim.cooling_off == 7200
