"""The co-composer web app: `create_app` builds the FastAPI app that `musenet serve` runs.

One page (static HTML, CSS and JavaScript, no build step) and a JSON API that scripts can
use too; the OpenAPI docs are at /docs (served from the package, no CDN). Composing runs in a
bounded worker pool (see `jobs`), never on the event loop; files are served from the app's
own store by generated id only (see `store`); old results are dropped on a schedule.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import importlib.util
import logging
import secrets
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..composer import Composer
from ..corpus.intros import INTRO_BY_ID, INTROS, intro_table
from ..corpus.styles import style_description
from ..errors import MidiError, MuseNetError
from ..instruments import FAMILIES, PITCH_RANGE
from ..notes import NoteTable, read_midi
from ..render import FAMILY_COLORS, find_soundfont, fluidsynth_program, midi_seconds
from ..settings import LIMITS, Settings, cut_prompt
from ..version import __version__
from .jobs import ACTIVE, CANCELLED, DONE, FAILED, Job, JobQueue, QueueFull
from .store import ID_PATTERN, KINDS, Candidate, Conflict, NotFound, Store, StoredPiece, families_of, new_id, write_file

log = logging.getLogger("musenet.server")

STATIC = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 1 << 20        # an uploaded MIDI file
MAX_BODY_BYTES = 2 << 20          # a whole request (the upload travels as base64)
MAX_NEW_SECONDS = 120.0           # new music per request
MAX_PIECE_SECONDS = 3600.0        # a whole piece
MAX_CANDIDATES = 8                # candidates per request

Family = Literal[FAMILIES]  # type: ignore[valid-type]
Kind = Literal["midi", "audio", "pianoroll"]
Id = Annotated[str, PathParam(pattern=ID_PATTERN, description="an id the app gave out")]
MEDIA = {"midi": "audio/midi", "audio": "audio/wav", "pianoroll": "image/png"}


# ---- the API's shapes ---------------------------------------------------------------------

def setting_field(name: str, default: Any, description: str, *, high: float | None = None) -> Any:
    """A request field bounded as the setting `name` is everywhere (`settings.LIMITS`), or
    below a lower `high` that is the server's own."""
    low, limit = LIMITS[name]
    return Field(default, ge=low, le=limit if high is None else high, description=description)


class ComposeRequest(BaseModel):
    """What to compose: settings, and at most one of an intro, an uploaded MIDI or the piece so far."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"style": "irish", "instruments": ["strings", "guitar"], "seconds": 20, "temperature": 1.0, "seed": 1,
         "candidates": 4, "intro": "drowsy-maggie"}]})

    style: str | None = Field(None, max_length=64, description="a style from /api/styles (none: unknown)")
    instruments: list[Family] | None = Field(None, min_length=1, max_length=len(FAMILIES),
                                             description="families that may play (none: any)")
    seconds: float = Field(20.0, ge=1.0, le=MAX_NEW_SECONDS, description="seconds of new music")
    temperature: float = setting_field("temperature", 1.0, "creativity: higher is wilder")
    seed: int | None = setting_field("seed", None, "random seed (none: a fresh one)")
    candidates: int = setting_field("candidates", 4, "how many options to compose", high=MAX_CANDIDATES)
    intro: str | None = Field(None, description="start from a famous opening (an id from /api/intros)")
    prompt_midi: str | None = Field(None, description="start from this MIDI file (base64, at most 1 MB)")
    prompt_seconds: float = setting_field("prompt_seconds", 30.0, "how much of prompt_midi to use")
    piece_id: str | None = Field(None, pattern=ID_PATTERN, description="continue this piece")

    @field_validator("instruments")
    @classmethod
    def _unique(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("an instrument is named twice")
        return value

    @field_validator("intro")
    @classmethod
    def _known_intro(cls, value: str | None) -> str | None:
        if value is not None and value not in INTRO_BY_ID:
            raise ValueError(f"unknown intro {value!r}; see /api/intros")
        return value

    @model_validator(mode="after")
    def _one_start(self) -> ComposeRequest:
        given = [name for name in ("intro", "prompt_midi", "piece_id") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of intro, prompt_midi and piece_id, not {' and '.join(given)}")
        return self


class CandidateOut(BaseModel):
    id: str
    midi_url: str
    audio_url: str | None = Field(description="null when the server has no synthesizer")
    pianoroll_url: str
    seconds: float = Field(description="length of the whole candidate (the piece so far included)")
    prompt_seconds: float = Field(description="where the new music starts")
    notes: int
    families: list[str]


class ComposeOut(BaseModel):
    candidates: list[CandidateOut]
    piece_id: str | None
    seed: int


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed", "cancelled"]
    stage: str
    progress: float = Field(description="0 to 1")
    queue_position: int = Field(description="jobs waiting ahead of this one")
    error: str | None = None
    result: ComposeOut | None = None
    url: str


class PieceOut(BaseModel):
    id: str
    seconds: float
    versions: int = Field(description="picks so far (undo goes back one)")
    notes: int
    families: list[str]
    style: str | None
    midi_url: str
    audio_url: str | None
    pianoroll_url: str


class StyleOut(BaseModel):
    name: str
    description: str


class InstrumentOut(BaseModel):
    name: str
    low: int
    high: int
    color: str


class IntroOut(BaseModel):
    id: str
    title: str
    composer: str
    style: str


class InfoOut(BaseModel):
    version: str
    model: str
    audio: bool
    audio_error: str | None
    workers: int
    queue_size: int
    busy: int
    limits: dict[str, int | float]


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
        settings.check(self.composer.vocab)
        return settings, prompt, piece_id, version

    def submit(self, request: ComposeRequest) -> Job:
        self.jobs.check_room()
        settings, prompt, piece_id, version = self.prepare(request)
        start = midi_seconds(prompt) if prompt is not None else 0.0

        def work(job: Job) -> dict:
            job.report("composing", 0.0)
            pieces = self.composer.generate(
                prompt=prompt, settings=settings, on_step=lambda share: job.report("composing", 0.95 * share))
            job.report("saving", 0.95)
            made = []
            for piece in pieces:
                candidate = Candidate(new_id(), piece.table, start, piece_id, version, asdict(settings))
                write_file(candidate.table, self.store.path(candidate.id, "midi"), "midi")
                self.store.add_candidate(candidate)
                made.append(candidate)
            return {"candidates": [self.candidate_out(c) for c in made], "piece_id": piece_id,
                    "seed": settings.seed}

        return self.jobs.submit(work)

    def audio_url(self, url: str) -> str | None:
        return None if self.audio_error else url

    def candidate_out(self, candidate: Candidate) -> dict:
        base = f"/api/candidates/{candidate.id}"
        return {"id": candidate.id, "midi_url": f"{base}/midi", "audio_url": self.audio_url(f"{base}/audio"),
                "pianoroll_url": f"{base}/pianoroll", "seconds": round(candidate.seconds, 3),
                "prompt_seconds": round(candidate.prompt_seconds, 3), "notes": len(candidate.table),
                "families": families_of(candidate.table)}

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


def read_upload(encoded: str) -> NoteTable:
    """An uploaded MIDI file (base64) -> notes; 413 when over 1 MB, 400 when not MIDI."""
    if len(encoded) > (MAX_UPLOAD_BYTES * 4) // 3 + 8:
        raise HTTPException(413, f"prompt_midi is over the {MAX_UPLOAD_BYTES // 1024} KB limit")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, "prompt_midi is not valid base64") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"prompt_midi is {len(data)} bytes, over the {MAX_UPLOAD_BYTES // 1024} KB limit")
    try:
        return read_midi(data)
    except MidiError as err:
        raise HTTPException(400, str(err).replace("<bytes>", "prompt_midi", 1)) from None


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
    intros_ok = importlib.util.find_spec("music21") is not None

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
                         "of several continuations; go on from there.")
    app.state.cocomposer = service
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    def error(status: int):
        async def handler(request: Request, err: Exception) -> JSONResponse:
            return JSONResponse({"detail": str(err)}, status)
        return handler

    app.add_exception_handler(NotFound, error(404))
    app.add_exception_handler(Conflict, error(409))
    app.add_exception_handler(MidiError, error(400))
    app.add_exception_handler(MuseNetError, error(422))

    @app.exception_handler(QueueFull)
    async def busy(request: Request, err: QueueFull) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, 503, headers={"Retry-After": str(err.retry_after)})

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/api/info", response_model=InfoOut, summary="what this server offers")
    async def info() -> dict:
        return {"version": __version__, "model": service.composer.model_path, "audio": audio_error is None,
                "audio_error": audio_error, "workers": workers, "queue_size": queue_size,
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

    return app


def file_response(service: CoComposer, item_id: str, kind: str, filename: str | None) -> FileResponse:
    if kind == "audio" and service.audio_error:
        raise HTTPException(501, f"no audio on this server: {service.audio_error}")
    path = service.store.file(item_id, kind)
    headers: dict[str, Any] = {"Cache-Control": "no-cache" if filename else "private, max-age=3600"}
    return FileResponse(path, media_type=MEDIA[kind], filename=filename, headers=headers,
                        content_disposition_type="attachment" if filename else "inline")
