"""`musenet eval`: the Kneser-Ney baseline, music statistics, the style classifier, long-piece
health, and the whole report on a tiny random-weight model and a tiny dataset."""

import hashlib
import json
from collections import Counter, defaultdict

import numpy as np
import pytest
import torch
from helpers import make_score

from musenet.build import build
from musenet.checkpoint import save_checkpoint
from musenet.cli import main
from musenet.dataset import Dataset
from musenet.evaluate import (
    KneserNey,
    classifier,
    cross_validated_accuracy,
    excerpt,
    long_piece_health,
    music_stats,
    ngram_bits_per_note,
    overlap,
    piece_features,
    shared_ngram_share,
)
from musenet.instruments import DRUMS, FAMILY_ID
from musenet.model import build_model
from musenet.notes import NoteTable, read_midi, write_midi
from musenet.sources import split_of
from musenet.vocab import default_vocab


def table(notes, qpm=120.0):
    """NoteTable from (beat, beats, pitch, family) rows, velocity 80, one tempo."""
    rows = np.array(notes, np.float64).reshape(-1, 4)
    return NoteTable(rows[:, 0], rows[:, 1], rows[:, 2].astype(np.int64), np.full(len(rows), 80, np.int64),
                     rows[:, 3].astype(np.int64), np.zeros(1), np.full(1, qpm))


# ---- the n-gram --------------------------------------------------------------------------------------

def naive_kneser_ney(train, vocab_size, order):
    """The same estimator written the slow, obvious way: dictionaries of n-gram counts."""
    bos = vocab_size
    raw = [None] + [Counter() for _ in range(order)]
    for piece in train:
        s = [bos] * (order - 1) + list(piece)
        for i in range(order - 1, len(s)):
            for k in range(1, order + 1):
                raw[k][tuple(s[i - k + 1: i + 1])] += 1
    counts = [None] + [{} for _ in range(order)]
    counts[order] = dict(raw[order])
    for k in range(1, order):
        left = defaultdict(set)
        for gram in raw[k + 1]:
            left[gram[1:]].add(gram[0])
        for gram in raw[k]:
            counts[k][gram] = raw[k][gram] if gram[0] == bos else len(left[gram])
    discount = [None] + [KneserNey.discounts(np.array(list(counts[k].values()))) for k in range(1, order + 1)]

    def prob(context, word):
        p = 1.0 / vocab_size
        for k in range(1, order + 1):
            h = tuple(context[len(context) - (k - 1):]) if k > 1 else ()
            children = {g: c for g, c in counts[k].items() if g[:-1] == h}
            total = sum(children.values())
            if total:
                gamma = sum(discount[k][min(c, 3)] for c in children.values())
                c = children.get(h + (word,), 0)
                p = (c - discount[k][min(c, 3)] + gamma * p) / total
        return p

    return prob


def test_kneser_ney_gives_probabilities_that_sum_to_one():
    rng = np.random.default_rng(0)
    vocab_size = 40
    train = [rng.integers(0, vocab_size, int(rng.integers(5, 120))) for _ in range(12)]
    train.append(np.tile([1, 2, 3, 4, 5], 30))
    model = KneserNey(vocab_size, 5).fit(train)
    for context in ([], [1], [1, 2, 3, 4], [3, 1, 4, 1, 5, 9], [39, 39, 39, 39, 39], train[0][:7].tolist()):
        p = model.distribution(context)
        assert p.shape == (vocab_size,) and (p > 0).all()
        assert abs(p.sum() - 1) < 1e-9, (context, p.sum())
    assert model.distribution([1, 2, 3, 4]).argmax() == 5  # it learned the loop


def test_kneser_ney_matches_a_naive_implementation():
    rng = np.random.default_rng(1)
    vocab_size, order = 6, 3
    train = [rng.integers(0, vocab_size, int(rng.integers(1, 30))) for _ in range(8)]
    reference = naive_kneser_ney(train, vocab_size, order)
    model = KneserNey(vocab_size, order).fit(train)
    pieces = [rng.integers(0, vocab_size, 15) for _ in range(3)]
    for piece, got in zip(pieces, model.log2_probabilities(pieces), strict=True):
        padded = [vocab_size] * (order - 1) + piece.tolist()
        want = [np.log2(reference(padded[i - order + 1: i], padded[i])) for i in range(order, len(padded))]
        np.testing.assert_allclose(got, want, rtol=1e-10)


def test_ngram_bits_lower_on_repetitive_music_than_random():
    vocab = default_vocab()
    t = vocab.tables
    notes = np.flatnonzero((t["family"] == 0) & (t["velocity"] == 80))
    offs = np.flatnonzero((t["family"] == 0) & (t["velocity"] == 0))
    wait = vocab.wait_offset + 5
    head = [vocab.style_token("bach"), vocab.family_offset, vocab.START, vocab.tempo_offset + 10]

    def piece(pitches):
        body = [[notes[p], wait, offs[p]] for p in pitches]
        return np.array(head + [x for group in body for x in group] + [vocab.END])

    rng = np.random.default_rng(0)
    riff = [20, 22, 24, 20, 27, 25, 24, 22]
    repetitive = [piece(riff * 12) for _ in range(6)]
    random = [piece(rng.integers(0, 80, 96)) for _ in range(6)]
    low = ngram_bits_per_note(repetitive[:4], repetitive[4:], vocab)
    high = ngram_bits_per_note(random[:4], random[4:], vocab)
    assert low["notes"] == [96, 96] and low["tokens"] == 2 * (len(repetitive[0]) - 1)
    assert low["bits_per_note"] < 0.5 < 5 < high["bits_per_note"]
    kinds = high["bits_per_note_by_kind"]  # random pitches: the note-ons carry the bits, the rest is predictable
    assert sum(kinds.values()) == pytest.approx(high["bits_per_note"])
    assert kinds["note-on"] > 5 and kinds["wait"] < 0.5


def test_shared_ngram_share_counts_runs_seen_in_train():
    train = [np.arange(20), np.arange(100, 110)]
    copied = np.arange(5, 15)                               # 3 runs of 8, all inside train's first piece
    half = np.concatenate([np.arange(100, 108), [7, 7, 7, 7]])  # 5 runs, only the first seen
    short = np.arange(5)                                    # no run of 8 at all
    counts = shared_ngram_share(train, [copied, half, short, np.arange(10, 19)[::-1]])
    assert counts.tolist() == [[3, 3], [1, 5], [0, 0], [0, 2]]  # reversed order is not the same run


# ---- statistics ----------------------------------------------------------------------------------

def test_music_stats_on_a_hand_made_piece():
    # 120 BPM: C4 E4 G4 on beats 0-2, beat 3 empty, C5 on beat 4 (ends at 2.5 s), plus a drum hit
    piece = table([(0, 1, 60, 0), (1, 1, 64, 0), (2, 1, 67, 0), (4, 1, 72, 0), (0, 0.25, 36, DRUMS)])
    s = music_stats(piece)
    assert s["notes"] == 5 and s["seconds"] == pytest.approx(2.5)
    assert s["notes_per_second"] == pytest.approx(2.0)
    assert s["pitch_range"] == 12
    assert s["empty_beat_rate"] == pytest.approx(0.2)  # beats 0..4, beat 3 empty
    assert s["scale_consistency"] == 1.0 and s["key"] == "C major"
    assert s["pitch_class_counts"][[0, 4, 7]].tolist() == [2, 1, 1] and s["pitch_class_counts"].sum() == 4
    assert s["mean_polyphony"] == pytest.approx(0.8)  # one note sounds for 2.0 of the 2.5 s, drums aside
    assert s["polyphony_counts"][:2].tolist() == [5, 20]
    assert s["median_ioi"] == pytest.approx(0.5) and s["ioi_counts"].sum() == 3  # 0.5, 0.5, 1.0 s
    slow = music_stats(table([(0, 1, 60, 0), (1, 1, 64, 0), (2, 1, 67, 0), (4, 1, 72, 0)], qpm=60))
    assert slow["notes_per_second"] == pytest.approx(0.8) and slow["empty_beat_rate"] == pytest.approx(0.2)
    # seconds mode counts empty half-second windows instead of beats: 0-0.5 s and 1.5-2 s are empty here
    seconds_mode = music_stats(table([(1, 1, 60, 0), (2, 0.5, 62, 0), (4, 1, 64, 0)]), time_mode="seconds")
    assert seconds_mode["empty_beat_rate"] == pytest.approx(2 / 5)
    chromatic = music_stats(table([(i, 1, 60 + i, 0) for i in range(12)]))
    assert chromatic["scale_consistency"] == pytest.approx(7 / 12)
    cut = excerpt(piece, 1.2)  # notes starting before 1.2 s, cut there
    assert len(cut) == 4 and (cut.onset + cut.duration).max() == pytest.approx(2.4)
    assert overlap([1, 1, 0], [0, 1, 1]) == pytest.approx(0.5) and overlap([2, 0], [1, 0]) == 1.0


def test_long_piece_health():
    bar = [(0, 1, 60, 0), (1, 1, 64, 0), (2, 2, 67, 0)]
    notes = [(b * 4 + o, d, p, f) for b in range(4) for o, d, p, f in bar]  # bars 0-3: the same bar
    notes += [(16, 1, 62, 0), (24, 30, 50, FAMILY_ID["strings"])]  # bar 4 new; silence 17-24; a 15 s note
    health = long_piece_health(table(notes))
    assert health["bars"] == 6 and health["repeated_bar_share"] == pytest.approx(3 / 6)
    assert health["longest_silence"] == pytest.approx(3.5)  # beats 17 to 24 at 120 BPM
    assert health["stuck_notes"] == 1 and health["seconds"] == pytest.approx(27.0)


def test_classifier_separates_two_synthetic_styles():
    rng = np.random.default_rng(0)

    def slow_piano():
        pitches = rng.choice([48, 50, 52, 53, 55, 57, 59, 60], 24)
        return table([(2 * i, 2, p, 0) for i, p in enumerate(pitches)], qpm=70)

    def busy_band():
        rows = [(i / 4, 0.25, int(rng.integers(70, 90)), FAMILY_ID["strings"]) for i in range(64)]
        rows += [(i / 2, 0.25, 36 + 2 * (i % 2), DRUMS) for i in range(32)]
        return table(rows, qpm=150)

    def features(make, n):
        return [piece_features(make()) for _ in range(n)]

    x = np.array(features(slow_piano, 10) + features(busy_band, 10))
    labels = ["ballad"] * 10 + ["rock"] * 10
    model = classifier().fit(x, labels)
    assert model.predict(x).tolist() == labels
    fresh = np.array(features(slow_piano, 5) + features(busy_band, 5))
    assert model.predict(fresh).tolist() == ["ballad"] * 5 + ["rock"] * 5
    assert np.allclose(model.predict_proba(fresh).sum(axis=1), 1)
    assert cross_validated_accuracy(x, labels, seed=3) == 1.0
    assert cross_validated_accuracy(x[::2], labels[::2]) == 1.0  # 2 pieces per fold is enough
    assert np.isnan(cross_validated_accuracy(x[:9], labels[:9]))  # not 2 pieces per fold
    assert np.isnan(cross_validated_accuracy(x[:11], labels[:11]))  # one rock piece: a fold could lack it


# ---- end to end ----------------------------------------------------------------------------------

def write_song(path, rng, style):
    if style == "ballad":
        notes = [(i * 1.0, 1.0, int(rng.choice([60, 62, 64, 65, 67, 69, 71, 72])), 70) for i in range(24)]
        tracks = [{"program": 0, "notes": notes}]
        tempo = 80
    else:
        tracks = [{"program": 25, "notes": [(i * 0.5, 0.5, int(rng.integers(52, 70)), 100) for i in range(48)]},
                  {"program": 33, "notes": [(i * 1.0, 1.0, int(rng.integers(36, 48)), 100) for i in range(24)]},
                  {"is_drum": True, "notes": [(i * 0.5, 0.25, 36 + 2 * (i % 2), 110) for i in range(48)]}]
        tempo = 140
    path.parent.mkdir(parents=True, exist_ok=True)
    write_midi(read_midi(make_score(tracks, tempos=[(0, tempo)])), path)
    return split_of(f"midi:{hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()}")


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(0)
    for style in ("ballad", "rock"):  # three train pieces and one test piece of each style
        wanted = {0: 3, 1: 0, 2: 1}
        for number in range(500):
            path = root / "midi" / style / f"{number}.mid"
            split = write_song(path, rng, style)
            if wanted[split]:
                wanted[split] -= 1
            else:
                path.unlink()
            if not any(wanted.values()):
                break
    build(str(root / "midi"), root / "data", workers=1, progress=False)
    data = Dataset(root / "data", split=None)
    torch.manual_seed(0)
    model = save_checkpoint(root / "model", build_model("tiny", data.vocab.size), data.vocab)
    return root, data, model


def test_two_sample_test_tells_apart_what_differs_and_not_what_does_not():
    from musenet.evaluate.two_sample import two_sample_test, wilson

    rng = np.random.default_rng(0)
    styles = ["a"] * 30 + ["b"] * 30
    real = rng.normal(size=(60, 20))
    apart = two_sample_test(real, styles, rng.normal(2.0, 1.0, size=(60, 20)), styles)
    assert apart["accuracy"] > 0.95 and apart["pieces"] == 120 and set(apart["by_style"]) == {"a", "b"}
    alike = two_sample_test(real, styles, rng.normal(size=(60, 20)), styles)
    low, high = alike["interval"]
    assert low < 0.5 < high and 0.3 < alike["accuracy"] < 0.7
    fewer = two_sample_test(real, styles, rng.normal(size=(10, 20)), ["a"] * 10)  # balanced: 10 real of style a
    assert fewer["pieces"] == 20 and list(fewer["by_style"]) == ["a"]
    assert abs(wilson(0, 10)[0]) < 1e-12 and abs(wilson(5, 10)[0] - 0.2366) < 1e-3


def test_eval_writes_the_report(tiny_setup, capsys):
    root, data, model = tiny_setup
    assert sorted(np.bincount(data.index["split"], minlength=3).tolist()) == [0, 2, 6]
    out = root / "report"
    code = main(["eval", "--model", str(model), "--data", str(root / "data"), "--out", str(out),
                 "--pieces-per-style", "1", "--seconds", "5", "--long-pieces", "1", "--long-seconds", "8",
                 "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "strict instrument adherence" in printed and "report.md" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["styles"] == ["ballad", "rock"]
    like = report["likelihood"]
    assert like["pieces"] == 2 and like["model_bits_per_note"] > 0 and like["ngram_bits_per_note"] > 0
    assert set(like["by_style"]) == {"ballad", "rock"}
    assert 0 <= like["shared_with_train"] <= 1 and like["shared_order"] == 8
    for source in ("model", "ngram"):  # the kinds of token split each total
        parts = sum(v[source] for v in like["by_kind"].values())
        assert parts == pytest.approx(like[f"{source}_bits_per_note"], rel=1e-6)
    assert report["instruments"]["strict"] == 1.0
    assert report["instruments"]["by_style"]["ballad"]["requested"] == ["piano"]
    assert report["instruments"]["by_style"]["rock"]["requested"] == ["guitar", "bass", "drums"]
    assert report["style_adherence"]["held_out_accuracy"] == 1.0  # the two styles are easy to tell apart
    for style, v in report["style_adherence"]["by_style"].items():  # what each style's pieces were named
        assert sum(v["generated_named_as"].values()) == v["generated_pieces"] == 1
        assert v["generated_rate"] == v["generated_named_as"].get(style, 0)
    for style in ("ballad", "rock"):
        stats = report["music_stats"][style]
        assert stats["reference"] == "test" and stats["generated_pieces"] == 1
        assert 0 <= stats["overlap"]["pitch_class_counts"] <= 1
    long = report["long_pieces"]
    assert len(long["pieces"]) == 1 and 7 <= long["pieces"][0]["seconds"] <= 9
    markdown = (out / "report.md").read_text()
    assert markdown.startswith("# MuseNet evaluation") and "| metric | value | target | met? |" in markdown
    assert "| strict instrument adherence | 1.000 | = 1.0 | yes |" in markdown
    assert "| seen in train |" in markdown and "\n| all | 2 |" in markdown
    for name in ("bits-per-note.png", "stats-ballad.png", "stats-rock.png", "roll-ballad.png", "roll-rock.png",
                 "long-1.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in markdown
    assert not list(out.glob(".*.tmp"))


def test_eval_refuses_an_empty_split_and_a_foreign_dataset(tiny_setup, tmp_path, capsys):
    root, data, model = tiny_setup
    args = ["eval", "--model", str(model), "--data", str(root / "data"), "--out", str(tmp_path / "r")]
    assert main([*args, "--split", "valid"]) == 1
    assert "the valid split is empty" in capsys.readouterr().err
    other = save_checkpoint(tmp_path / "other", build_model("tiny", default_vocab().size), default_vocab())
    assert main(["eval", "--model", str(other), "--data", str(root / "data"), "--out", str(tmp_path / "r")]) == 1
    assert "vocabulary" in capsys.readouterr().err


def test_eval_band_stages_add_a_section_and_keep_the_rest(tiny_setup):
    root, data, model = tiny_setup
    out = root / "report-band"
    assert main(["eval", "--model", str(model), "--data", str(root / "data"), "--out", str(out),
                 "--pieces-per-style", "1", "--seconds", "3", "--long-pieces", "0", "--threads", "1", "--band",
                 "--band-requests", "2", "--nucleus", "family", "--top-p", "0.9", "--min-p", "0.1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["settings"]["sampling"] == {"temperature": 1.0, "top_k": 0, "top_p": 0.9, "min_p": 0.1,
                                              "nucleus": "family", "guidance": 1.0}
    band = report["band"]
    assert [r["style"] for r in band["coverage"]["strict"]["requests"]] == ["ballad", "rock"]
    assert band["drums"]["by_style"] == {} and band["continuation"]["songs"] == []  # no band style, no prompts
    metrics = [row["metric"] for row in report["headline"]]
    assert metrics[0] == "model bits per note" and "instrument coverage, strict (requested families that play)" \
        in metrics and len(metrics) == 12 + 11  # 12 rows without the band (the two-sample test among them), 11 with it
    markdown = (out / "report.md").read_text()
    assert "## 5. Four-minute health" in markdown and "## 6. Playing as a band" in markdown
    assert "Drawn at temperature 1, top-p 0.9, min-p 0.1, nucleus over each family." in markdown
    assert main(["eval", "--model", str(model), "--data", str(root / "data"), "--out", str(out),
                 "--prompts", str(root / "nowhere")]) == 1
    assert main(["eval", "--model", str(model), "--data", str(root / "data"), "--out", str(out),
                 "--top-p", "1.5"]) == 1  # refused before any work


def test_the_piano_roll_net_tells_apart_what_differs_and_not_what_does_not():
    from musenet.evaluate.two_sample import piano_roll, roll_two_sample_test
    from musenet.notes import NoteTable

    rng = np.random.default_rng(0)

    def piece(low: int, high: int, drums: bool = False) -> NoteTable:
        n = 24
        family = np.full(n, DRUMS if drums else 0)
        return NoteTable(np.sort(rng.uniform(0, 10, n)), np.full(n, 0.5), rng.integers(low, high, n),
                         np.full(n, 80), family)

    roll = piano_roll(piece(40, 50), 5.0)
    assert roll.shape == (2, 128, 20) and roll[0, 40:50].any() and not roll[1].any() and not roll[0, 60:].any()
    assert piano_roll(piece(36, 40, drums=True), 5.0)[1].any()
    styles = ["a"] * 20 + ["b"] * 20
    real = [piece(40, 52) for _ in styles]
    apart = roll_two_sample_test(real, styles, [piece(70, 82) for _ in styles], styles, seconds=5.0)
    assert apart["accuracy"] > 0.9 and apart["pieces"] == 80 and "convolutional" in apart["classifier"]
    alike = roll_two_sample_test(real, styles, [piece(40, 52) for _ in styles], styles, seconds=5.0)
    assert 0.2 < alike["accuracy"] < 0.8
