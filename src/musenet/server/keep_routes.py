"""Composing around music the user has: accompany an uploaded song, rewrite a span of the piece.

Both run as jobs in the same queue as composing (`/api/jobs/{id}` for progress, DELETE to
cancel) and give candidates that are picked and undone as continuations are:

- `POST /api/accompany`: the upload's parts `keep` (all of it by default) stay note for note
  and the families `add` are composed around them (`Composer.accompany`), leaning towards
  the `chords` given (one a bar of the upload) or the harmoniser's. A pick starts a
  piece whose first version is the kept song, so undo takes the accompaniment back;
- `POST /api/rewrite`: the piece before `start` and from `stop` on stays note for note and
  the span is composed anew (`Composer.infill`, candidates best first; over `chords`, if
  given, one a bar from the piece's start). A pick is the
  piece's next version; undo restores the span.

A request is checked (and an upload read) before it is queued, so bad input is answered at
once: 400 for an upload that is not (good) MIDI, 404 for an unknown piece, 422 for the rest.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from fastapi.concurrency import run_in_threadpool

from ..errors import MuseNetError
from ..harmoniser import check_chords, symbols_by_beat
from ..notes import read_midi
from ..render import midi_seconds
from ..settings import LIMITS, Settings
from ..song import beats_per_bar, parts
from .jobs import Job
from .schemas import MAX_NEW_SECONDS, AccompanyRequest, JobOut, RewriteRequest, chord_symbols
from .store import families_of
from .uploads import decode_upload, named

if TYPE_CHECKING:
    from fastapi_offline import FastAPIOffline

    from .app import CoComposer

Work = Callable[[Job], dict]
BUSY = {503: {"description": "busy: try again after Retry-After seconds"}}


def accompany_work(service: CoComposer, request: AccompanyRequest) -> Work:
    """Read the upload and check the request now; the job's work composes the candidates."""
    data = decode_upload(request.melody_midi, "melody_midi")
    song = named("melody_midi", lambda: read_midi(data) if request.keep is None else parts(data, request.keep)[0])
    seconds = request.seconds or max(min(song.end_seconds(), MAX_NEW_SECONDS), LIMITS["seconds"][0])
    song = song.select(np.flatnonzero(song.seconds(song.onset) < seconds))  # what the pieces keep
    if len(song) == 0:
        raise MuseNetError(f"melody_midi: the parts to keep have no note in the first {seconds:g} s")
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    chosen = {"style": request.style, "seconds": seconds, "temperature": request.temperature, "seed": seed,
              "candidates": request.candidates}
    settings = Settings(instruments=list(request.add), **chosen)
    service.composer.check(settings)
    chords = None
    if chord_symbols(request) is not None:  # a beat's chord, from the upload's own bars
        beats = int(np.ceil(song.beats(seconds))) + 1
        chords = named("chords", lambda: symbols_by_beat(chord_symbols(request), beats, beats_per_bar(data)))
    service.composer.harmony(request.harmony, chords is not None)  # one a composer can take

    def work(job: Job) -> dict:
        job.report("accompanying", 0.0)
        pieces = service.composer.accompany(song, families_of(song), request.add, **chosen, chords=chords,
                                            harmony=request.harmony,
                                            on_step=lambda share: job.report("accompanying", 0.95 * share))
        job.report("saving", 0.95)
        return service.save(pieces, settings, 0.0, task="accompany", origin=song)

    return work


def rewrite_work(service: CoComposer, request: RewriteRequest) -> Work:
    """Check the span against the piece now; the job's work composes the rewrites."""
    piece = service.store.piece(request.piece_id)
    table, version, total = piece.table, len(piece.versions), midi_seconds(piece.table)
    if request.start >= total:
        raise MuseNetError(f"the span starts at {request.start:g} s, after the piece ends ({total:.1f} s)")
    style = request.style if request.style is not None else piece.settings.get("style")
    seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
    chosen = {"style": style, "temperature": request.temperature, "seed": seed, "candidates": request.candidates}
    settings = Settings(instruments=request.instruments, seconds=max(total, request.stop), **chosen)
    service.composer.check(settings)
    chords = chord_symbols(request)
    check_chords(chords, request.harmony)  # now: a bad symbol is answered at once

    def work(job: Job) -> dict:
        job.report("rewriting", 0.0)
        pieces = service.composer.infill(table, request.start, request.stop, request.instruments, **chosen,
                                         chords=chords, harmony=request.harmony,
                                         on_step=lambda share: job.report("rewriting", 0.95 * share))
        job.report("saving", 0.95)
        return service.save(pieces, settings, request.start, piece.id, version, task="rewrite",
                            stop_seconds=request.stop)

    return work


def add_keep_routes(app: FastAPIOffline, service: CoComposer) -> None:
    """POST /api/accompany and /api/rewrite: jobs, polled and cancelled at /api/jobs/{id}."""

    def submit(prepare: Callable[[], Work]) -> dict:
        service.jobs.check_room()
        return service.job_out(service.jobs.submit(prepare()))

    @app.post("/api/accompany", response_model=JobOut, status_code=202, responses=BUSY,
              summary="accompany an uploaded song: keep its parts, compose families around them; poll the job")
    async def accompany(body: AccompanyRequest) -> dict:
        service.jobs.check_room()  # a busy answer needs no thread
        return await run_in_threadpool(submit, lambda: accompany_work(service, body))

    @app.post("/api/rewrite", response_model=JobOut, status_code=202, responses=BUSY,
              summary="rewrite a span of a piece, keeping what comes before and after; poll the job")
    async def rewrite(body: RewriteRequest) -> dict:
        service.jobs.check_room()
        return await run_in_threadpool(submit, lambda: rewrite_work(service, body))
