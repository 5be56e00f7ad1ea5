"""The co-composer web app: `create_app` builds the FastAPI app that `musenet serve` runs.

One page (static HTML, CSS and JavaScript, no build step) and a JSON API that scripts can
use too; the OpenAPI docs are at /docs (served from the package, no CDN). Composing runs in a
bounded worker pool (see `jobs`), never on the event loop; files are served from the app's
own store by generated id only (see `store`); old results are dropped on a schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import secrets
import shutil
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from ..composer import Composer
from ..corpus.intros import INTROS, intro_table
from ..corpus.styles import style_description
from ..errors import MidiError, MuseNetError
from ..harmoniser import check_chords
from ..instruments import FAMILIES, PITCH_RANGE
from ..notes import NoteTable
from ..render import FAMILY_COLORS, find_soundfont, fluidsynth_program, midi_seconds
from ..settings import Settings, cut_prompt
from ..version import __version__
from .jobs import ACTIVE, CANCELLED, DONE, FAILED, Job, JobQueue, QueueFull
from .keep_routes import add_keep_routes
from .schemas import (
    MAX_BODY_BYTES,
    MAX_CANDIDATES,
    MAX_NEW_SECONDS,
    MAX_PIECE_SECONDS,
    MAX_UPLOAD_BYTES,
    ComposeOut,
    ComposeRequest,
    Id,
    InfoOut,
    InstrumentOut,
    IntroOut,
    JobOut,
    Kind,
    PieceOut,
    StyleOut,
    chord_symbols,
)
from .store import KINDS, Candidate, Conflict, NotFound, Store, StoredPiece, families_of, new_id, write_file
from .uploads import read_upload

log = logging.getLogger("musenet.server")
RANK_DRAWS = 2  # with a critic, the co-composer draws this many options per one it offers

STATIC = Path(__file__).parent / "static"
MEDIA = {"midi": "audio/midi", "audio": "audio/wav", "pianoroll": "image/png"}


# ---- the service behind the routes ----------------------------------------------------------

class CoComposer:
    """The model, the store and the job queue, shared by the routes."""

    def __init__(self, composer: Composer, store: Store, jobs: JobQueue, audio_error: str | None):
        self.composer, self.store, self.jobs, self.audio_error = composer, store, jobs, audio_error

    def prepare(self, request: ComposeRequest) -> tuple[Settings, NoteTable | None, str | None, int]:
        """Check a request and find its prompt: (settings, prompt, piece id, piece version)."""
        prompt, piece_id, version = None, None, 0
        if request.piece_id is not None:
            piece = self.store.piece(request.piece_id)
            prompt, piece_id, version = piece.table, piece.id, len(piece.versions)
        elif request.intro is not None:
            prompt = intro_table(request.intro)
        elif request.prompt_midi is not None:
            prompt = cut_prompt(read_upload(request.prompt_midi), seconds=request.prompt_seconds)
        if prompt is not None and len(prompt) == 0:
            prompt = None
        start = midi_seconds(prompt) if prompt is not None else 0.0
        if start + request.seconds > MAX_PIECE_SECONDS:
            raise MuseNetError(f"the piece would be {start + request.seconds:.0f} s long, over the "
                               f"{MAX_PIECE_SECONDS:.0f} s limit")
        seed = request.seed if request.seed is not None else secrets.randbelow(2**31)
        settings = Settings(style=request.style, instruments=request.instruments, seconds=start + request.seconds,
                            temperature=request.temperature, seed=seed, candidates=request.candidates)
        self.composer.check(settings)
        check_chords(chord_symbols(request), request.harmony)  # now: a bad symbol is answered at once
        if chord_symbols(request) is not None and self.composer.vocab.time_mode != "beat":
            raise MuseNetError("chords: this model reads time in seconds, and chords are placed by bars")
        return settings, prompt, piece_id, version

    def submit(self, request: ComposeRequest) -> Job:
        self.jobs.check_room()
        settings, prompt, piece_id, version = self.prepare(request)
        start = midi_seconds(prompt) if prompt is not None else 0.0

        def work(job: Job) -> dict:
            job.report("composing", 0.0)
            ranked = request.rank and self.composer.critic is not None  # draw twice as many, offer the best
            drawn = replace(settings, candidates=settings.candidates * RANK_DRAWS) if ranked else settings
            pieces = self.composer.generate(
                prompt=prompt, settings=drawn, on_step=lambda share: job.report("composing", 0.95 * share),
                keep=settings.candidates if ranked else None, chords=chord_symbols(request), harmony=request.harmony)
            job.report("saving", 0.95)
            return self.save(pieces, settings, start, piece_id, version)

        return self.jobs.submit(work)

    def save(self, pieces: list, settings: Settings, start: float, piece_id: str | None = None, version: int = 0,
             **extra) -> dict:
        """Store composed pieces as candidates (their MIDI written); a job's result. `extra`:
        the candidates' task, stop_seconds and origin (see `Candidate`)."""
        made = []
        for piece in pieces:
            used = asdict(piece.settings or settings)  # instruments as resolved by the composer
            candidate = Candidate(new_id(), piece.table, start, piece_id, version, used, critic=piece.critic, **extra)
            write_file(candidate.table, self.store.path(candidate.id, "midi"), "midi")
            self.store.add_candidate(candidate)
            made.append(candidate)
        return {"candidates": [self.candidate_out(c) for c in made], "piece_id": piece_id, "seed": settings.seed}

    def audio_url(self, url: str) -> str | None:
        return None if self.audio_error else url

    def candidate_out(self, candidate: Candidate) -> dict:
        base = f"/api/candidates/{candidate.id}"
        stop = candidate.stop_seconds
        return {"id": candidate.id, "task": candidate.task, "midi_url": f"{base}/midi",
                "audio_url": self.audio_url(f"{base}/audio"), "pianoroll_url": f"{base}/pianoroll",
                "seconds": round(candidate.seconds, 3), "prompt_seconds": round(candidate.prompt_seconds, 3),
                "stop_seconds": None if stop is None else round(stop, 3), "notes": len(candidate.table),
                "families": families_of(candidate.table),
                "critic": None if candidate.critic is None else round(candidate.critic, 4)}

    def piece_out(self, piece: StoredPiece) -> dict:
        base, version = f"/api/pieces/{piece.id}", piece.versions[-1][0]
        return {"id": piece.id, "seconds": round(piece.seconds, 3), "versions": len(piece.versions),
                "notes": len(piece.table), "families": families_of(piece.table), "style": piece.settings.get("style"),
                "midi_url": f"{base}/midi?v={version}", "audio_url": self.audio_url(f"{base}/audio?v={version}"),
                "pianoroll_url": f"{base}/pianoroll?v={version}"}

    def job_out(self, job: Job) -> dict:
        return {"id": job.id, "status": job.status, "stage": job.stage, "progress": round(job.progress, 4),
                "queue_position": self.jobs.position(job), "error": job.error,
                "result": job.result if job.status == DONE else None, "url": f"/api/jobs/{job.id}"}

    def cleanup(self) -> None:
        dropped = self.store.cleanup() + self.jobs.cleanup(self.store.ttl)
        if dropped:
            log.info("cleanup: dropped %d old results", dropped)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes gets 413, whether or not it says its length."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await JSONResponse({"detail": "bad Content-Length"}, 400)(scope, receive, send)
            if int(declared) > self.limit:
                return await self._too_large(scope, receive, send)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"request body over the {self.limit // 1024} KB limit (a MIDI upload may be at most 1 MB)"

    async def _too_large(self, scope, receive, send):
        await JSONResponse({"detail": self._message()}, 413)(scope, receive, send)


# ---- the app ------------------------------------------------------------------------------

def create_app(model_dir: str | Path | None = None, *, composer: Composer | None = None, workers: int = 1,
               queue_size: int = 8, ttl_seconds: float = 3600.0, cleanup_every: float = 60.0,
               store_dir: str | Path | None = None, soundfont: str | None = None) -> FastAPIOffline:
    """The co-composer app for a model (a checkpoint or run directory; the bundled model by
    default, or an already loaded `composer`). Results unused for `ttl_seconds` are deleted,
    checked every `cleanup_every` seconds; files live in `store_dir` (a temporary folder,
    removed at shutdown, by default)."""
    composer = composer or Composer.load(model_dir)
    audio_error = None
    try:
        fluidsynth_program()
        find_soundfont(soundfont)
    except MuseNetError as err:
        audio_error = str(err)
        log.warning("no audio: %s", audio_error)
    own_store = store_dir is None
    root = Path(tempfile.mkdtemp(prefix="musenet-serve-")) if own_store else Path(store_dir)
    service = CoComposer(composer, Store(root, ttl_seconds, soundfont), JobQueue(workers, queue_size), audio_error)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        async def sweep():
            while True:
                await asyncio.sleep(cleanup_every)
                await run_in_threadpool(service.cleanup)

        task = asyncio.create_task(sweep())
        try:
            yield
        finally:
            task.cancel()
            service.jobs.shutdown()
            if own_store:
                shutil.rmtree(root, ignore_errors=True)

    app = FastAPIOffline(title="MuseNet co-composer", version=__version__, lifespan=lifespan,
                         description="Compose with the model: choose a style, instruments and an intro; pick one "
                         "of several continuations; go on from there. Or have a song of your own accompanied, "
                         "and rewrite a span of the piece.")
    app.state.cocomposer = service
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    add_error_handlers(app)
    add_catalogue_routes(app, service, workers, queue_size)
    add_compose_routes(app, service)
    add_keep_routes(app, service)
    return app


def add_error_handlers(app: FastAPIOffline) -> None:
    """Project errors as JSON with their status: 404, 409, 400 (bad MIDI), 422, 503 (busy)."""

    def error(status: int):
        async def handler(request: Request, err: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(err)}, status)
        return handler

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        """422 naming each bad field; the rejected value is not echoed (NaN has no JSON form)."""
        detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in err.errors()]
        return JSONResponse({"detail": detail}, 422)

    app.add_exception_handler(NotFound, error(404))
    app.add_exception_handler(Conflict, error(409))
    app.add_exception_handler(MidiError, error(400))
    app.add_exception_handler(MuseNetError, error(422))

    @app.exception_handler(QueueFull)
    async def busy(request: Request, err: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, 503, headers={"Retry-After": str(err.retry_after)})



def add_catalogue_routes(app: FastAPIOffline, service: CoComposer, workers: int, queue_size: int) -> None:
    """The page, and what can be chosen: styles, instruments, intros, the server's limits."""
    intros_ok = importlib.util.find_spec("music21") is not None

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/info", response_model=InfoOut, summary="what this server offers")
    async def info() -> dict:
        return {"version": __version__, "model": service.composer.model_path, "audio": service.audio_error is None,
                "audio_error": service.audio_error, "workers": workers, "queue_size": queue_size,
                "busy": service.jobs.active(),
                "limits": {"seconds": MAX_NEW_SECONDS, "piece_seconds": MAX_PIECE_SECONDS,
                           "candidates": MAX_CANDIDATES, "upload_bytes": MAX_UPLOAD_BYTES}}

    @app.get("/api/styles", response_model=list[StyleOut], summary="the styles the model knows")
    async def styles() -> list[dict]:
        return [{"name": style, "description": style_description(style)} for style in service.composer.styles]

    @app.get("/api/instruments", response_model=list[InstrumentOut], summary="the ten instrument families")
    async def instruments() -> list[dict]:
        return [{"name": name, "low": PITCH_RANGE[name][0], "high": PITCH_RANGE[name][1], "color": FAMILY_COLORS[i]}
                for i, name in enumerate(FAMILIES)]

    @app.get("/api/intros", response_model=list[IntroOut], summary="famous openings to start from")
    async def intros() -> list[dict]:
        if not intros_ok:
            return []
        return [{"id": i.id, "title": i.title, "composer": i.composer, "style": i.style} for i in INTROS]



def add_compose_routes(app: FastAPIOffline, service: CoComposer) -> None:
    """Composing (waiting, or as a job to poll), picking, undoing and the files."""

    @app.post("/api/compose", response_model=ComposeOut, summary="compose candidates and wait for them",
              responses={503: {"description": "busy: try again after Retry-After seconds"}})
    async def compose(body: ComposeRequest, request: Request) -> dict:
        service.jobs.check_room()  # a busy answer needs no thread
        job = await run_in_threadpool(service.submit, body)
        while job.status in ACTIVE:
            if await request.is_disconnected():
                service.jobs.cancel(job.id)
                break
            await asyncio.sleep(0.05)
        if job.status == FAILED:
            raise HTTPException(job.error_status, job.error)
        if job.status == CANCELLED:
            raise HTTPException(409, "the job was cancelled")
        return job.result

    @app.post("/api/jobs", response_model=JobOut, status_code=202, summary="start composing; poll the job",
              responses={503: {"description": "busy: try again after Retry-After seconds"}})
    async def start_job(body: ComposeRequest) -> dict:
        service.jobs.check_room()
        return service.job_out(await run_in_threadpool(service.submit, body))

    @app.get("/api/jobs/{job_id}", response_model=JobOut, summary="a job's progress, and its result when done")
    async def get_job(job_id: Id) -> dict:
        return service.job_out(service.jobs.get(job_id))

    @app.delete("/api/jobs/{job_id}", response_model=JobOut, summary="cancel a job")
    async def cancel_job(job_id: Id) -> dict:
        return service.job_out(service.jobs.cancel(job_id))

    @app.get("/api/candidates/{candidate_id}/{kind}", summary="a candidate as MIDI, WAV or piano roll",
             response_class=FileResponse)
    def candidate_file(candidate_id: Id, kind: Kind) -> FileResponse:
        return file_response(service, candidate_id, kind, None)

    @app.post("/api/candidates/{candidate_id}/pick", response_model=PieceOut,
              summary="append a candidate to its piece (or start a piece with it)")
    async def pick(candidate_id: Id) -> dict:
        return service.piece_out(service.store.pick(candidate_id))

    @app.get("/api/pieces/{piece_id}", response_model=PieceOut, summary="the piece so far")
    async def get_piece(piece_id: Id) -> dict:
        return service.piece_out(service.store.piece(piece_id))

    @app.post("/api/pieces/{piece_id}/undo", response_model=PieceOut, summary="take back the last pick")
    async def undo(piece_id: Id) -> dict:
        return service.piece_out(service.store.undo(piece_id))

    @app.get("/api/pieces/{piece_id}/{kind}", summary="download the piece as MIDI, WAV or piano roll",
             response_class=FileResponse)
    def piece_file(piece_id: Id, kind: Kind, v: str | None = None) -> FileResponse:
        """`v` (the version in the URLs the API gives) only keeps browsers from showing an old version."""
        piece = service.store.piece(piece_id)
        name = f"musenet-{piece.settings.get('style') or 'piece'}-{piece_id[:6]}{KINDS[kind]}"
        return file_response(service, piece_id, kind, name)


def file_response(service: CoComposer, item_id: str, kind: str, filename: str | None) -> FileResponse:
    if kind == "audio" and service.audio_error:
        raise HTTPException(501, f"no audio on this server: {service.audio_error}")
    path = service.store.file(item_id, kind)
    headers: dict[str, Any] = {"Cache-Control": "no-cache" if filename else "private, max-age=3600"}
    return FileResponse(path, media_type=MEDIA[kind], filename=filename, headers=headers,
                        content_disposition_type="attachment" if filename else "inline")
