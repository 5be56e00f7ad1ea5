"""Uploaded MIDI files: base64 in a JSON field, refused with a one-line reason that names the field."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import TypeVar

from fastapi import HTTPException

from ..errors import MidiError, MuseNetError
from ..notes import NoteTable, read_midi
from .schemas import MAX_UPLOAD_BYTES

T = TypeVar("T")


def decode_upload(encoded: str, field: str) -> bytes:
    """The file in a base64 field: 413 when over 1 MB, 400 when not base64."""
    if len(encoded) > (MAX_UPLOAD_BYTES * 4) // 3 + 8:
        raise HTTPException(413, f"{field} is over the {MAX_UPLOAD_BYTES // 1024} KB limit")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"{field} is not valid base64") from None
    if len(data) > MAX_UPLOAD_BYTES:
        raise HTTPException(413, f"{field} is {len(data)} bytes, over the {MAX_UPLOAD_BYTES // 1024} KB limit")
    return data


def named(field: str, read: Callable[[], T]) -> T:
    """`read()` with its errors naming `field` instead of <bytes>: 400 for a file that is not
    (good) MIDI, MuseNetError (422) for the rest, such as a part the file does not have."""
    try:
        return read()
    except MidiError as err:
        raise HTTPException(400, str(err).replace("<bytes>", field, 1)) from None
    except MuseNetError as err:
        raise MuseNetError(str(err).replace("<bytes>", field, 1)) from None


def read_upload(encoded: str, field: str = "prompt_midi") -> NoteTable:
    """An uploaded MIDI file (base64) -> notes; 413 when over 1 MB, 400 when not MIDI."""
    data = decode_upload(encoded, field)
    return named(field, lambda: read_midi(data))
