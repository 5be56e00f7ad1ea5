import numpy as np

from musenet.instruments import (
    DRUMS,
    FAMILIES,
    FAMILY_ID,
    GM_PROGRAM_NAMES,
    PITCH_RANGE,
    PROGRAM_FAMILY,
    REPRESENTATIVE_PROGRAM,
    family_of_program,
    family_table,
)


def test_ten_families_and_every_program_in_exactly_one():
    assert len(FAMILIES) == 10
    assert PROGRAM_FAMILY.shape == (128,) and len(GM_PROGRAM_NAMES) == 128
    assert set(PROGRAM_FAMILY.tolist()) == set(range(10)) - {DRUMS}  # drums come from channel 10 only


def test_representative_program_decodes_back_to_its_family():
    for name, program in REPRESENTATIVE_PROGRAM.items():
        if name != "drums":
            assert PROGRAM_FAMILY[program] == FAMILY_ID[name], name


def test_known_programs():
    assert FAMILIES[family_of_program(0)] == "piano"
    assert FAMILIES[family_of_program(40)] == "strings"
    assert FAMILIES[family_of_program(46)] == "harp"
    assert FAMILIES[family_of_program(52)] == "voice"
    assert FAMILIES[family_of_program(33)] == "bass"
    assert FAMILIES[family_of_program(73)] == "winds"
    assert FAMILIES[family_of_program(56)] == "brass"
    assert FAMILIES[family_of_program(25)] == "guitar"
    assert FAMILIES[family_of_program(81)] == "synth"
    assert FAMILIES[family_of_program(0, is_drum=True)] == "drums"


def test_ranges_and_table():
    for lo, hi in PITCH_RANGE.values():
        assert 0 <= lo < hi <= 127
    text = family_table()
    assert all(name in text for name in FAMILIES)
    assert all(GM_PROGRAM_NAMES[p] in text for p in np.flatnonzero(PROGRAM_FAMILY >= 0))
