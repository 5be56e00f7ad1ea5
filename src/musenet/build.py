"""`musenet data build`: sources of music -> token shards, index, vocabulary and manifest.

Streaming and resumable: items (MIDI files, or works of music21's corpus) are converted by
parallel workers; each result (tokens, or the reason it failed) is cached under a key made
of the input's content hash and the encoding settings, so a re-run or an interrupted build
picks up where it was. Results are consumed in item order, so the output is deterministic:
the first copy of a piece is kept and later identical ones are logged as duplicates. The
split of a piece (train / valid / test) is a hash of its identity (its group's, where a
collection groups files: a POP909 song and its versions), stable across runs, unless the
collection fixes it (the Groove MIDI Dataset's own split). Several sources make one dataset.
Band versions of POP909's songs (`pop909,band:DIR`, see `plan_items`) are derived at build
time by `arrange.py`: each is kept in its song's split and marked in the index (`derived`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .encoding import encode_notes, in_instant_order
from .errors import MuseNetError
from .files import write_atomic
from .instruments import FAMILIES
from .notes import read_midi
from .sequence import header_families, sequence_seconds
from .sources import SPLITS, Item, plan_sources, split_of_piece
from .version import __version__
from .vocab import DEFAULT_STYLES, Vocab

BUILD_VERSION = 2  # bump when conversion changes, so cached results are not reused
SHARD_TOKENS = 1 << 26  # 64M tokens (128 MB of uint16) per shard at most


@dataclass
class Converted:
    """What one item became: tokens and their facts, or the reason it was skipped."""

    item: Item
    piece_id: str = ""
    tokens: np.ndarray | None = None
    notes: int = 0
    seconds: float = 0.0
    error: str | None = None
    derived: bool = False  # made by arrange.py, not played as such


# ---- conversion, in worker processes ------------------------------------------------------

@lru_cache(maxsize=64)
def _file_digest(path: str) -> str:
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def _cache_key(item: Item, vocab: Vocab, content_digest: str) -> str:
    """The cache's name for an item's results: not the instant order, which `convert` puts
    right as it reads them (`in_instant_order`), so both orders share one cache."""
    recipe = f"{BUILD_VERSION}|{vocab.time_mode}|{item.style}|{item.kind}|{item.numbers}|{content_digest}"
    return hashlib.blake2b(recipe.encode(), digest_size=16).hexdigest()


def convert(item: Item, vocab: Vocab, cache_dir: Path | None) -> list[Converted]:
    """Convert one item (cached) into its pieces. Never raises for bad input: the reason
    goes in `.error`."""
    try:
        if item.kind in ("midi", "groove", "pop909-band"):
            data = Path(item.source).read_bytes()
            digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        else:
            from .corpus.music21_corpus import corpus_path

            data, digest = None, _file_digest(str(corpus_path(item.source)))
        content = _band_digest(item, digest) if item.kind == "pop909-band" else digest
    except (OSError, MuseNetError) as err:
        return [Converted(item, error=f"cannot read ({err})")]
    key = _cache_key(item, vocab, content)
    cache_file = cache_dir / key[:2] / f"{key}.npz" if cache_dir else None
    if cache_file is not None and cache_file.exists():
        try:
            results = _load_cached(item, cache_file)
            for result in results:
                if result.tokens is not None:
                    result.tokens = in_instant_order(result.tokens, vocab).astype(result.tokens.dtype)
            return results
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is recomputed
    results = _convert_uncached(item, vocab, data, digest)
    if cache_file is not None:
        _save_cached(results, cache_file)
    return results


def _band_digest(item: Item, digest: str) -> str:
    """What a pop909-band item's results depend on: the song, its annotations, the
    derivations asked for, their code's version and the Groove collection's listing."""
    from .arrange import ARRANGE_VERSION

    song = Path(item.source).parent
    recipe = [digest, str(ARRANGE_VERSION), "+".join(item.parts), str(item.bands)] + (["melody"] if item.melody else [])
    listed = [song / "chord_midi.txt", song / "beat_midi.txt"]
    if item.grooves is not None:
        listed.append(Path(item.grooves) / "info.csv")
    recipe += [_file_digest(str(path)) if path.is_file() else "-" for path in listed]  # none: bands fail
    return hashlib.blake2b("|".join(recipe).encode(), digest_size=16).hexdigest()


@lru_cache(maxsize=4)
def _groove_takes(folder: str) -> tuple:
    from .corpus.groove import takes

    return tuple(takes(folder, ("beat",)))


def _band_pieces(item: Item, data: bytes, digest: str) -> list[tuple[str, object]]:
    """The band versions of a POP909 song (arrange.band_versions) and its melody version
    (arrange.melody_over_piano), or why they failed."""
    from .arrange import band_versions, melody_over_piano
    from .corpus.pop909 import read_beats, read_chords, read_song

    song = Path(item.source).parent
    try:
        table, roles = read_song(data)
        chords, beats = read_chords(song), read_beats(song)
        grooves = _groove_takes(item.grooves) if item.grooves is not None else ()
        versions = band_versions(table, roles, chords, beats, grooves, song.name, item.bands, item.parts)
        melody = [melody_over_piano(table, roles, song.name)] if item.melody else []
    except Exception as err:  # noqa: BLE001 - the song itself still goes in
        reason = str(err).replace("<bytes>: ", "") if isinstance(err, MuseNetError) else f"{type(err).__name__}: {err}"
        names = [f"band{k}" for k in range(1, item.bands + 1)] + (["melody"] if item.melody else [])
        return [(f"midi:{digest}#{name}", f"band version: {reason}") for name in names]
    return ([(f"midi:{digest}#band{k}", band) for k, band in enumerate(versions, 1)]
            + [(f"midi:{digest}#melody", version) for version in melody])


def _pieces_of(item: Item, data: bytes | None, digest: str) -> list[tuple[str, object]]:
    """(piece id, NoteTable or the reason it failed) for each piece an item holds."""
    if item.kind == "midi":
        return [(f"midi:{digest}", read_midi(data))]
    if item.kind == "pop909-band":
        return [(f"midi:{digest}", read_midi(data))] + _band_pieces(item, data, digest)
    if item.kind == "groove":
        from .corpus.groove import read_groove

        return [(f"midi:{digest}", read_groove(data))]
    from .corpus.music21_corpus import read_corpus_file, read_work

    if item.numbers is None:
        return [(f"music21:{work}", table) for work, table in read_corpus_file(item.source, item.style)]
    out = []
    for number in item.numbers:
        try:
            work, table = read_work(item.source, number, item.style)
            out.append((f"music21:{work}", table))
        except MuseNetError as err:
            out.append((f"music21:{item.source}#{number}", str(err)))
    return out


def _convert_uncached(item: Item, vocab: Vocab, data: bytes | None, digest: str) -> list[Converted]:
    try:
        pieces = _pieces_of(item, data, digest)
    except MuseNetError as err:
        return [Converted(item, error=str(err).replace("<bytes>: ", ""))]
    except Exception as err:  # noqa: BLE001 - one bad file must never stop a build
        return [Converted(item, error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")]
    results = []
    for piece_id, table in pieces:
        derived = item.kind == "pop909-band" and "#" in piece_id
        if isinstance(table, str):
            results.append(Converted(item, piece_id, error=table, derived=derived))
            continue
        try:
            tokens = encode_notes(table, vocab, item.style)
        except MuseNetError as err:
            results.append(Converted(item, piece_id, error=str(err), derived=derived))
            continue
        seconds = sequence_seconds(tokens, vocab)
        results.append(Converted(item, piece_id, tokens.astype(np.uint16), len(table), seconds, derived=derived))
    return results


def _save_cached(results: list[Converted], path: Path) -> None:
    tokens = [r.tokens for r in results if r.tokens is not None]
    meta = [{"piece_id": r.piece_id, "notes": r.notes, "seconds": r.seconds, "error": r.error,
             "length": 0 if r.tokens is None else len(r.tokens), "derived": r.derived} for r in results]
    buffer = io.BytesIO()
    np.savez(buffer, tokens=np.concatenate(tokens) if tokens else np.zeros(0, np.uint16),
             meta=np.array(json.dumps(meta)))
    write_atomic(path, buffer.getvalue())


def _load_cached(item: Item, path: Path) -> list[Converted]:
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        tokens = data["tokens"]
    results, offset = [], 0
    for m in meta:
        piece = tokens[offset: offset + m["length"]] if m["error"] is None else None
        offset += m["length"]
        results.append(Converted(item, m["piece_id"], piece, m["notes"], m["seconds"], m["error"],
                                 m.get("derived", False)))
    return results


def _convert_many(items: list[Item], vocab: Vocab, cache_dir: Path, workers: int) -> Iterator[list[Converted]]:
    """Results in item order, converted by `workers` processes (or inline for 1)."""
    if workers <= 1:
        for item in items:
            yield convert(item, vocab, cache_dir)
        return
    with ProcessPoolExecutor(workers) as pool:
        window = max(64, workers * 16)  # bounded look-ahead keeps memory flat
        pending = []
        for item in items:
            pending.append(pool.submit(convert, item, vocab, cache_dir))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


# ---- the build ------------------------------------------------------------------------------

def build(
    source: str | list[str],
    out: str | Path,
    styles: list[str] | None = None,
    limit: int | None = None,
    manifest: str | None = None,
    time_mode: str = "beat",
    workers: int | None = None,
    progress: bool = True,
    instant_order: str = "low-first",
) -> dict:
    """Build a dataset in `out` from `source`, or a list of sources made into one dataset
    (see `plan_items`: music21, pop909:DIR, pop909,band:DIR, groove:DIR or a MIDI folder);
    returns the build manifest (also written as manifest.json). `styles` and `limit` apply
    to each source. The vocabulary lists the default styles, then any other style of the
    items (the drums-* of Groove), sorted, so a model of the default vocabulary can grow into
    it. Where a source makes band versions, index.npz has a column `derived` (1 for them).
    `instant_order` orders the events of an instant (vocab.INSTANT_ORDERS)."""
    started = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sources = [source] if isinstance(source, str) else list(source)
    if not sources:
        raise MuseNetError("no source to build from")
    items = plan_sources(sources, styles, limit, manifest)
    extra = sorted({item.style for item in items} - set(DEFAULT_STYLES))
    vocab = Vocab(time_mode, styles=DEFAULT_STYLES + tuple(extra), instant_order=instant_order)
    workers = workers or os.cpu_count() or 1

    columns, shard_names, failures, duplicates = _convert_all(items, vocab, out, workers, progress)
    arrays = _write_index(out, columns, derived=any(item.bands or item.melody for item in items))
    vocab.save(out / "vocab.json")
    write_atomic(out / "failures.log", ("\n".join(failures + duplicates) + "\n").encode())
    summary = {
        "version": BUILD_VERSION,
        "musenet": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "options": {"styles": styles, "limit": limit, "manifest": manifest, "time_mode": time_mode,
                    "instant_order": instant_order},
        "shards": shard_names,
        "counts": {
            "items": len(items), "pieces": len(arrays["length"]), "failed": len(failures),
            "duplicates": len(duplicates), "tokens": int(arrays["length"].sum()), "notes": int(arrays["notes"].sum()),
            "hours": round(float(arrays["seconds"].sum()) / 3600, 3),
            "by_split": {name: int((arrays["split"] == i).sum()) for i, name in enumerate(SPLITS)},
        },
        "build_seconds": round(time.time() - started, 1),
    }
    if "derived" in arrays:
        summary["counts"]["derived"] = int(arrays["derived"].sum())
    write_atomic(out / "manifest.json", json.dumps(summary, indent=2).encode())
    return summary


_COLUMNS = ("shard", "offset", "length", "style", "families", "seconds", "notes", "split", "piece_id", "source",
            "derived")


def _convert_all(items: list[Item], vocab: Vocab, out: Path, workers: int,
                 progress: bool) -> tuple[dict[str, list], list[str], list[str], list[str]]:
    """Convert every item, write its pieces to shards (first copy kept, later identical
    music logged as a duplicate); returns the index columns, the shard names, the failures
    and the duplicates."""
    writer = _ShardWriter(out)
    columns: dict[str, list] = {key: [] for key in _COLUMNS}
    failures, duplicates = [], []
    seen: dict[bytes, str] = {}
    family_bits = 1 << np.arange(len(FAMILIES))
    bar = tqdm(total=sum(item.works for item in items), unit="piece", desc="building", disable=not progress,
               dynamic_ncols=True)
    results = (result for batch in _convert_many(items, vocab, out / "cache", workers) for result in batch)
    for result in results:
        bar.update()
        if result.error is not None:
            failures.append(f"{result.piece_id or result.item.label}\t{result.error}")
            bar.set_postfix(skipped=len(failures), refresh=False)
            continue
        tokens = result.tokens
        fingerprint = hashlib.blake2b(tokens[1:].tobytes(), digest_size=16).digest()  # music, not label
        if fingerprint in seen:
            duplicates.append(f"{_where(result)}\tduplicate of {seen[fingerprint]}")
            continue
        seen[fingerprint] = _where(result)
        shard, offset = writer.write(tokens)
        families = header_families(tokens.astype(np.int64), vocab)
        row = {"shard": shard, "offset": offset, "length": len(tokens), "style": vocab.styles.index(result.item.style),
               "families": int(family_bits[families].sum()), "seconds": result.seconds, "notes": result.notes,
               "split": split_of_piece(result.item, result.piece_id), "piece_id": result.piece_id,
               "source": _where(result), "derived": int(result.derived)}
        for key, value in row.items():
            columns[key].append(value)
    bar.close()
    if not columns["piece_id"]:
        raise MuseNetError(f"no piece could be converted ({len(failures)} failed; see the reasons above)")
    return columns, writer.close(), failures, duplicates


def _write_index(out: Path, columns: dict[str, list], derived: bool) -> dict[str, np.ndarray]:
    """index.npz: one row per piece; the `derived` column only where a source derives pieces
    (so builds without any stay byte for byte as they were)."""
    dtypes = {"shard": np.int16, "offset": np.int64, "length": np.int32, "style": np.int16, "families": np.int32,
              "seconds": np.float32, "notes": np.int64, "split": np.int8, "piece_id": None, "source": None,
              "derived": np.int8}
    arrays = {key: np.array(columns[key], dtypes[key]) for key in _COLUMNS if derived or key != "derived"}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(out / "index.npz", buffer.getvalue())
    return arrays


def _where(result: Converted) -> str:
    """Where a piece came from: a file's path (and #bandN for a band version), or a music21 work id."""
    if result.item.kind == "music21":
        return result.piece_id.removeprefix("music21:")
    return result.item.source + (result.piece_id[result.piece_id.index("#"):] if result.derived else "")


class _ShardWriter:
    """Appends token arrays to numbered uint16 shard files; a piece never straddles two.
    Files are written under a temporary name and renamed when the build finishes."""

    def __init__(self, out: Path):
        self.out = out
        self.names: list[str] = []
        self.handle = None
        self.filled = 0

    def write(self, tokens: np.ndarray) -> tuple[int, int]:
        if self.handle is None or self.filled + len(tokens) > SHARD_TOKENS:
            self._next()
        offset = self.filled
        self.handle.write(tokens.astype(np.uint16).tobytes())
        self.filled += len(tokens)
        return len(self.names) - 1, offset

    def _next(self) -> None:
        if self.handle is not None:
            self.handle.close()
        self.names.append(f"tokens-{len(self.names):04d}.bin")
        self.handle = open(self.out / f".{self.names[-1]}.tmp", "wb")  # noqa: SIM115 - closed in close()
        self.filled = 0

    def close(self) -> list[str]:
        if self.handle is not None:
            self.handle.close()
        for name in self.names:
            os.replace(self.out / f".{name}.tmp", self.out / name)
        for stale in self.out.glob("tokens-*.bin"):
            if stale.name not in self.names:
                stale.unlink()
        return self.names
