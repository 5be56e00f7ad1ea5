"""The co-composer's store: candidates and pieces in memory, their files in one folder.

Everything is named by an id the store makes (16 random hex digits); a file's path is the
store's folder plus that id plus a fixed suffix, so nothing a client sends ever reaches the
filesystem. A piece is the list of its versions (each pick appends the whole piece so far,
which is what the picked candidate holds); undo drops the last. Items not used for `ttl`
seconds are dropped with their files by `cleanup`, which the app runs on a schedule.
"""

from __future__ import annotations

import io
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import MuseNetError
from ..files import write_atomic
from ..instruments import FAMILIES
from ..notes import NoteTable, midi_bytes
from ..render import midi_seconds

ID_PATTERN = r"^[0-9a-f]{16}$"
_ID = re.compile(ID_PATTERN)
KINDS = {"midi": ".mid", "audio": ".wav", "pianoroll": ".png"}


class NotFound(MuseNetError):
    """No such id in the store (never made, or cleaned up)."""


class Conflict(MuseNetError):
    """The request does not fit the piece's current state."""


def new_id() -> str:
    return secrets.token_hex(8)


def families_of(table: NoteTable) -> list[str]:
    return [FAMILIES[f] for f in np.unique(table.family)]


@dataclass
class Candidate:
    """One composed option: the whole piece so far plus its continuation (or with a span
    rewritten, or an uploaded song with an accompaniment)."""

    id: str
    table: NoteTable
    prompt_seconds: float            # where the new music starts
    piece_id: str | None             # the piece it continues (None: a new piece)
    piece_version: int               # that piece's number of versions when it was composed
    settings: dict
    task: str = "continue"           # or "accompany", "rewrite"
    stop_seconds: float | None = None  # a rewrite: where the new music ends
    origin: NoteTable | None = None  # a new piece's first version, before this pick (the song accompanied)
    critic: float | None = None      # the critic's score, where the options were ranked
    touched: float = field(default_factory=time.monotonic)

    @property
    def seconds(self) -> float:
        return midi_seconds(self.table)


@dataclass
class StoredPiece:
    """A piece being composed: every version (named by the candidate it was picked from), the newest last."""

    id: str
    versions: list[tuple[str, NoteTable]]
    settings: dict
    touched: float = field(default_factory=time.monotonic)

    @property
    def table(self) -> NoteTable:
        return self.versions[-1][1]

    @property
    def seconds(self) -> float:
        return midi_seconds(self.table)


class Store:
    """Candidates and pieces by id, with their files under `root`."""

    def __init__(self, root: str | Path, ttl: float, soundfont: str | None = None, render_slots: int = 2):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self.soundfont = soundfont
        self._render_slots = threading.BoundedSemaphore(render_slots)  # FluidSynth and matplotlib at once
        self.candidates: dict[str, Candidate] = {}
        self.pieces: dict[str, StoredPiece] = {}
        self._lock = threading.RLock()
        self._render_locks: dict[str, threading.Lock] = {}

    def path(self, item_id: str, kind: str, version: str | None = None) -> Path:
        """Where an item's file of `kind` (midi, audio, pianoroll) lives: made of ids only."""
        if not _ID.match(item_id) or (version is not None and not _ID.match(version)) or kind not in KINDS:
            raise NotFound(f"no such file {item_id!r} {kind!r}")
        stem = item_id if version is None else f"{item_id}.{version}"
        return self.root / f"{stem}{KINDS[kind]}"

    def add_candidate(self, candidate: Candidate) -> None:
        with self._lock:
            self.candidates[candidate.id] = candidate

    def _use(self, items: dict, item_id: str, what: str):
        """The item by id, marked as just used (so clean-up keeps it)."""
        with self._lock:
            found = items.get(item_id)
            if found is None:
                raise NotFound(f"no {what} {item_id} (it may have expired)")
            found.touched = time.monotonic()
            return found

    def candidate(self, candidate_id: str) -> Candidate:
        return self._use(self.candidates, candidate_id, "candidate")

    def piece(self, piece_id: str) -> StoredPiece:
        return self._use(self.pieces, piece_id, "piece")

    def pick(self, candidate_id: str) -> StoredPiece:
        """Make the candidate the piece's newest version (a new piece if it continued none,
        whose first version is the candidate's `origin` when it has one, so undo goes back to it)."""
        with self._lock:
            candidate = self.candidate(candidate_id)
            if candidate.piece_id is None:
                first = [] if candidate.origin is None else [(new_id(), candidate.origin)]
                piece = StoredPiece(new_id(), [*first, (candidate.id, candidate.table)], dict(candidate.settings))
                self.pieces[piece.id] = piece
                return piece
            piece = self.piece(candidate.piece_id)
            if len(piece.versions) != candidate.piece_version:
                raise Conflict("this candidate continues an earlier state of the piece; compose again")
            piece.versions.append((candidate.id, candidate.table))
            piece.settings = dict(candidate.settings)
            return piece

    def undo(self, piece_id: str) -> StoredPiece:
        """Drop the piece's newest version; Conflict when only the first is left."""
        with self._lock:
            piece = self.piece(piece_id)
            if len(piece.versions) < 2:
                raise Conflict("nothing to undo: the piece is at its first pick")
            piece.versions.pop()
            return piece

    def file(self, item_id: str, kind: str) -> Path:
        """A candidate's or a piece's (newest version's) MIDI, WAV or PNG, rendered on first
        request and kept; NotFound for an unknown id."""
        with self._lock:
            if item_id in self.candidates:
                candidate = self.candidate(item_id)
                path, table, title = self.path(item_id, kind), candidate.table, None
                marker = (candidate.prompt_seconds, candidate.stop_seconds)
            else:
                piece = self.piece(item_id)
                path, table, marker = self.path(item_id, kind, piece.versions[-1][0]), piece.table, (None, None)
                title = f"{piece.settings.get('style') or 'piece'}, {midi_seconds(table):.0f} s"
            lock = self._render_locks.setdefault(path.name, threading.Lock())
        with lock:
            if not path.exists():
                with self._render_slots:
                    write_file(table, path, kind, soundfont=self.soundfont, title=title, marker=marker)
        return path

    def cleanup(self, now: float | None = None) -> int:
        """Drop every candidate and piece unused for `ttl` seconds, files included; returns how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            old = [c for c in self.candidates.values() if now - c.touched > self.ttl]
            old_pieces = [p for p in self.pieces.values() if now - p.touched > self.ttl]
            for item in old:
                del self.candidates[item.id]
            for item in old_pieces:
                del self.pieces[item.id]
            gone = {item.id for item in old + old_pieces}
            self._render_locks = {k: v for k, v in self._render_locks.items() if k[:16] not in gone}
        for item in old + old_pieces:
            for path in self.root.glob(f"{item.id}*"):
                path.unlink(missing_ok=True)
        return len(old) + len(old_pieces)


def write_file(table: NoteTable, path: Path, kind: str, *, soundfont: str | None = None,
               title: str | None = None, marker: tuple[float | None, float | None] = (None, None)) -> None:
    """Write `table` as MIDI, WAV (FluidSynth) or a piano-roll PNG, whole or not at all. A
    `marker` (start, stop seconds) draws a line where new music starts (and one where a rewritten
    span stops) and shows the last 20 s before it."""
    from .. import render

    if kind == "midi":
        write_atomic(path, midi_bytes(table))
    elif kind == "audio":
        render.render_wav(table, path, soundfont=soundfont)
    else:
        fig, _ = render.pianoroll_figure(table, title)
        start, stop = marker
        if start or stop is not None:  # not for an accompaniment: all of it is new
            ax = fig.axes[0]
            for line in (start, stop):
                if line is not None:
                    ax.axvline(line, color="black", linewidth=1, linestyle="--")
            ax.set_xlim(left=max(start - 20.0, ax.get_xlim()[0]))
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        write_atomic(path, buffer.getvalue())
