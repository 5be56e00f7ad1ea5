"""The co-composer API's shapes: what a request may ask (with the limits it is checked
against, the shared ones from `settings.LIMITS`) and what the answers hold."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..corpus.intros import INTRO_BY_ID
from ..harmoniser import chord_list
from ..instruments import FAMILIES
from ..settings import LIMITS
from .store import ID_PATTERN

MAX_UPLOAD_BYTES = 1 << 20        # an uploaded MIDI file
MAX_BODY_BYTES = 2 << 20          # a whole request (the upload travels as base64)
MAX_NEW_SECONDS = 120.0           # new music per request
MAX_PIECE_SECONDS = 3600.0        # a whole piece
MAX_CANDIDATES = 8                # candidates per request

Family = Literal[FAMILIES]  # type: ignore[valid-type]
Kind = Literal["midi", "audio", "pianoroll"]
Id = Annotated[str, PathParam(pattern=ID_PATTERN, description="an id the app gave out")]


# ---- the API's shapes ---------------------------------------------------------------------

def setting_field(name: str, default: Any, description: str, *, high: float | None = None) -> Any:
    """A request field bounded as the setting `name` is everywhere (`settings.LIMITS`), or
    below a lower `high` that is the server's own."""
    low, limit = LIMITS[name]
    return Field(default, ge=low, le=limit if high is None else high, description=description)


def chord_symbols(request) -> list[str] | None:
    """A compose or accompany request's chords as symbols (None where it gives none)."""
    return chord_list(request.chords) or None if request.chords else None


def chords_field() -> Any:
    return Field(None, max_length=400, description="chord symbols, one a bar of 4 beats from the piece's start, "
                 "repeated (e.g. \"Am F C G\"; N: none): the melodic parts lean towards them")


def harmony_field() -> Any:
    return Field(None, ge=0.0, le=10.0, description="how strongly the parts lean towards the chords (0: not at all; "
                 "none: the default, 3 where there are chords to lean towards)")


class ComposeRequest(BaseModel):
    """What to compose: settings, and at most one of an intro, an uploaded MIDI or the piece so far."""

    # strict: "5" is not a number and true is not a count; NaN and Infinity are refused
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra={"examples": [
        {"style": "irish", "instruments": ["strings", "guitar"], "seconds": 20, "temperature": 1.0, "seed": 1,
         "candidates": 4, "intro": "drowsy-maggie"}]})

    style: str | None = Field(None, max_length=64, description="a style from /api/styles (none: unknown)")
    instruments: list[Family] | None = Field(None, min_length=1, max_length=len(FAMILIES),
                                             description="families that may play (none: any)")
    seconds: float = Field(20.0, ge=1.0, le=MAX_NEW_SECONDS, description="seconds of new music")
    temperature: float = setting_field("temperature", 1.0, "creativity: higher is wilder")
    seed: int | None = setting_field("seed", None, "random seed (none: a fresh one)")
    candidates: int = setting_field("candidates", 4, "how many options to compose", high=MAX_CANDIDATES)
    rank: bool = Field(True, description="with a model that has a critic: draw twice as many options and offer "
                       "the ones it likes best, best first (false: the options as drawn)")
    intro: str | None = Field(None, description="start from a famous opening (an id from /api/intros)")
    prompt_midi: str | None = Field(None, description="start from this MIDI file (base64, at most 1 MB)")
    prompt_seconds: float = setting_field("prompt_seconds", 30.0, "how much of prompt_midi to use")
    piece_id: str | None = Field(None, pattern=ID_PATTERN, description="continue this piece")
    chords: str | None = chords_field()
    harmony: float | None = harmony_field()

    _unique_instruments = field_validator("instruments")(lambda cls, value: _no_repeats(value))

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


class AccompanyRequest(BaseModel):
    """Accompany an uploaded song: keep its parts `keep` note for note, compose `add` around them."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra={"examples": [
        {"melody_midi": "TVRoZAAAAAYAAQ...", "keep": ["Melody"], "add": ["piano", "bass", "drums"],
         "style": "pop", "seed": 1, "candidates": 4}]})

    melody_midi: str = Field(description="the song (a MIDI file as base64, at most 1 MB)")
    keep: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        None, min_length=1, max_length=16,
        description="its parts to keep: families (voice), track names (Melody) or track numbers as strings "
        "(\"0\" is the first track); none: all of it")
    add: list[Family] = Field(min_length=1, max_length=len(FAMILIES), description="families to compose")
    style: str | None = Field(None, max_length=64, description="a style from /api/styles (none: unknown)")
    seconds: float | None = Field(None, ge=1.0, le=MAX_NEW_SECONDS,
                                  description=f"how much of the song (none: all of it, up to {MAX_NEW_SECONDS:g} s)")
    temperature: float = setting_field("temperature", 1.0, "creativity: higher is wilder")
    seed: int | None = setting_field("seed", None, "random seed (none: a fresh one)")
    candidates: int = setting_field("candidates", 4, "how many options to compose", high=MAX_CANDIDATES)
    chords: str | None = Field(None, max_length=400,
                               description="chord symbols, one a bar of the song, repeated (e.g. \"Am F C G\"; N: "
                               "none): the added parts lean towards them (none: towards the chords the harmoniser "
                               "hears in the kept parts)")
    harmony: float | None = harmony_field()

    _unique_add = field_validator("add")(lambda cls, value: _no_repeats(value))


class RewriteRequest(BaseModel):
    """Rewrite a span of a piece: what comes before `start` and from `stop` on stays note for note."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra={"examples": [
        {"piece_id": "0123456789abcdef", "start": 4.0, "stop": 8.0, "seed": 1, "candidates": 4}]})

    piece_id: str = Field(pattern=ID_PATTERN, description="the piece to rewrite a span of")
    start: float = Field(ge=0.0, le=MAX_PIECE_SECONDS, description="start of the span, in seconds")
    stop: float = Field(gt=0.0, le=MAX_PIECE_SECONDS, description="end of the span, in seconds")
    instruments: list[Family] | None = Field(None, min_length=1, max_length=len(FAMILIES),
                                             description="families the span may use (none: those playing in it)")
    style: str | None = Field(None, max_length=64, description="a style from /api/styles (none: the piece's)")
    temperature: float = setting_field("temperature", 1.0, "creativity: higher is wilder")
    seed: int | None = setting_field("seed", None, "random seed (none: a fresh one)")
    candidates: int = setting_field("candidates", 4, "how many options to compose", high=MAX_CANDIDATES)
    chords: str | None = chords_field()
    harmony: float | None = harmony_field()

    _unique_instruments = field_validator("instruments")(lambda cls, value: _no_repeats(value))

    @model_validator(mode="after")
    def _a_span(self) -> RewriteRequest:
        if self.stop <= self.start:
            raise ValueError(f"the span {self.start:g}-{self.stop:g} s is empty: stop must come after start")
        if self.stop - self.start > MAX_NEW_SECONDS:
            raise ValueError(f"the span is {self.stop - self.start:g} s, over the {MAX_NEW_SECONDS:g} s limit")
        return self


def _no_repeats(value: list[str] | None) -> list[str] | None:
    if value is not None and len(set(value)) != len(value):
        raise ValueError("an instrument is named twice")
    return value


class CandidateOut(BaseModel):
    id: str
    task: Literal["continue", "accompany", "rewrite"] = Field(description="how it was composed")
    midi_url: str
    audio_url: str | None = Field(description="null when the server has no synthesizer")
    pianoroll_url: str
    seconds: float = Field(description="length of the whole candidate (the piece so far included)")
    prompt_seconds: float = Field(description="where the new music starts")
    stop_seconds: float | None = Field(None, description="a rewrite: where the new music ends")
    notes: int
    families: list[str]
    critic: float | None = Field(None, description="the critic's probability that it is real music (ranked options)")


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
