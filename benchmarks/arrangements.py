"""How close are the derived band parts (musenet.arrange) to real band music?

    python benchmarks/arrangements.py ../shared/corpora/pop909 ../shared/corpora/groove \
        ../shared/midi/multitrack [--songs 60]

Prints three tables: the derived bass against POP909's own lowest piano voice (share of
onsets on a tone of the annotated chord, register, onsets per bar) and the real basses of
the multitrack songs; per family, notes sounding at once and onsets per bar in the derived
arrangements against the multitrack songs; and for the grooves, how far the take's tempo
was from the song's and how far the drums' downbeats land from the song's annotated ones.
The multitrack files are a yardstick only: never train on them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from musenet.arrange import (
    EARLY,
    band_versions,
    bass_from_left_hand,
    beat_position,
    in_chord,
    lowest_voice,
    pick_groove,
    song_bpm,
    song_meter,
    version_rng,
)
from musenet.corpus.groove import takes
from musenet.corpus.pop909 import read_beats, read_chords, read_song, song_files
from musenet.instruments import DRUMS, FAMILIES, FAMILY_ID
from musenet.notes import NoteTable, read_midi

BAR = 4.0  # beats; every song measured here is in 4 (POP909's triple-time ones are few)


def polyphony(table: NoteTable, rows: np.ndarray) -> float:
    """Mean number of notes sounding at once, over the time at least one sounds."""
    if len(rows) == 0:
        return float("nan")
    time_ = np.concatenate([table.onset[rows], table.onset[rows] + table.duration[rows]])
    step = np.concatenate([np.ones(len(rows)), -np.ones(len(rows))])
    order = np.lexsort((step, time_))
    time_, count = time_[order], np.cumsum(step[order])
    span = np.diff(time_)
    sounding = count[:-1] > 0
    return float((count[:-1] * span)[sounding].sum() / max(span[sounding].sum(), 1e-9))


def onsets_per_bar(table: NoteTable, rows: np.ndarray) -> float:
    """Distinct onsets (to a 48th of a beat) per bar of 4 beats, over the bars the rows play in."""
    if len(rows) == 0:
        return float("nan")
    onsets = np.unique(np.round(table.onset[rows] * 48))
    return len(onsets) / len(np.unique(onsets // (48 * BAR)))


def family_rows(table: NoteTable, family: str) -> np.ndarray:
    return np.flatnonzero(table.family == FAMILY_ID[family])


def real_bass(table: NoteTable, path: Path) -> np.ndarray:
    """The bass part of a multitrack song: the bass family, or a synth track named Bass."""
    rows = family_rows(table, "bass")
    if len(rows):
        return rows
    import symusic

    score = symusic.Score(str(path))
    named = [t for t in score.tracks if "bass" in t.name.lower() and not t.is_drum]
    alone = symusic.Score(score.ticks_per_quarter)
    alone.tempos = score.tempos
    for track in named:
        alone.tracks.append(track)
    bass = read_midi(alone)
    keys = set(zip(np.round(bass.onset * 48).tolist(), bass.pitch.tolist(), strict=True))
    mine = np.array([(o, p) in keys for o, p in zip(np.round(table.onset * 48).tolist(), table.pitch.tolist(),
                                                     strict=True)])
    return np.flatnonzero(mine)


def row(name: str, *cells) -> str:
    return "| " + " | ".join([name] + [c if isinstance(c, str) else f"{c:.2f}" for c in cells]) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pop909")
    parser.add_argument("groove")
    parser.add_argument("multitrack")
    parser.add_argument("--songs", type=int, default=60, help="songs measured, evenly spread over the 909")
    args = parser.parse_args()
    started = time.time()
    grooves = takes(args.groove, ("beat",))
    files = song_files(args.pop909)
    chosen = [files[i] for i in np.linspace(0, len(files) - 1, min(args.songs, len(files))).astype(int)]

    bass = {"POP909 lowest piano note": [], "POP909 lowest piano note < C4": [], "derived bass": []}
    families: dict[str, dict[str, list]] = {f: {"poly": [], "rate": [], "pitch": [], "pieces": 0} for f in FAMILIES}
    grooves_by_meter = {4: ([], [], []), 3: ([], [], [])}  # tempo ratios, downbeat ms, kick on 1
    versions_by_meter = {4: 0, 3: 0}
    versions = 0
    for path, song in chosen:
        table, roles = read_song(path)
        chords, beats = read_chords(path.parent), read_beats(path.parent)
        low = lowest_voice(table, roles)
        moved = bass_from_left_hand(table, roles, chords)
        line = family_rows(moved, "bass")
        for name, rows, notes in zip(bass, (low, low[table.pitch[low] < 60], line), (table, table, moved),
                                     strict=True):
            bass[name].append((in_chord(notes, rows, chords), notes.pitch[rows], onsets_per_bar(notes, rows)))
        bands = band_versions(table, roles, chords, beats, grooves, song)
        for number, band in enumerate(bands, 1):
            versions += 1
            for family in FAMILIES:
                rows = family_rows(band, family)
                if len(rows):
                    stats = families[family]
                    stats["pieces"] += 1
                    stats["poly"].append(polyphony(band, rows))
                    stats["rate"].append(onsets_per_bar(band, rows))
                    stats["pitch"].append(np.median(band.pitch[rows]))
            bar_beats, starts = song_meter(beats)
            tempo_ratio, downbeat_ms, kick_on_one = grooves_by_meter[bar_beats]
            versions_by_meter[bar_beats] += 1
            take = pick_groove(song_bpm(beats), bar_beats, grooves, version_rng(song, number))
            drums = np.flatnonzero(band.family == DRUMS)
            if take is None or len(drums) == 0:
                continue
            tempo_ratio.append(take.bpm / song_bpm(beats))
            position = beat_position(beats, band.seconds(band.onset[drums]))
            beat_ms = 1000 * 60 / song_bpm(beats)
            kick = np.isin(band.pitch[drums], (35, 36))
            for start in starts[(starts >= position.min() - EARLY) & (starts <= position.max())]:
                near = np.abs(position - start) <= EARLY
                if near.any():
                    downbeat_ms.append(np.abs(position[near] - start).min() * beat_ms)
                kick_on_one.append(bool((near & kick).any()))
    print(f"{len(chosen)} POP909 songs, {versions} band versions, measured in {time.time() - started:.0f} s\n")

    print("Bass: share of onsets on a tone of the chord sounding (chord_midi.txt), register, onsets per bar")
    print("| bass line | onsets | on a chord tone | median pitch | pitch 5-95% | onsets per bar |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, parts in bass.items():
        hit = np.concatenate([p[0] for p in parts])
        pitch = np.concatenate([p[1] for p in parts])
        lo, hi = np.percentile(pitch, [5, 95])
        print(row(name, f"{len(pitch):,}", f"{(hit[hit >= 0] == 1).mean():.1%}", f"{np.median(pitch):.0f}",
                  f"{lo:.0f}-{hi:.0f}", np.mean([p[2] for p in parts])))
    real = {}
    for path in sorted(Path(args.multitrack).glob("*.mid")):
        table = read_midi(path)
        real[path.stem] = table
        rows = real_bass(table, path)
        if len(rows):
            lo, hi = np.percentile(table.pitch[rows], [5, 95])
            print(row(f"real: {path.stem}", f"{len(rows):,}", "-", f"{np.median(table.pitch[rows]):.0f}",
                      f"{lo:.0f}-{hi:.0f}", onsets_per_bar(table, rows)))

    print("\nPer family: notes sounding at once (while it plays), onsets per bar, median pitch")
    print("| family | derived: in versions | at once | onsets/bar | pitch | multitrack: in songs | at once "
          "| onsets/bar | pitch |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for family in FAMILIES:
        stats = families[family]
        mine = [(polyphony(t, r), onsets_per_bar(t, r), np.median(t.pitch[r]))
                for t in real.values() if len(r := family_rows(t, family))]
        theirs = np.array(mine).mean(axis=0) if mine else [float("nan")] * 3
        print(row(family, f"{stats['pieces'] / max(versions, 1):.0%}", np.mean(stats["poly"] or [np.nan]),
                  np.mean(stats["rate"] or [np.nan]), np.median(stats["pitch"] or [np.nan]),
                  f"{len(mine)}/{len(real)}", *theirs))

    print("\nGrooves: how far the take's tempo is from the song's, and drum notes at the song's downbeats")
    print("| songs in | versions with drums | tempo off, median | over 20% | max | downbeats with a drum note "
          "| its distance, median ms | 95% ms | downbeats with a kick |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for bar_beats, (tempo_ratio, downbeat_ms, kick_on_one) in grooves_by_meter.items():
        if not tempo_ratio:
            continue
        ratio, ms = np.abs(np.log(np.array(tempo_ratio))), np.array(downbeat_ms)
        print(row(f"{bar_beats} ({bar_beats}-4 takes)", f"{len(tempo_ratio)}/{versions_by_meter[bar_beats]}",
                  f"{np.expm1(np.median(ratio)):.1%}",
                  f"{(ratio > np.log(1.2)).mean():.1%}", f"{np.expm1(ratio.max()):.0%}",
                  f"{len(ms) / max(len(kick_on_one), 1):.1%}", f"{np.median(ms):.1f}",
                  f"{np.percentile(ms, 95):.1f}", f"{np.mean(kick_on_one):.1%}"))


if __name__ == "__main__":
    main()
