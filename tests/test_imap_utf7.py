"""Modified UTF-7 folder names (RFC 3501 §5.1.3), Vietnamese included (Đ11)."""

import pytest

from imap_gateway.utf7 import Utf7Error, decode, encode

CASES = [
    ("INBOX", "INBOX"),
    ("Công văn đến", "C&APQ-ng v&AQM-n &AREevw-n"),
    ("Công văn đi/Năm 2026", "C&APQ-ng v&AQM-n &ARE-i/N&AQM-m 2026"),
    ("Thư.mục", "Th&AbA-.m&HuU-c"),
    ("a&b", "a&-b"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),  # the RFC's own example
    ("😀", "&2D3eAA-"),  # outside the BMP: a UTF-16 surrogate pair
]


@pytest.mark.parametrize("name, wire", CASES)
def test_round_trip(name, wire):
    assert encode(name) == wire
    assert decode(wire) == name


@pytest.mark.parametrize(
    "bad",
    [
        "&Jjo",  # unterminated
        "&AGE-",  # "a" encoded: not canonical
        "&APQ-&APQ-",  # two runs in a row
        "&APQ",  # no "-"
        "&AP-",  # not a whole UTF-16 unit
        "&APR-",  # non-zero padding bits
        "&2D3-",  # a lone surrogate
        "Công",  # 8-bit must be encoded
        "tab\there",  # control characters too
        "&A/Q-",  # "/" is not in the modified base64 alphabet
    ],
)
def test_non_canonical_spellings_are_refused(bad):
    with pytest.raises(Utf7Error):
        decode(bad)
