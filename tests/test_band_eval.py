"""The band evaluations (`musenet eval --band`): each figure on a hand-made note table whose
answer is known, and the four stages end to end with a tiny random-weight model."""

from pathlib import Path

import numpy as np
import pytest
import torch

from musenet import Composer
from musenet.checkpoint import save_checkpoint
from musenet.corpus.pop909 import MELODY, PIANO
from musenet.evaluate import bass_in_chord, coverage, coverage_grid, drum_figures, run_band, window_figures
from musenet.evaluate.band import drum_summary
from musenet.evaluate.coverage import FAMILY_SETS
from musenet.evaluate.drums import MIN_REAL_TAKES, compare_drums, drum_bars
from musenet.evaluate.harmony import generated_bass_in_chord, pop909_bass_in_chord
from musenet.evaluate.report import band_headline, markdown, plain
from musenet.instruments import DRUMS, FAMILIES, FAMILY_ID
from musenet.model import build_model
from musenet.notes import NoteTable, write_midi
from musenet.vocab import DEFAULT_STYLES, Vocab

CORPORA = Path(__file__).resolve().parents[2] / "shared" / "corpora"
STYLES = (*DEFAULT_STYLES, "drums-rock", "drums-funk")


def table(notes, tempos=((0.0, 120.0),)):
    """NoteTable from (beat, beats, pitch, family) rows, velocity 80, a tempo map of (beat, qpm)."""
    rows = np.array(notes, np.float64).reshape(-1, 4)
    tempo = np.array(tempos, np.float64)
    return NoteTable(rows[:, 0], rows[:, 1], rows[:, 2].astype(np.int64), np.full(len(rows), 80, np.int64),
                     rows[:, 3].astype(np.int64), tempo[:, 0], tempo[:, 1]).sorted()


def rock_beat(bars=4, start=0.0):
    """Kick on every beat, snare on 2 and 4, closed hi-hat on every eighth: 14 hits a bar."""
    rows = []
    for bar in range(bars):
        at = start + 4 * bar
        rows += [(at + b, 0.1, 36, DRUMS) for b in range(4)] + [(at + b, 0.1, 38, DRUMS) for b in (1, 3)]
        rows += [(at + e / 2, 0.1, 42, DRUMS) for e in range(8)]
    return rows


# ---- coverage -------------------------------------------------------------------------------------

def test_the_coverage_grid_is_fixed_and_names_every_family_often():
    grid = coverage_grid(STYLES, 40)
    assert grid == coverage_grid(STYLES, 40) and len(grid) == 40
    assert grid[0] == ("pop", ("voice", "piano", "bass", "drums"))
    assert all(2 <= len(families) <= 4 and len(set(families)) == len(families) for _, families in grid)
    counts = {name: sum(name in families for _, families in grid) for name in FAMILIES}
    assert min(counts.values()) >= 6, counts
    assert all("drums" in families for style, families in grid if style.startswith("drums-"))
    assert {style for style, _ in grid} >= {"pop", "drums-rock", "drums-funk", "bach", "irish"}
    assert "unknown" not in {style for style, _ in grid}
    assert {families for _, families in grid} == set(FAMILY_SETS)


def test_coverage_counts_families_with_four_notes_or_more():
    piano, drums, bass = FAMILY_ID["piano"], DRUMS, FAMILY_ID["bass"]
    grid = [("pop", ("piano", "drums")), ("pop", ("bass", "drums"))]
    first = table([(i, 1, 60, piano) for i in range(4)] + [(i, 0.1, 36, drums) for i in range(3)])
    second = table([(i, 1, 40, bass) for i in range(9)] + [(i, 0.1, 36, drums) for i in range(4)]
                   + [(0, 1, 70, FAMILY_ID["synth"])])
    got = coverage(grid, [first, second])
    assert got["overall"] == 0.75
    assert got["by_family"]["piano"] == 1.0 and got["by_family"]["bass"] == 1.0 and got["by_family"]["drums"] == 0.5
    assert np.isnan(got["by_family"]["harp"]) and got["requested"]["drums"] == 2
    assert got["requests"][1] == {"style": "pop", "families": ["bass", "drums"], "notes": {"bass": 9, "drums": 4},
                                  "other_notes": 1}


# ---- drums ----------------------------------------------------------------------------------------

def test_drum_figures_of_a_steady_rock_beat():
    got = drum_figures(table(rock_beat(4) + [(0, 4, 60, FAMILY_ID["piano"])]))  # the piano is not counted
    assert got == pytest.approx({"hits_per_bar": 14.0, "grid_share": 1.0, "kick_share": 4 / 14,
                                 "snare_share": 2 / 14, "hihat_share": 8 / 14, "consistency": 1.0})
    same = compare_drums([table(rock_beat(4))], [table(rock_beat(8))])
    assert same["overlap"] == pytest.approx(dict.fromkeys(same["overlap"], 1.0)) and same["mean_overlap"] == 1.0


def test_drum_figures_off_the_grid_and_a_changing_groove():
    triplets = [(b + t / 3, 0.1, 42, DRUMS) for b in range(4) for t in range(3)]  # 4 of 12 on a 16th
    assert drum_figures(table(triplets))["grid_share"] == pytest.approx(4 / 12)
    # bar 1: kicks on the beats; bar 2: the same plus a snare on beat 2; bar 3 empty; bar 4 like bar 1
    rows = [(b, 0.1, 36, DRUMS) for b in range(4)] + [(4 + b, 0.1, 36, DRUMS) for b in range(4)]
    rows += [(5, 0.1, 38, DRUMS)] + [(12 + b, 0.1, 36, DRUMS) for b in range(4)]
    bars = drum_bars(table(rows))
    assert bars["hits"].tolist() == [4, 5, 0, 4]
    assert bars["consistency"].tolist() == pytest.approx([4 / 5, 0.0, 0.0])
    got = drum_figures(table(rows))
    assert got["hits_per_bar"] == 13 / 4 and got["consistency"] == pytest.approx(4 / 15)
    assert got["kick_share"] == 12 / 13 and got["hihat_share"] == 0.0
    # a groove played a 16th late throughout is as consistent, and still on the grid
    assert drum_figures(table(rock_beat(4, start=0.25)))["consistency"] == 1.0
    nothing = drum_figures(table([(0, 1, 60, FAMILY_ID["piano"])]))
    assert nothing["hits_per_bar"] == 0 and np.isnan(nothing["consistency"])


def test_the_drum_target_averages_only_styles_with_enough_real_takes():
    rock = table(rock_beat(4))
    funk = table([(b + t / 3, 0.1, 42, DRUMS) for b in range(16) for t in range(3)])  # hi-hat triplets
    summary = drum_summary({"drums-rock": [rock], "drums-funk": [funk], "pop": [rock]},
                           {"drums-rock": [rock] * MIN_REAL_TAKES, "drums-funk": [rock], "pop": []})
    assert summary["measurable_styles"] == 1 and summary["min_real_takes"] == MIN_REAL_TAKES
    assert summary["mean_overlap_measurable"] == 1.0 and summary["ceiling_measurable"] == 1.0
    # the one-take style counts in the plain mean (pop, with no takes, in neither)
    funk_overlap = summary["by_style"]["drums-funk"]["mean_overlap"]
    assert funk_overlap < 1.0 and summary["mean_overlap"] == pytest.approx((1.0 + funk_overlap) / 2)


# ---- bass and harmony ----------------------------------------------------------------------------

def test_a_bass_on_the_chord_roots_is_in_the_chord():
    piano, bass = FAMILY_ID["piano"], FAMILY_ID["bass"]
    chords = [(0, (60, 64, 67)), (4, (65, 69, 72)), (8, (67, 71, 74)), (12, (60, 64, 67))]  # C F G C
    rows = [(at, 4, p, piano) for at, triad in chords for p in triad]
    roots = [(at, 2, triad[0] - 24, bass) for at, triad in chords]
    got = generated_bass_in_chord(table(rows + roots))
    assert got == {"share": 1.0, "bass_notes": 4, "with_chord": 4, "in_chord": 4}
    wrong = [(at, 2, triad[0] - 23, bass) for at, triad in chords]  # a semitone up
    assert generated_bass_in_chord(table(rows + wrong))["share"] == 0.0
    # a passing note between chords (nothing else sounds) is not counted; the drums are no chord
    extra = [(16, 1, 50, bass), (16, 0.1, 36, DRUMS), (2, 1, 40, bass)]  # E in a C chord: in it
    assert generated_bass_in_chord(table(rows + roots + extra)) == {"share": 1.0, "bass_notes": 6,
                                                                    "with_chord": 5, "in_chord": 5}
    # a chord struck a 32nd late still counts; one released as the bass strikes does not
    late = table([(0, 2, 36, bass), (0.1, 1.9, 72, piano), (0, 2, 62, piano), (2, 2, 38, bass)])
    assert bass_in_chord(late, late.family == bass) == {"share": 1.0, "bass_notes": 2, "with_chord": 1,
                                                       "in_chord": 1}


def test_pop909_bass_is_the_pianos_lowest_voice_below_c4():
    piano = FAMILY_ID["piano"]
    # left hand: C2 then B2 under a C major chord (C2 in it, B2 not); a tune note alone above C4
    rows = [(0, 2, 36, piano), (0, 4, 60, piano), (0, 4, 64, piano), (2, 2, 47, piano), (4, 1, 72, piano),
            (0, 1, 76, piano)]
    notes = table(rows)
    roles = np.where((notes.pitch == 76) | (notes.pitch == 72), MELODY, PIANO)
    assert pop909_bass_in_chord(notes, roles) == {"share": 0.5, "bass_notes": 2, "with_chord": 2, "in_chord": 1}


# ---- continuation --------------------------------------------------------------------------------

def test_window_figures():
    piano, strings = FAMILY_ID["piano"], FAMILY_ID["strings"]
    # 60 BPM (a beat a second), a change to 120 at 20 s (beat 20) and a 1% drift at 40 s (beat 60)
    tempos = ((0.0, 60.0), (20.0, 120.0), (60.0, 121.0))
    rows = [(b, 1, 60, piano) for b in range(0, 20)]              # 0-20 s: a note a second
    rows += [(20 + 2 * s, 2, 62, piano) for s in range(20)]       # 20-40 s: one note a second, each 1 s long
    rows += [(20, 10, 48, strings), (36, 2, 50, strings)]         # at 20 s, held 5 s; at 28 s, 1 s
    rows += [(b, 0.5, 36, DRUMS) for b in range(20, 60)]          # drums: not counted as notes
    got = window_figures(table(rows, tempos), 20.0, 40.0, ["piano", "strings", "drums"])
    assert got["tempo_changes_per_minute"] == pytest.approx(3.0)  # one change in 20 s; the drift is not one
    assert got["notes"] == 22 and got["long_note_share"] == pytest.approx(1 / 22)
    assert got["mean_polyphony"] == pytest.approx(1 + 6 / 20)   # the piano always, the strings 6 s of 20
    assert got["families_playing_last"] == {"piano": True, "strings": False, "drums": True}
    assert got["all_families_playing"] is False


def test_window_figures_count_notes_held_to_the_samplers_cap():
    piano = FAMILY_ID["piano"]
    rows = [(0, 8, 60, piano), (1, 7.95, 62, piano), (2, 4, 64, piano), (3, 1, 65, piano)]  # 60 BPM: beats are seconds
    got = window_figures(table(rows, ((0.0, 60.0),)), 0.0, 10.0, ["piano"])
    assert got["notes"] == 4 and got["long_note_share"] == pytest.approx(3 / 4)
    assert got["capped_note_share"] == pytest.approx(2 / 4)  # within 0.1 s of max_note_seconds (8 s)


# ---- end to end ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def composer(tmp_path_factory):
    torch.manual_seed(0)
    vocab = Vocab(styles=STYLES)
    model = build_model("tiny", vocab.size, context=96)
    return Composer.load(save_checkpoint(tmp_path_factory.mktemp("model") / "tiny", model, vocab), threads=1)


def band_song(path, seconds=14):
    """A song of piano chords, a bass and a rock beat, two beats a second."""
    piano, bass = FAMILY_ID["piano"], FAMILY_ID["bass"]
    beats = 2 * seconds
    rows = [(b, 4, p, piano) for b in range(0, beats, 4) for p in (60, 64, 67)]
    rows += [(b, 1, 36, bass) for b in range(beats)] + rock_beat(beats // 4)
    write_midi(table(rows), path)


def test_band_stages_end_to_end(composer, tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    band_song(prompts / "song.mid")
    band_song(prompts / "short.mid", seconds=3)
    (prompts / "broken.mid").write_bytes(b"not midi")
    corpora = CORPORA if (CORPORA / "groove" / "info.csv").is_file() and (CORPORA / "pop909").is_dir() else None
    seen = []

    def stage(label):
        seen.append(label)
        from contextlib import nullcontext
        return nullcontext()

    band = run_band(composer, ["pop", "drums-rock", "irish"], seconds=3, requests=3, pieces=1, prompts=prompts,
                    corpora=corpora, stage=stage, band_prompts=1 if corpora else 0, real_limit=2, prompt_seconds=4,
                    continue_seconds=2)
    assert seen[:5] == ["coverage (strict)", "coverage (soft)", "coverage (strict, no entrances)", "band pieces (pop)",
                        "band pieces (drums-rock)"]
    assert set(band["timings"]) == set(seen)
    strict = band["coverage"]["strict"]
    assert [r["style"] for r in strict["requests"]] == ["pop", "irish", "irish"]
    assert 0 <= strict["overall"] <= 1 and 0 <= band["coverage"]["soft"]["overall"] <= 1
    assert 0 <= band["coverage"]["strict_no_entrances"]["overall"] <= 1 and strict["median_notes"]["piano"] >= 0
    drums = band["drums"]["by_style"]
    assert set(drums) == {"pop", "drums-rock"} and drums["pop"]["pieces"] == 1
    assert band["harmony"]["generated"]["pieces"] == 1
    cont = band["continuation"]
    names = [s["name"] for s in cont["songs"]]
    assert names[0] == "song.mid" and {s["name"] for s in cont["skipped"]} == {"broken.mid", "short.mid"}
    song = cont["songs"][0]
    assert song["families"] == ["piano", "bass", "drums"] and song["real"]["all_families_playing"]
    assert song["real"]["tempo_changes_per_minute"] == 0 and song["real"]["mean_polyphony"] == pytest.approx(4.0)
    if corpora is None:
        pytest.skip(f"{CORPORA} is absent: real grooves, POP909 songs and band-version prompts not checked")
    assert drums["drums-rock"]["real_pieces"] > 0 and drums["pop"]["real_pieces"] > drums["drums-rock"]["real_pieces"]
    assert 0 < drums["drums-rock"]["real"]["hits_per_bar"] and 0 <= drums["pop"]["overlap"]["kick_share"] <= 1
    assert band["drums"]["measurable_styles"] == 2 and 0 < band["drums"]["ceiling_measurable"] <= 1
    real = band["harmony"]["real"]
    assert real["pieces"] == 2 and 0.5 < real["share"] < 1
    assert len(names) == 2 and names[1].startswith("POP909 ") and "band version" in names[1]
    rows = band_headline(plain(band))
    assert len(rows) == 11 and rows[0][0].startswith("instrument coverage, strict")
    text = markdown({"band": band, **_minimal_report()})
    assert "## 6. Playing as a band" in text and "| drums-rock |" in text and "| POP909 test songs | 2 " in text


def _minimal_report():
    """The parts of a report `markdown` needs besides the band, empty."""
    return {"model": "m", "data": "d", "time_mode": "beat", "seed": 0, "headline": [],
            "settings": {"pieces_per_style": 1, "seconds": 3, "soft_pieces_per_style": 1, "long_pieces": 0,
                         "long_seconds": 8},
            "likelihood": {"split": "test", "pieces": 0, "tokens": 0, "notes": 0, "ngram_order": 5,
                           "ngram_train_pieces": 0, "shared_order": 8, "by_style": {}, "model_bits_per_note": 0,
                           "ngram_bits_per_note": 0, "reduction": 0, "shared_with_train": 0},
            "music_stats": {}, "style_adherence": {"classifier": "c", "by_style": {}},
            "instruments": {"by_style": {}}, "long_pieces": {"pieces": []}}
