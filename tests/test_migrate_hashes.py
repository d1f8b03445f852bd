"""Đ8.2.d: `account import-hashes` keeps users' old passwords (Dovecot and Zimbra hash formats);
they log in over IMAP with them, and the hash becomes argon2id at that first login."""

from __future__ import annotations

import base64
import hashlib
import imaplib
import subprocess

import pytest

from tests.dovecot import hash_password
from tests.imap_support import make_server
from tests.migrate_support import run_cli

PASSWORDS = {
    "dovecot.sha512": ("Dovecot#512", lambda p: hash_password(p, "SHA512-CRYPT")),
    "dovecot.blf": ("Dovecot#Blf1", lambda p: hash_password(p, "BLF-CRYPT")),
    "zimbra.ssha512": ("Zimbra#Ssha512", lambda p: _salted("{SSHA512}", hashlib.sha512, p)),
    "ldap.ssha": ("Ldap#Ssha1", lambda p: _salted("{SSHA}", hashlib.sha1, p)),
    "crypt.six": ("Openssl#Six6", lambda p: subprocess.run(["openssl", "passwd", "-6", p], capture_output=True,
                                                           text=True, check=True).stdout.strip()),
    "viet.password": ("Mật-khẩu#Cũ9", lambda p: hash_password(p, "SHA512-CRYPT")),
}


def _salted(prefix: str, algo, password: str) -> str:
    """As Zimbra and OpenLDAP store them: base64(digest(password + salt) + salt)."""
    salt = b"\x8a\x10pYsalt"
    return prefix + base64.b64encode(algo(password.encode() + salt).digest() + salt).decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with make_server(tmp_path_factory.mktemp("hashes")) as srv:
        yield srv


def imap_login(server, address: str, password: str) -> str:
    c = server.imaps()
    c._encoding = "utf-8"
    try:
        typ, _data = c.login(address, password)
        c.logout()
        return typ
    except imaplib.IMAP4.error as e:
        return str(e)


def stored_hash(server, address: str) -> str:
    async def get(app):
        return (await app.directory.get_account(address)).password_hash

    return server.call(get)


def test_d8_2_d_old_hashes_log_in_over_imap_and_become_argon2id(server, tmp_path):
    rows = []
    for local, (password, make) in PASSWORDS.items():
        address = server.add_person(f"Người Cũ {local}", "Tam#thoi2026", address=local)
        rows.append((address, make(password)))
    sheet = tmp_path / "hashes.csv"
    sheet.write_text("address,hash\n" + "".join(f"{a},{h}\n" for a, h in rows), encoding="utf-8")
    proc = run_cli(server.config, "account", "import-hashes", str(sheet))
    assert proc.returncode == 0, proc.stderr
    assert "6 password hashes imported" in proc.stdout and "SSHA512" in proc.stdout and "bcrypt" in proc.stdout
    assert "$6$" not in proc.stdout  # the table names the scheme, never the hash
    for (address, imported), (password, _) in zip(rows, PASSWORDS.values(), strict=True):
        assert not stored_hash(server, address).startswith("$argon2")
        assert imap_login(server, address, password) == "OK", (address, imported)
        assert stored_hash(server, address).startswith("$argon2id$")  # rehashed at the first login
        assert imap_login(server, address, password) == "OK"
        assert "AUTHENTICATIONFAILED" in imap_login(server, address, "Tam#thoi2026")


def test_a_bad_row_imports_nothing_and_names_the_row(server, tmp_path):
    a = server.add_person("Người Một Hàng", "Tam#thoi2026", address="mot.hang")
    b = server.add_person("Người Hai Hàng", "Tam#thoi2026", address="hai.hang")
    sheet = tmp_path / "bad.csv"
    sheet.write_text(f"address,hash\n{a},{hash_password('Old#pass11')}\n{b},{{MD5}}X03MO1qnZdYdgyfeuILPmQ==\n",
                     encoding="utf-8")
    proc = run_cli(server.config, "account", "import-hashes", str(sheet))
    assert proc.returncode == 1
    assert "error: row 2: hash: unsupported or malformed password hash" in proc.stderr
    assert "nothing was imported" in proc.stderr
    assert imap_login(server, a, "Tam#thoi2026") == "OK"  # row 1 was not applied either
    sheet.write_text(f"address,hash\nkhongco@phuyen.gov.vn,{hash_password('Old#pass11')}\n", encoding="utf-8")
    proc = run_cli(server.config, "account", "import-hashes", str(sheet))
    assert proc.returncode == 1 and 'row 1: address: no account "khongco@phuyen.gov.vn"' in proc.stderr


def test_must_change_sends_users_to_the_password_page(server, tmp_path):
    a = server.add_person("Người Phải Đổi", "Tam#thoi2026", address="phai.doi")
    sheet = tmp_path / "h.csv"
    sheet.write_text(f"address,hash\n{a},{hash_password('Old#pass22')}\n", encoding="utf-8")
    assert run_cli(server.config, "account", "import-hashes", str(sheet), "--must-change").returncode == 0
    refused = imap_login(server, a, "Old#pass22")
    assert "change your password" in refused.lower() or "EXPIRED" in refused
