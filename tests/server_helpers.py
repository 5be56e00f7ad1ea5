"""For the co-composer's tests: a tiny random-weight model and a real uvicorn server in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import uvicorn

from musenet.checkpoint import save_checkpoint
from musenet.model import build_model
from musenet.vocab import default_vocab


def make_tiny_model(folder: Path) -> Path:
    """A random-weight `tiny` model with a short context: fast to compose with, and the window slides."""
    torch.manual_seed(0)
    vocab = default_vocab()
    return save_checkpoint(folder / "tiny", build_model("tiny", vocab.size, context=96), vocab)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Run `app` under uvicorn on a free local port in a thread; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def song_excerpt(source: Path, tracks: list[str], first_beat: float, last_beat: float) -> bytes:
    """MIDI bytes of some tracks of a real song, the beats [first_beat, last_beat) moved to the start."""
    import symusic

    score = symusic.Score(str(source))
    start, stop = (round(beat * score.ticks_per_quarter) for beat in (first_beat, last_beat))
    part = score.clip(start, stop).shift_time(-start)
    part.tracks = type(part.tracks)([t for t in part.tracks if t.name in tracks])
    part.tempos = type(part.tempos)(score.tempos[:1])
    return bytes(part.dumps_midi())
