"""A user's song, for accompanying and infilling: its parts chosen by family, track name or
track number, and bars read as seconds."""

from __future__ import annotations

import numpy as np
import symusic

from .errors import MidiError, MuseNetError
from .instruments import FAMILIES, family_of_program
from .notes import NoteTable, load_score, read_midi, source_name


def parts(song, keep: list[str]) -> tuple[NoteTable, NoteTable]:
    """(kept, the rest) of a song (path, bytes, symusic Score or NoteTable). `keep` names
    families (`voice`), track names (`Melody`, any case) or track numbers (0 is the first
    track); a NoteTable can only be split by family."""
    if not keep:
        raise MuseNetError("name at least one part to keep (a family, a track name or a track number)")
    if isinstance(song, NoteTable):
        table = song
        chosen = _families(keep, "this piece")
        mask = np.isin(table.family, chosen)
        return table.select(np.flatnonzero(mask)), table.select(np.flatnonzero(~mask))
    name = source_name(song)
    score = load_score(song)
    tracks = list(score.tracks)
    sounding = [i for i, t in enumerate(tracks) if len(t.notes)]
    if not sounding:
        raise MidiError(f"{name}: no notes")
    families = ", ".join(FAMILIES[f] for f in sorted({_family(tracks[i]) for i in sounding}))
    kept_tracks: set[int] = set()
    kept_families: list[int] = []
    for word in keep:
        word = word.strip()
        named = {i for i in sounding if tracks[i].name.strip().lower() == word.lower()}
        if word in FAMILIES:
            kept_families.append(FAMILIES.index(word))
        elif word.isdigit() and int(word) in sounding:
            kept_tracks.add(int(word))
        elif named:
            kept_tracks |= named
        else:
            listing = ", ".join(f"{i} {tracks[i].name.strip() or '(no name)'}" for i in sounding)
            raise MuseNetError(f"{name} has no part {word!r}: its families are {families}; "
                               f"its tracks with notes {listing}")
    keep_track = [i in kept_tracks or _family(tracks[i]) in kept_families for i in range(len(tracks))]
    if not any(keep_track[i] for i in sounding):
        raise MuseNetError(f"{name}: the parts named to keep have no notes")
    kept = read_midi(_with_tracks(score, [t for t, k in zip(tracks, keep_track, strict=True) if k]))
    others = [t for i, t in enumerate(tracks) if not keep_track[i] and i in sounding]
    rest = read_midi(_with_tracks(score, others)) if others else kept.select(np.zeros(0, np.int64))
    return kept, rest


def _family(track) -> int:
    return family_of_program(track.program % 128, track.is_drum)


def _with_tracks(score, tracks):
    """The score with only these tracks (tempo map and the rest unchanged)."""
    part = score.copy()
    part.tracks = type(score.tracks)(tracks)
    return part


def _families(words: list[str], where: str) -> list[int]:
    unknown = [w for w in words if w not in FAMILIES]
    if unknown:
        raise MuseNetError(f"{where} can be split only by family, not {unknown[0]!r}; choose from "
                           f"{', '.join(FAMILIES)}")
    return [FAMILIES.index(w) for w in words]


def beats_per_bar(song) -> float:
    """Quarter-note beats in a bar of a song's (a file, bytes or a symusic Score) first time
    signature; 4 where it has none, and for a NoteTable, which keeps none."""
    if isinstance(song, NoteTable):
        return 4.0
    score = song if isinstance(song, symusic.Score) else load_score(song)
    if len(score.time_signatures):
        signature = score.time_signatures[0]
        return signature.numerator * 4.0 / signature.denominator
    return 4.0


def bars_to_seconds(song, first: int, last: int) -> tuple[float, float]:
    """Bars `first` to `last` (from 1, both included) as (start, stop) seconds, read from the
    song's first time signature (4/4 if it has none)."""
    if first < 1 or last < first:
        raise MuseNetError(f"bars {first}-{last}: give FIRST-LAST with 1 <= FIRST <= LAST")
    score = load_score(song) if not isinstance(song, NoteTable) else None
    table = song if score is None else read_midi(score)
    bar = beats_per_bar(song if score is None else score)
    start, stop = table.seconds(np.array([(first - 1) * bar, last * bar]))
    return float(start), float(stop)
