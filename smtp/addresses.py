"""Envelope addresses: normalise, and refuse the tricks that turn an MX into an open relay.

An address is local only when, after the normalisations every MTA applies
(case of the domain, one trailing dot, IDNA), its domain is one of ours
and its local part is a plain mailbox name. Everything that routes
elsewhere through a local-looking address is refused as relaying
(554 5.7.1) instead of being interpreted:

| trick                          | example                          |
|--------------------------------|----------------------------------|
| percent hack                   | `user%other.com@phuyen.gov.vn`   |
| bang path (UUCP)               | `other.com!user@phuyen.gov.vn`   |
| quoted local part with @       | `"user@other.com"@phuyen.gov.vn` |
| source route (RFC 5321 §C)     | `@phuyen.gov.vn:user@other.com`  |
| address literal                | `user@[192.0.2.1]`               |

A source route ahead of a local address (`@a:user@phuyen.gov.vn`) is
ignored as RFC 5321 §4.1.1.3 says; the address that remains decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ROUTING_CHARACTERS = frozenset("%!@:")


class Kind(StrEnum):
    local = "local"
    remote = "remote"
    relay_trick = "relay-trick"
    invalid = "invalid"


@dataclass(frozen=True)
class Address:
    kind: Kind
    address: str  # normalised local@domain (domain lower case, ASCII/IDNA), or the input when invalid
    local: str = ""
    domain: str = ""
    why: str = ""


def normalise_domain(domain: str) -> str | None:
    """Lower case, one trailing dot dropped, IDNA (RFC 5890) A-labels; None if not a domain name."""
    d = domain.strip()
    if d.endswith("."):
        d = d[:-1]
    if not d or d.startswith("[") or ".." in d:
        return None
    try:
        ascii_d = d.encode("idna").decode("ascii") if not d.isascii() else d
    except UnicodeError:
        return None
    ascii_d = ascii_d.lower()
    labels = ascii_d.split(".")
    if any(not lab or len(lab) > 63 or lab.startswith("-") or lab.endswith("-") for lab in labels):
        return None
    if not all(c.isalnum() or c in "-." for c in ascii_d):
        return None
    return ascii_d


def _unquote(local: str) -> tuple[str, bool]:
    if len(local) >= 2 and local.startswith('"') and local.endswith('"'):
        inner = local[1:-1]
        out, i = [], 0
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner):
                i += 1
            out.append(inner[i])
            i += 1
        return "".join(out), True
    return local, False


def classify(raw: str, domains: list[str] | frozenset[str] | set[str]) -> Address:
    """Where an envelope address (as given in MAIL FROM/RCPT TO, without <>) points."""
    text = raw.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    if text.startswith("@"):
        # RFC 5321 §4.1.1.3: source routes are ignored; what follows the last ':' is the address
        _route, sep, rest = text.partition(":")
        if not sep:
            return Address(Kind.invalid, raw, why="source route without an address")
        text = rest
    if "@" not in text:
        # RFC 5321 §4.5.1: "postmaster" without a domain must be accepted
        if text.lower() == "postmaster":
            primary = next(iter(domains))
            return Address(Kind.local, f"postmaster@{primary}", "postmaster", primary)
        return Address(Kind.invalid, raw, why="address without a domain")
    local, _, domain = text.rpartition("@")
    local, quoted = _unquote(local)
    if not local:
        return Address(Kind.invalid, raw, why="empty local part")
    if domain.startswith("["):
        return Address(Kind.relay_trick, raw, local, domain, "address literal")
    norm = normalise_domain(domain)
    if norm is None:
        return Address(Kind.invalid, raw, why=f'"{domain}" is not a domain name')
    ours = norm in domains
    if ROUTING_CHARACTERS & set(local):
        if ours:
            what = "quoted local part with routing characters" if quoted else "routing characters in the local part"
            return Address(Kind.relay_trick, raw, local, norm, what)
        return Address(Kind.remote, f"{_requote(local)}@{norm}", local, norm)
    if ours:
        return Address(Kind.local, f"{local.lower()}@{norm}", local.lower(), norm)
    return Address(Kind.remote, f"{_requote(local)}@{norm}", local, norm)


def _requote(local: str) -> str:
    if all(c.isalnum() or c in "!#$%&'*+-/=?^_`{|}~." for c in local) and ".." not in local:
        return local
    return '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()
