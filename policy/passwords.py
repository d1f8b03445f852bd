"""Đ9 password rules and temporary passwords.

Đ9: at least 8 characters with an upper-case letter, a lower-case letter, a
digit and a special character from `! @ # % $ * &` ("Matkhou@123"). The check
returns every rule that failed, in Vietnamese and English, so the web page
and the CLI can show the user all of them at once.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass

from policy.model import PasswordPolicy


@dataclass(frozen=True)
class Violation:
    code: str
    vi: str
    en: str

    def __str__(self) -> str:
        return f"{self.en} / {self.vi}"


def check_password(password: str, rules: PasswordPolicy, byte_limit: int | None = None) -> list[Violation]:
    """Every Đ9 rule `password` breaks (empty list: acceptable)."""
    out: list[Violation] = []
    if len(password) < rules.min_length:
        out.append(
            Violation(
                "min_length",
                f"Mật khẩu phải có ít nhất {rules.min_length} ký tự",
                f"at least {rules.min_length} characters",
            )
        )
    if len(password) > rules.max_length:
        out.append(
            Violation(
                "max_length",
                f"Mật khẩu không được dài quá {rules.max_length} ký tự",
                f"at most {rules.max_length} characters",
            )
        )
    if byte_limit is not None and len(password.encode("utf-8")) > byte_limit:
        out.append(
            Violation(
                "byte_limit",
                f"Mật khẩu không được dài quá {byte_limit} byte (giới hạn của kiểu băm bcrypt)",
                f"at most {byte_limit} bytes (a limit of the bcrypt hash scheme)",
            )
        )
    if rules.require_upper and not any(c.isupper() for c in password):
        out.append(Violation("upper", "Cần ít nhất một chữ in hoa", "an upper-case letter"))
    if rules.require_lower and not any(c.islower() for c in password):
        out.append(Violation("lower", "Cần ít nhất một chữ thường", "a lower-case letter"))
    if rules.require_digit and not any(c.isdigit() for c in password):
        out.append(Violation("digit", "Cần ít nhất một chữ số", "a digit"))
    if rules.require_special and not any(c in rules.special_characters for c in password):
        shown = " ".join(rules.special_characters)
        out.append(
            Violation(
                "special",
                f"Cần ít nhất một ký tự đặc biệt ({shown})",
                f"a special character ({shown})",
            )
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in password):
        out.append(Violation("control", "Mật khẩu chứa ký tự điều khiển", "no control characters"))
    return out


def generate_temporary(rules: PasswordPolicy) -> str:
    """A random password that satisfies every Đ9 rule.

    Look-alike characters (0/O, 1/l/I) are left out: the password is read out
    over the phone or copied from paper by the user (Đ6.3.b).
    """
    upper = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    lower = "abcdefghijkmnopqrstuvwxyz"
    digits = "23456789"
    special = rules.special_characters or "!@#%$*&"
    length = max(rules.temporary_length, rules.min_length, 4)
    pool = upper + lower + digits
    while True:
        chars = [secrets.choice(upper), secrets.choice(lower), secrets.choice(digits), secrets.choice(special)]
        chars += [secrets.choice(pool) for _ in range(length - len(chars))]
        secrets.SystemRandom().shuffle(chars)
        candidate = "".join(chars)
        if not check_password(candidate, rules) and candidate[0] in string.ascii_letters:
            return candidate


def requirements(rules: PasswordPolicy) -> list[Violation]:
    """The positive Đ9 requirements, worded as `check_password` words them.

    An empty password breaks every "at least / needs a" rule and none of the
    "at most" ones, so this is exactly the checklist a form shows while the
    user types, in the same words the server uses when it refuses.
    """
    return check_password("", rules)
