"""Đ4: every example of the regulation and REQUIREMENTS.md, and arbitrary Vietnamese names."""

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from policy.errors import Conflict, ValidationFailed
from policy.naming import (
    UnitKind,
    abbreviate,
    choose_address,
    fold,
    person_candidates,
    person_name,
    place_name,
    unit_local_part,
)


def test_d4_1_a_unit_abbreviation_skips_va():
    assert unit_local_part("Sở Thông tin và Truyền thông", UnitKind.department) == "stttt"
    assert abbreviate("Trung tâm Công nghệ thông tin và Truyền thông") == "ttcntttt"
    assert unit_local_part("Phòng Nội vụ", UnitKind.department) == "pnv"


def test_d4_1_b_district_is_the_whole_name():
    assert unit_local_part("Tuy Hòa", UnitKind.district) == "tuyhoa"
    assert unit_local_part("Thành phố Tuy Hòa", UnitKind.district) == "tuyhoa"
    assert unit_local_part("huyện Phú Hòa", UnitKind.district) == "phuhoa"
    assert unit_local_part("Tuy An", UnitKind.district) == "tuyan"


def test_d4_1_c_commune_with_district():
    assert unit_local_part("Hòa An", UnitKind.commune, parent="phuhoa") == "hoan.phuhoa"
    assert unit_local_part("xã Hòa An", UnitKind.commune, parent="phuhoa") == "hoan.phuhoa"


def test_d4_1_c_repeated_vowel_rule_only_for_place_names():
    # The Đ4.1.c example writes Hòa An as "hoan"; a person's name never collapses.
    assert place_name("Hòa An") == "hoan"
    assert place_name("An Nghiệp") == "annghiep"  # consonants are not collapsed
    assert person_name("Nguyễn Văn Nam") == "nguyenvannam"
    assert person_name("Lê Hòa An") == "lehoaan"


def test_d4_1_d_subunit_with_parent():
    assert unit_local_part("Phòng Nội vụ", UnitKind.subunit, parent="tuyan") == "pnv.tuyan"
    assert (
        unit_local_part("Trung tâm Công nghệ thông tin và Truyền thông", UnitKind.subunit, parent="stttt")
        == "ttcntttt.stttt"
    )


def test_commune_and_subunit_need_a_parent():
    with pytest.raises(ValidationFailed) as e:
        unit_local_part("Hòa An", UnitKind.commune)
    assert e.value.field == "parent"
    with pytest.raises(ValidationFailed):
        unit_local_part("Phòng Nội vụ", UnitKind.subunit)


def test_operator_override():
    assert unit_local_part("Sở Thông tin và Truyền thông", UnitKind.department, abbrev="sotttt") == "sotttt"
    with pytest.raises(ValidationFailed) as e:
        unit_local_part("X", UnitKind.department, abbrev="Bad Name!")
    assert e.value.field == "abbrev"


def test_d4_2_a_person_and_d_with_stroke():
    assert person_candidates("Nguyễn Văn A", 1979, 3)[0] == "nguyenvana"
    assert person_name("Đặng Đình Đức") == "dangdinhduc"
    assert fold("ĐẶNG Thị Ửng") == "dangthiung"


def test_d4_2_b_collision_order():
    assert person_candidates("Nguyễn Văn A", 1979, 3) == ["nguyenvana", "nguyenvana79", "nguyenvana379"]
    assert person_candidates("Nguyễn Văn A", 2001, 11) == ["nguyenvana", "nguyenvana01", "nguyenvana1101"]
    taken = {"nguyenvana"}
    assert choose_address(person_candidates("Nguyễn Văn A", 1979, 3), taken.__contains__) == "nguyenvana79"
    taken = {"nguyenvana", "nguyenvana79"}
    assert choose_address(person_candidates("Nguyễn Văn A", 1979, 3), taken.__contains__) == "nguyenvana379"


def test_d4_2_b_all_taken_asks_the_operator():
    taken = {"nguyenvana", "nguyenvana79", "nguyenvana379"}
    with pytest.raises(Conflict) as e:
        choose_address(person_candidates("Nguyễn Văn A", 1979, 3), taken.__contains__)
    assert "nguyenvana, nguyenvana79, nguyenvana379" in e.value.message
    assert "--address" in e.value.message


VIETNAMESE_LETTERS = (
    "aàáảãạăằắẳẵặâầấẩẫậbcdđeèéẻẽẹêềếểễệghiìíỉĩịklmnoòóỏõọôồốổỗộơờớởỡợpqrstuùúủũụưừứửữựvxyỳýỷỹỵ"
)
word = st.text(alphabet=VIETNAMESE_LETTERS + VIETNAMESE_LETTERS.upper(), min_size=1, max_size=8)
LOCAL = re.compile(r"^[a-z0-9]+$")


@settings(max_examples=300)
@given(st.lists(word, min_size=1, max_size=5), st.integers(1940, 2010), st.integers(1, 12))
def test_any_vietnamese_name_gives_a_lowercase_ascii_local_part(words, year, month):
    name = " ".join(words)
    for candidate in person_candidates(name, year, month):
        assert LOCAL.match(candidate), candidate
        assert candidate.isascii() and candidate == candidate.lower()


@settings(max_examples=200)
@given(st.lists(word, min_size=1, max_size=6), st.sampled_from(list(UnitKind)))
def test_any_unit_name_gives_a_valid_local_part(words, kind):
    name = " ".join(words)
    parent = "tuyan" if kind in (UnitKind.commune, UnitKind.subunit) else None
    try:
        local = unit_local_part(name, kind, parent=parent)
    except ValidationFailed:
        # only when the name is nothing but "và" (no letters to form an address)
        assert all(w.lower() in ("và", "va") for w in words)
        return
    assert re.match(r"^[a-z0-9]+(\.[a-z0-9]+)*$", local), local
