"""Đ4: how mailbox addresses are formed from Vietnamese names.

Đ4.1 unit mailboxes use the unit's abbreviation (initials of each word,
skipping the conjunction "và"): "Sở Thông tin và Truyền thông" → `stttt`.
District mailboxes use the whole district name (`tuyhoa`), communes and
sub-units append their parent (`hoan.phuhoa`, `pnv.tuyan`). Đ4.2 personal
mailboxes join the full name (`nguyenvana`), then add the birth year's last
two digits, then birth month + year digits when names collide.

Rule derived from an example: Đ4.1.c writes xã Hòa An as `hoan`, not
`hoaan`. For place names (districts, communes) a vowel repeated across a word
boundary is therefore written once. Personal names never collapse
("Nguyễn Văn Nam" stays `nguyenvannam`). Operators can always override.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from enum import StrEnum

from policy.errors import Conflict, ValidationFailed


class UnitKind(StrEnum):
    department = "department"  # sở, ban, ngành (Đ4.1.a)
    district = "district"  # huyện, thị xã, thành phố (Đ4.1.b)
    commune = "commune"  # xã, phường, thị trấn (Đ4.1.c)
    subunit = "subunit"  # phòng, ban, đơn vị trực thuộc (Đ4.1.d)


MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1
_VOWELS = set("aeiouy")
_CONJUNCTIONS = {"và", "va"}
# Administrative words that precede place names and are not part of the name.
_PLACE_PREFIXES = [
    ("thanh", "pho"),
    ("thi", "xa"),
    ("thi", "tran"),
    ("huyen",),
    ("xa",),
    ("phuong",),
    ("quan",),
    ("tp",),
    ("tx",),
    ("tt",),
]
_LOCAL_RE = re.compile(r"^[a-z0-9](?:[a-z0-9._-]*[a-z0-9])?$")


def fold(text: str) -> str:
    """Vietnamese text to lowercase ASCII letters and digits only.

    Unicode decomposition, combining marks removed, `đ/Đ → d` (đ has no
    decomposition), lowercase, everything that is not a letter or digit gone.
    """
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(c for c in stripped.lower() if c.isascii() and c.isalnum())


def _words(name: str) -> list[str]:
    return [w for w in re.split(r"[\s\-–,.;:/()]+", unicodedata.normalize("NFC", name.strip())) if w]


def abbreviate(name: str) -> str:
    """Initials of each word except "và" (Đ4.1.a).

    Acronyms written in capitals and numbers are kept whole, so
    "Trường THPT số 2" gives `tthpts2` rather than losing the school type.
    """
    out = []
    for word in _words(name):
        if word.lower() in _CONJUNCTIONS:
            continue
        folded = fold(word)
        if not folded:
            continue
        if folded.isdigit() or (len(word) > 1 and word.isupper()):
            out.append(folded)
        else:
            out.append(folded[0])
    return "".join(out)


def place_name(name: str) -> str:
    """A district or commune name joined (Đ4.1.b/c), without "huyện", "xã" etc."""
    folded = [fold(w) for w in _words(name)]
    folded = [w for w in folded if w]
    for prefix in _PLACE_PREFIXES:
        if len(folded) > len(prefix) and tuple(folded[: len(prefix)]) == prefix:
            folded = folded[len(prefix) :]
            break
    out = ""
    for word in folded:
        if out and out[-1] == word[0] and word[0] in _VOWELS:
            word = word[1:]  # "Hòa An" → hoan (Đ4.1.c example)
        out += word
    return out


def person_name(full_name: str) -> str:
    """Family name, middle names and given name joined (Đ4.2.a)."""
    return "".join(fold(w) for w in _words(full_name))


def unit_local_part(name: str, kind: UnitKind, parent: str | None = None, abbrev: str | None = None) -> str:
    """The full local part of a unit mailbox: `stttt`, `tuyhoa`, `hoan.phuhoa`, `pnv.tuyan`."""
    if abbrev is not None:
        own = abbrev.strip().lower()
        validate_local_part(own, field="abbrev")
    elif kind in (UnitKind.district, UnitKind.commune):
        own = place_name(name)
    else:
        own = abbreviate(name)
    if not own:
        raise ValidationFailed("name", f'"{name}" gives no letters to form an address; pass --abbrev')
    if kind == UnitKind.commune and not parent:
        raise ValidationFailed("parent", "a commune needs its district as --parent (Đ4.1.c)")
    if kind == UnitKind.subunit and not parent:
        raise ValidationFailed("parent", "a sub-unit needs its parent unit as --parent (Đ4.1.d)")
    local = f"{own}.{parent}" if parent else own
    validate_local_part(local, field="abbrev" if abbrev else "name")
    return local


def person_candidates(full_name: str, birth_year: int | None, birth_month: int | None) -> list[str]:
    """Đ4.2.b order: name, name+YY, name+M+YY (`nguyenvana`, `nguyenvana79`, `nguyenvana379`)."""
    base = person_name(full_name)
    if not base:
        raise ValidationFailed("name", f'"{full_name}" gives no letters to form an address')
    validate_local_part(base, field="name")
    out = [base]
    if birth_year is not None:
        yy = f"{birth_year % 100:02d}"
        out.append(f"{base}{yy}")
        if birth_month is not None:
            out.append(f"{base}{birth_month}{yy}")
    return out


def choose_address(candidates: Iterable[str], taken: Callable[[str], bool]) -> str:
    """The first free candidate; if all are taken the operator must choose (Đ4.2.b)."""
    tried = list(candidates)
    for local in tried:
        if not taken(local):
            return local
    raise all_taken(tried)


def all_taken(candidates: list[str]) -> Conflict:
    return Conflict(
        "address",
        "every address the naming rule gives is taken ("
        + ", ".join(candidates)
        + "); choose one explicitly with --address",
    )


def validate_local_part(local: str, field: str = "address") -> str:
    if len(local) > MAX_LOCAL_PART:
        raise ValidationFailed(field, f'"{local}" is longer than {MAX_LOCAL_PART} characters')
    if not _LOCAL_RE.match(local) or ".." in local:
        raise ValidationFailed(
            field, f'"{local}" is not a valid address: lowercase letters, digits and inner . - _ only'
        )
    return local
