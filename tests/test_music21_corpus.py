"""music21's corpus as styled note tables: style groups, instrument families, conversion."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from musenet import MidiError, MuseNetError
from musenet.instruments import FAMILIES, FAMILY_ID
from musenet.vocab import DEFAULT_STYLES

music21 = pytest.importorskip("music21")

from musenet.corpus import music21_corpus as mc  # noqa: E402 - after the music21 check
from musenet.corpus.part_names import family_for_part  # noqa: E402

VOICE, STRINGS = FAMILY_ID["voice"], FAMILY_ID["strings"]


def _check_table(table) -> None:
    """dtypes, sortedness and sanity every converted table must have."""
    assert table.onset.dtype == np.float64 and table.duration.dtype == np.float64
    assert table.pitch.dtype == np.int64 and table.velocity.dtype == np.int64 and table.family.dtype == np.int64
    assert len(table) > 0
    order = np.lexsort((table.pitch, table.family, table.onset))
    assert np.array_equal(order, np.arange(len(table))), "rows are sorted by onset, family, pitch"
    assert (table.duration >= 0).all() and (table.onset >= 0).all()
    assert ((table.pitch >= 0) & (table.pitch <= 127)).all()
    assert ((table.velocity >= 1) & (table.velocity <= 127)).all()
    assert not table.drum.any()
    assert table.tempo_time[0] == 0 and (np.diff(table.tempo_time) > 0).all()


# ---- style groups ----------------------------------------------------------------------

def test_style_groups_are_vocabulary_styles_with_valid_defaults():
    assert set(mc.STYLE_GROUPS) == set(DEFAULT_STYLES) - {"unknown", "pop"}
    for name, group in mc.STYLE_GROUPS.items():
        assert group.name == name
        assert group.default_family in FAMILIES
        assert 30 <= group.default_qpm <= 240
        assert group.description and "\n" not in group.description
        assert group.sources and all(isinstance(source, str) for source in group.sources)
    assert mc.STYLE_GROUPS["bach"].default_family == "voice"
    assert mc.STYLE_GROUPS["classical-quartet"].default_family == "strings"
    assert mc.STYLE_GROUPS["american-fiddle"].default_family == "strings"


def test_every_style_has_files_and_works():
    counts = mc.count_works()
    assert set(counts) == set(mc.STYLE_GROUPS)
    files = mc.corpus_files()
    assert files == sorted(files)
    paths = [path for path, _ in files]
    assert len(paths) == len(set(paths)), "a file belongs to one style"
    for style in mc.STYLE_GROUPS:
        assert counts[style] > 0, style
        assert mc.corpus_files([style]), style
    assert counts["german-folk"] > 5000 and counts["irish"] > 1500 and counts["bach"] > 350
    by_path = dict(files)
    assert by_path["bach/bwv66.6.mxl"] == "bach"
    assert by_path["essenFolksong/han1.abc"] == "chinese-folk"
    assert by_path["essenFolksong/erk10.abc"] == "german-folk"
    assert by_path["essenFolksong/irl.abc"] == "irish"
    assert by_path["monteverdi/madrigal.3.1.mxl"] == "madrigal"
    assert by_path["palestrina/Agnus_01.krn"] == "renaissance"
    assert by_path["haydn/opus1no1/movement1.mxl"] == "classical-quartet"
    left_out = ("demos/", "theoryExercises/", "essenFolksong/test", "essenFolksong/variant", "bach/bwv846",
                "mozart/k545", "miscFolk/", "chopin/", "oneills1850/0626-0635")
    assert not [path for path in paths if path.startswith(left_out) or path.endswith(".rntxt")]


def test_works_of_multi_tune_and_multi_voice_files():
    works = mc.corpus_works(["chinese-folk"])
    han1 = [number for path, number, _ in works if path == "essenFolksong/han1.abc"]
    assert len(han1) > 500 and han1 == sorted(han1) and None not in han1
    assert sum(1 for _ in works) == mc.count_works("chinese-folk")["chinese-folk"]
    josquin = [(path, number) for path, number, _ in mc.corpus_works("renaissance") if path.startswith("josquin/")]
    assert josquin and all(number is None for _, number in josquin), "a Josquin ABC file is one piece"
    assert all(number is None for _, number, _ in mc.corpus_works("bach"))


def test_unknown_style_is_an_error_listing_the_known_ones():
    with pytest.raises(MuseNetError, match="known: bach, renaissance"):
        mc.corpus_files(["baroque"])
    with pytest.raises(MuseNetError, match="baroque"):
        mc.count_works(["bach", "baroque"])
    with pytest.raises(MuseNetError):
        mc.read_corpus_file("bach/bwv66.6.mxl", "baroque")


def test_package_import_does_not_import_music21():
    code = "import sys, musenet.corpus, musenet.corpus.music21_corpus; assert 'music21' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- instrument families --------------------------------------------------------------

@pytest.mark.parametrize(
    ("part", "instrument", "default", "family"),
    [
        ("Soprano", "Instrument 1", "piano", "voice"),
        ("Bass", "Instrument 4", "strings", "voice"),       # a sung bass, not the bass family
        ("Canto", "Grand Piano", "voice", "voice"),          # Monteverdi: the part name wins
        ("Basso", "Grand Piano", "piano", "voice"),
        ("Quinto", "Grand Piano", "piano", "voice"),
        ("Contratenor", "Tenor", "piano", "voice"),
        ("Motetus", None, "piano", "voice"),
        ("Violin I", "String Ensemble 1", "voice", "strings"),
        ("Violoncello", None, "voice", "strings"),
        ("Viola", "Viola", "voice", "strings"),
        ("Contrabass", None, "voice", "strings"),
        ("Fiddle", None, "voice", "strings"),
        ("Alto Sax", None, "voice", "winds"),
        ("Bass Clarinet", None, "voice", "winds"),
        ("English Horn", None, "voice", "winds"),
        ("Fife", None, "voice", "winds"),
        ("French Horn", None, "voice", "brass"),
        ("Bass Trombone", None, "voice", "brass"),
        ("Harpsichord", None, "voice", "piano"),
        ("Basso continuo", None, "voice", "piano"),
        ("Lute", None, "voice", "guitar"),
        ("Harp", None, "voice", "harp"),
        ("Electric Bass", None, "voice", "bass"),
        ("MusicXML Part", "Grand Piano", "voice", "piano"),  # no keyword in the part: the instrument
        ("P1", "Acoustic Guitar (nylon)", "voice", "guitar"),  # a General MIDI name
        ("P1", "Choir Aahs", "piano", "voice"),
        ("Soprano\rOboe 1,2\rViolin1", None, "piano", "voice"),  # a chorale line doubled: the first word
        ("Tenor Viola", None, "piano", "voice"),
        ("Tenor Sax", None, "voice", "winds"),               # a range word before an instrument: the instrument
        ("Baritone Horn", None, "voice", "brass"),
        ("Double Bass", None, "voice", "strings"),
        ("Treble Viol", None, "voice", "strings"),
        (None, None, "strings", "strings"),                  # a fiddle tune in ABC: the default
        ("", "Instrument 2", "voice", "voice"),
    ],
)
def test_family_for_part(part, instrument, default, family):
    assert family_for_part(part, instrument, default) == FAMILY_ID[family]


def test_family_for_part_rejects_an_unknown_default():
    with pytest.raises(MuseNetError, match="unknown family"):
        family_for_part(None, None, "kazoo")


# ---- conversion ---------------------------------------------------------------------------

def _synthetic_score():
    from music21 import chord, harmony, instrument, note, stream, tempo, tie

    part = stream.Part()
    part.partName = "Canto"
    part.insert(0, instrument.Piano())
    first, second = note.Note("C4", quarterLength=1), note.Note("C4", quarterLength=1)
    first.tie, second.tie = tie.Tie("start"), tie.Tie("stop")
    part.insert(0, first)
    part.insert(1, second)
    part.insert(2, chord.Chord(["E4", "G4"], quarterLength=1))
    part.insert(3, note.Rest(quarterLength=1))
    part.insert(4, note.Note("D5").getGrace())
    loud = note.Note("E5", quarterLength=1)
    loud.volume.velocity = 100
    part.insert(4, loud)
    part.insert(4, tempo.MetronomeMark(number=60))
    part.insert(5, note.Unpitched(quarterLength=1))
    part.insert(5, harmony.ChordSymbol("C"))
    score = stream.Score()
    score.insert(0, part)
    return score


def test_score_to_table_notes_ties_chords_grace_velocity_tempo():
    score = _synthetic_score()
    table = mc.score_to_table(score, "strings", 77.0)
    _check_table(table)
    assert table.onset.tolist() == [0, 2, 2, 4, 4]
    assert table.duration.tolist() == [2, 1, 1, 0, 1]           # tie merged, grace note zero
    assert table.pitch.tolist() == [60, 64, 67, 74, 76]          # rest, unpitched, chord symbol skipped
    assert table.velocity.tolist() == [80, 80, 80, 80, 100]
    assert set(table.family.tolist()) == {VOICE}                 # "Canto" on a piano is a voice
    assert table.tempo_time.tolist() == [0, 4] and table.tempo_qpm.tolist() == [77, 60]
    assert len(score.parts[0].notes) == 7, "the caller's score is not changed"


def test_instrument_names_are_ignored_where_the_style_does_not_trust_them():
    from music21 import instrument, note, stream

    part = stream.Part()
    part.partName = "MusicXML Part"                          # a trecento voice, as music21 reads it
    part.insert(0, instrument.TenorSaxophone())
    part.append(note.Note("G3"))
    score = stream.Score()
    score.insert(0, part)
    assert set(mc.score_to_table(score, "voice", 120.0).family.tolist()) == {FAMILY_ID["winds"]}
    table = mc.score_to_table(score, "voice", 120.0, use_instruments=False)
    assert set(table.family.tolist()) == {VOICE}
    assert not mc.STYLE_GROUPS["renaissance"].trust_instruments
    assert mc.STYLE_GROUPS["classical-quartet"].trust_instruments


def test_score_with_no_notes_is_an_error():
    from music21 import note, stream

    part = stream.Part()
    part.append(note.Rest(quarterLength=4))
    score = stream.Score()
    score.insert(0, part)
    with pytest.raises(MidiError, match="no notes"):
        mc.score_to_table(score, "voice", 90.0)


def test_bach_chorale():
    [(work_id, table)] = mc.read_corpus_file("bach/bwv66.6.mxl", "bach")
    assert work_id == "bach/bwv66.6.mxl"
    _check_table(table)
    assert set(table.family.tolist()) == {VOICE}
    assert np.allclose(table.onset * 12, np.round(table.onset * 12))
    assert np.allclose(table.duration * 12, np.round(table.duration * 12))
    assert table.tempo_qpm.tolist() == [96.0]                    # the score's own mark
    assert 36 <= table.pitch.min() and table.pitch.max() <= 84
    expected = sum(len(part.stripTies().flatten().notes) for part in music21.corpus.parse("bach/bwv66.6").parts)
    assert len(table) == expected


def test_monteverdi_canto_on_grand_piano_is_a_voice():
    [(work_id, table)] = mc.read_corpus_file("monteverdi/madrigal.3.1.mxl", "madrigal")
    assert work_id == "monteverdi/madrigal.3.1.mxl"
    _check_table(table)
    assert set(table.family.tolist()) == {VOICE}


def test_quartet_parts_are_strings():
    score = music21.corpus.parse("haydn/opus1no1/movement4.mxl")
    assert [part.partName for part in score.parts][:2] == ["Violin I", "Violin II"]
    table = mc.score_to_table(score, "voice", 120.0)             # the names, not the default
    _check_table(table)
    assert set(table.family.tolist()) == {STRINGS}


def test_fiddle_tune_without_instrument_or_tempo_gets_the_style_defaults():
    [(work_id, table)] = mc.read_corpus_file("ryansMammoth/7thRegimentReel.abc", "american-fiddle")
    assert work_id == "ryansMammoth/7thRegimentReel.abc"
    _check_table(table)
    assert set(table.family.tolist()) == {STRINGS}
    group = mc.STYLE_GROUPS["american-fiddle"]
    assert table.tempo_time.tolist() == [0.0] and table.tempo_qpm.tolist() == [group.default_qpm]


def test_multi_tune_file_ids_match_corpus_works_and_read_work():
    source = "oneills1850/0721-0730.abc"
    results = mc.read_corpus_file(source, "irish")
    ids = [work_id for work_id, _ in results]
    numbers = [number for path, number, _ in mc.corpus_works("irish") if path == source]
    assert ids == [f"{source}#{number}" for number in numbers] == [f"{source}#{n}" for n in range(721, 731)]
    for _, table in results:
        assert not isinstance(table, str), table
        _check_table(table)
    work_id, single = mc.read_work(source, 725, "irish")
    assert work_id == f"{source}#725"
    whole = dict(results)[work_id]
    assert np.array_equal(single.onset, whole.onset) and np.array_equal(single.pitch, whole.pitch)


def test_josquin_file_is_one_piece_of_several_voices():
    [(work_id, table)] = mc.read_corpus_file("josquin/milleRegrets.abc", "renaissance")
    assert work_id == "josquin/milleRegrets.abc"
    _check_table(table)
    assert set(table.family.tolist()) == {VOICE}
    assert len(np.unique(table.onset)) < len(table), "voices sound together"


def test_bad_source_path_gives_a_reason_not_an_exception():
    [(work_id, reason)] = mc.read_corpus_file("bach/no-such-chorale.mxl", "bach")
    assert work_id == "bach/no-such-chorale.mxl"
    assert isinstance(reason, str) and "no such file" in reason and "\n" not in reason
    [(_, reason)] = mc.read_corpus_file("../../../etc/passwd", "bach")
    assert isinstance(reason, str)
    with pytest.raises(MidiError, match="no-such-chorale"):
        mc.read_work("bach/no-such-chorale.mxl", None, "bach")
