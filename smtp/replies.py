"""SMTP replies with RFC 3463 enhanced status codes.

Every check returns a `Reply`; the protocol layer writes it. Because we
advertise ENHANCEDSTATUSCODES (RFC 2034), every 2xx/4xx/5xx reply must carry
an enhanced code, including the ones aiosmtpd writes itself ("250 OK",
"221 Bye", "503 Error: ..."): `with_enhanced_code()` adds the code the
registry (RFC 5248) assigns to that situation when a reply lacks one.
RFC 2034 §3 exempts the 220 greeting and the EHLO/HELO reply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HAS_ENHANCED = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}( |$)")
_REPLY = re.compile(r"^([245]\d\d)([ -])(.*)$", re.S)

# Basic code → enhanced code for replies that do not state one (RFC 3463 §3, RFC 5248).
DEFAULT_ENHANCED = {
    "211": "2.0.0", "214": "2.0.0", "220": "2.0.0", "221": "2.0.0", "235": "2.7.0", "250": "2.0.0",
    "251": "2.1.5", "252": "2.5.0",
    "421": "4.3.0", "432": "4.7.12", "450": "4.2.0", "451": "4.3.0", "452": "4.3.1", "454": "4.7.0",
    "455": "4.5.4",
    "500": "5.5.2", "501": "5.5.4", "502": "5.5.1", "503": "5.5.1", "504": "5.5.4", "521": "5.3.2",
    "530": "5.7.0", "534": "5.7.9", "535": "5.7.8", "538": "5.7.11", "550": "5.0.0", "551": "5.1.6",
    "552": "5.3.4", "553": "5.1.3", "554": "5.0.0", "555": "5.5.4",
}


def with_enhanced_code(line: str) -> str:
    """`503 Error: need RCPT command` → `503 5.5.1 Error: need RCPT command`; unchanged if it has one."""
    m = _REPLY.match(line)
    if m is None:
        return line
    code, sep, text = m.groups()
    if _HAS_ENHANCED.match(text):
        return line
    enhanced = DEFAULT_ENHANCED.get(code, f"{code[0]}.0.0")
    return f"{code}{sep}{enhanced} {text}" if text else f"{code}{sep}{enhanced}"


@dataclass(frozen=True)
class Reply:
    """One SMTP reply: basic code (RFC 5321 §4.2), enhanced code (RFC 3463), text."""

    code: int
    enhanced: str
    text: str

    def __str__(self) -> str:
        lines = self.text.splitlines() or [""]
        out = [f"{self.code}-{self.enhanced} {ln}" for ln in lines[:-1]]
        out.append(f"{self.code} {self.enhanced} {lines[-1]}")
        return "\r\n".join(out)

    @property
    def ok(self) -> bool:
        return self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500


OK = Reply(250, "2.0.0", "OK")
