"""Continuation health: cut a real song after PROMPT_SECONDS, let the model continue it for
CONTINUE_SECONDS with the song's own families, and compare that stretch with the song's own
next CONTINUE_SECONDS: tempo changes per minute, the share of notes held 4 s or longer, the
mean number of notes sounding at once, and whether each family of the prompt still plays in
the last 10 s. Prompts: a folder of MIDI songs, and band versions of held-out POP909 songs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..arrange import band_versions
from ..corpus.folder import midi_files
from ..corpus.groove import takes
from ..corpus.pop909 import read_beats, read_chords, read_song
from ..errors import MuseNetError
from ..instruments import FAMILIES
from ..notes import NoteTable, read_midi
from ..settings import Settings
from .harmony import held_out_songs
from .music import POLYPHONY_STEP, excerpt

PROMPT_SECONDS = 20.0
CONTINUE_SECONDS = 30.0
LAST_SECONDS = 10.0        # each prompt family should still play in the last 10 s
LONG_NOTE_SECONDS = 4.0    # a note held this long or longer is "long-held"
CAPPED_NOTE_SECONDS = Settings().max_note_seconds - 0.1  # ... this long: held to the sampler's cap
TEMPO_CHANGE = 0.03        # a tempo map entry 3% or more from the previous tempo is a change
FIGURES = ("tempo_changes_per_minute", "long_note_share", "mean_polyphony")


def window_figures(table: NoteTable, start: float, end: float, families: list[str]) -> dict:
    """Figures of the stretch [start, end) seconds: tempo changes per minute (tempo map
    entries in it that move the tempo by TEMPO_CHANGE or more), the share of its notes (drums
    aside) held LONG_NOTE_SECONDS or longer and held to the sampler's cap, the mean number of
    notes (drums aside) sounding at the midpoints of 0.1 s steps, and for each of `families`
    whether it strikes a note in the last LAST_SECONDS."""
    change = np.abs(np.log(table.tempo_qpm[1:] / table.tempo_qpm[:-1])) >= np.log1p(TEMPO_CHANGE)
    at = table.seconds(table.tempo_time[1:])
    changes = int((change & (at >= start) & (at < end)).sum())
    onset, release = table.seconds(table.onset), table.seconds(table.onset + table.duration)
    melodic = ~table.drum
    inside = melodic & (onset >= start) & (onset < end)
    lengths = (release - onset)[inside]
    held = lengths >= LONG_NOTE_SECONDS
    grid = start + (np.arange(int(round((end - start) / POLYPHONY_STEP))) + 0.5) * POLYPHONY_STEP
    ons, offs = np.sort(onset[melodic]), np.sort(release[melodic])
    sounding = np.searchsorted(ons, grid, side="right") - np.searchsorted(offs, grid, side="right")
    late = (onset >= end - LAST_SECONDS) & (onset < end)
    playing = {name: bool((late & (table.family == FAMILIES.index(name))).any()) for name in families}
    return {"tempo_changes_per_minute": changes * 60.0 / (end - start), "notes": int(inside.sum()),
            "long_note_share": float(held.mean()) if len(held) else float("nan"),
            "capped_note_share": float((lengths >= CAPPED_NOTE_SECONDS).mean()) if len(held) else float("nan"),
            "mean_polyphony": float(sounding.mean()) if len(grid) else float("nan"),
            "families_playing_last": playing, "all_families_playing": all(playing.values())}


def song_end(table: NoteTable) -> float:
    """Seconds to the end of the song's last note."""
    return float(table.seconds(np.array([(table.onset + table.duration).max()]))[0]) if len(table) else 0.0


def continue_song(composer, name: str, table: NoteTable, prompt_seconds: float = PROMPT_SECONDS,
                  seconds: float = CONTINUE_SECONDS, seed: int = 0, style: str | None = None, **settings) -> dict:
    """One song: its opening `prompt_seconds` (`music.excerpt`: notes sounding past the cut end
    there) continued for `seconds` (strict mode, the prompt's families; `settings` such as
    `nucleus` go to `Composer.generate`), and `window_figures` of that stretch, generated and real."""
    if song_end(table) < prompt_seconds + seconds:
        raise MuseNetError(f"{name}: {song_end(table):.0f} s long, shorter than the {prompt_seconds + seconds:g} s "
                           "the comparison needs")
    prompt = excerpt(table, prompt_seconds)  # notes held over the cut end at it, so the prompt ends there
    if len(prompt) == 0:
        raise MuseNetError(f"{name}: no note in the first {prompt_seconds:g} s")
    families = [FAMILIES[f] for f in np.unique(prompt.family)]
    piece = composer.generate(prompt=prompt, seconds=prompt_seconds + seconds,
                              instruments=families, style=style, seed=seed, instrument_mode="strict",
                              max_tokens=int(seconds * 200) + 100, **settings)[0]
    start, end = prompt_seconds, prompt_seconds + seconds
    return {"name": name, "families": families, "generated": window_figures(piece.table, start, end, families),
            "real": window_figures(table, start, end, families)}


def summary(songs: list[dict]) -> dict:
    """Over songs, generated and real: the mean of each figure, and the share of songs whose
    every prompt family still plays in the last LAST_SECONDS."""
    out = {}
    for side in ("generated", "real"):
        means = {}
        for name in FIGURES:
            values = np.array([s[side][name] for s in songs], np.float64)
            means[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
        means["all_families_playing"] = (float(np.mean([s[side]["all_families_playing"] for s in songs]))
                                         if songs else float("nan"))
        out[side] = means
    return out


def folder_prompts(folder: str | Path, limit: int | None = None) -> list[tuple[str, NoteTable | str]]:
    """(file name, note table, or why it could not be read) of the first `limit` MIDI files
    of a folder (all by default), in name order."""
    out = []
    for path, _ in midi_files(folder)[:limit]:
        try:
            out.append((path.name, read_midi(path)))
        except MuseNetError as err:
            out.append((path.name, str(err)))
    return out


def pop909_band_prompts(corpora: str | Path, count: int) -> list[tuple[str, NoteTable]]:
    """The first band version (`arrange.band_versions`, drums from Groove train beats when
    `corpora/groove` exists) of the first `count` held-out POP909 songs in `corpora/pop909`."""
    corpora = Path(corpora)
    grooves = takes(corpora / "groove", ("beat",)) if (corpora / "groove" / "info.csv").is_file() else ()
    out = []
    for path, song in held_out_songs(corpora / "pop909", count):
        table, roles = read_song(path)
        band = band_versions(table, roles, read_chords(path.parent), read_beats(path.parent), grooves, song, 1)[0]
        out.append((f"POP909 {song} (band version)", band))
    return out
