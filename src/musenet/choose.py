"""The sampler's choice of each next token, the mask and the draw, in one compiled call.

After the model's logits, every step of composing runs the rules of `rules.py` (the mask of
`allowed_tokens`, strict mode's `entrances`, then `sample_tokens` with its release boost and
nucleus). In eager PyTorch that is some 70 small tensor operations a token, 0.45 ms at batch
1 on a 2-core CPU, nearly all of it dispatch: about as long as the compiled decode step
itself. `choose.c` does the same work as loops over the tokens the request can take, in a
few hundredths of a millisecond; it is built with the C compiler into the compiled
decoder's cache (`kernels.py`, `musenet compile`; well under a second) and called through
`ctypes` (which lets other threads run meanwhile).

The same rules, not new ones: the mask is the eager mask to the bit (the same float64
arithmetic in the same order, no fused multiply-adds; `tests/test_choose.py` compares both
over real composing runs), and the draw takes its token from the same distribution with the
same uniform number. Only the order of equally likely tokens may differ from `torch.topk`'s
(with int8 weights the logits are bfloat16, so ties are common), and the probabilities are
summed in float64 here, in float32 there. It covers composing without a fixed plan or
top-k (after the first step); the sampler uses `rules.py` for the rest, and where no C
compiler is at hand.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import torch

from .errors import MuseNetError
from .instruments import DRUMS, FAMILIES
from .rules import FIRST_ENTRY_SECONDS, KEYS, DecodeState, TokenTables
from .settings import Settings

SOURCE = Path(__file__).with_name("choose.c")
FLAGS = ["-O2", "-march=native", "-ffp-contract=off", "-shared", "-fPIC"]  # no fused multiply-adds: eager's bits

_i64, _ptr = ctypes.c_int64, ctypes.c_void_p
ARGUMENTS = [_i64, *[_ptr] * 9, _i64, _i64, _i64, _i64, _i64, _ptr, _ptr,  # the request
             _i64, _i64, _ptr, _ptr,                                      # batch, vocab, logits, draw
             *[_ptr] * 9,                                                 # the state
             _ptr, _ptr]                                                  # tokens, masks


def library_path() -> Path:
    """The compiled library's cache file: the source and flags hashed (kernels.package_file)."""
    from .kernels import package_file

    digest = hashlib.sha256(SOURCE.read_bytes() + " ".join(FLAGS).encode())
    return package_file("choose", digest).with_suffix(".so")


def build_library(path: Path) -> None:
    """Compile choose.c into `path` (written whole: a temporary file, then renamed)."""
    compiler = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)), None)
    if compiler is None:
        raise MuseNetError("no C compiler (cc, gcc or clang)")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(handle)
    try:
        for flags in (FLAGS, [f for f in FLAGS if f != "-march=native"]):  # some compilers lack -march=native
            done = subprocess.run([compiler, *flags, "-o", temporary, str(SOURCE), "-lm"], capture_output=True,
                                  text=True)
            if not done.returncode:
                break
        else:
            raise MuseNetError(f"{compiler} failed: {done.stderr.strip()[:200]}")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


class Library:
    """choose.c's `musenet_choose`, loaded."""

    def __init__(self, path: Path):
        self.function = ctypes.CDLL(str(path)).musenet_choose
        self.function.argtypes, self.function.restype = ARGUMENTS, ctypes.c_int


class Chooser:
    """The next token of every row for one request (`settings`, `allowed_on`, `requested`,
    the head's `rows`, the state's `earliest_end` and `entries_from`), as
    `rules.allowed_tokens` + `entrances` + `sample_tokens` give it: `__call__(logits, state,
    draw)`."""

    def __init__(self, library: Library, tables: TokenTables, settings: Settings, allowed_on: torch.Tensor,
                 requested: torch.Tensor | None, rows: torch.Tensor | None, state: DecodeState):
        t, vocab = tables, tables.vocab
        ids = np.arange(vocab.size, dtype=np.int64) if rows is None else rows.cpu().numpy().astype(np.int64)

        def at(values: torch.Tensor, dtype) -> np.ndarray:
            return np.ascontiguousarray(values.cpu().numpy()[ids], dtype=dtype)

        wait_steps = at(t.wait, np.float64)
        self.arrays = [ids, at(t.possible & allowed_on, np.uint8), wait_steps, (wait_steps > 0).astype(np.uint8),
                       at(t.is_on, np.uint8), at(t.is_off, np.uint8), at(t.is_drum, np.uint8),
                       at(t.key, np.int64), at(t.family, np.int64)]
        self.requested = (np.zeros(len(FAMILIES), np.uint8) if requested is None
                          else requested.cpu().numpy().astype(np.uint8))
        s = settings
        self.limits = np.array([s.max_polyphony, s.max_rest_seconds, s.max_note_seconds, float(s.seconds),
                                state.earliest_end, state.entries_from, s.max_family_silence, s.temperature,
                                s.top_p, t.longest_wait, FIRST_ENTRY_SECONDS, s.min_p,
                                float(s.nucleus == "family")], np.float64)
        end_at = int(np.flatnonzero(ids == vocab.END)[0])
        self.request = [len(ids), *(a.ctypes.data for a in self.arrays), end_at, vocab.PAD, len(FAMILIES), KEYS,
                        DRUMS, self.requested.ctypes.data, self.limits.ctypes.data]
        self.function, self.settings, self.tables = library.function, settings, tables
        self.keep_masks, self.masks = False, None  # with keep_masks, each call's masks (batch, rows) (tests)

    @staticmethod
    def covers(settings: Settings, plan) -> bool:
        """Whether a Chooser serves this request: no fixed plan, no top-k."""
        return plan is None and not settings.top_k

    def __call__(self, logits: torch.Tensor, state: DecodeState, draw: torch.Tensor) -> torch.Tensor:
        batch = len(logits)
        if logits.dtype != torch.float32 or not logits.is_contiguous() or logits.device.type != "cpu":
            raise MuseNetError("internal error: the chooser reads contiguous float32 CPU logits")
        tokens = torch.empty(batch, dtype=torch.long)
        if self.keep_masks:
            self.masks = np.empty((batch, len(self.arrays[0])), np.uint8)
        # the state's tensors are contiguous CPU tensors by construction (DecodeState, opening_state, advance)
        failed = self.function(*self.request, batch, logits.shape[1], logits.data_ptr(), draw.data_ptr(),
                               state.sounding.data_ptr(), state.onset.data_ptr(), state.polyphony.data_ptr(),
                               state.rest_seconds.data_ptr(), state.seconds.data_ptr(),
                               state.instant_drums.data_ptr(), state.finished.data_ptr(),
                               state.family_last.data_ptr(), state.step_seconds(self.tables.vocab).data_ptr(),
                               tokens.data_ptr(), self.masks.ctypes.data if self.keep_masks else None)
        if failed:
            raise MuseNetError("internal error: the chooser could not allocate its buffers")
        return tokens
