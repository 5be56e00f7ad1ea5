"""`musenet data build`: sources of music -> token shards, index, vocabulary and manifest.

Streaming and resumable: items (MIDI files, or works of music21's corpus) are converted by
parallel workers; each result (tokens, or the reason it failed) is cached under a key made
of the input's content hash and the encoding settings, so a re-run or an interrupted build
picks up where it was. Results are consumed in item order, so the output is deterministic:
the first copy of a piece is kept and later identical ones are logged as duplicates. The
split of a piece (train / valid / test) is a hash of its identity (its group's, where a
collection groups files: a POP909 song and its versions), stable across runs, unless the
collection fixes it (the Groove MIDI Dataset's own split).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .encoding import encode_notes
from .errors import MuseNetError
from .files import write_atomic
from .instruments import FAMILIES
from .notes import read_midi
from .sequence import header_families, sequence_seconds
from .version import __version__
from .vocab import DEFAULT_STYLES, Vocab

BUILD_VERSION = 1  # bump when conversion changes, so cached results are not reused
SHARD_TOKENS = 1 << 26  # 64M tokens (128 MB of uint16) per shard at most
SPLITS = ("train", "valid", "test")
SPLIT_PERCENT = (90, 5, 5)


@dataclass(frozen=True)
class Item:
    """One unit of work: a MIDI file, or a music21 corpus file (parsed once for all its
    works) or some numbered works of one (a --limit build reads just those). `group` is the
    split identity of files that are one piece of music; `split` fixes the split."""

    source: str
    style: str
    kind: str = "midi"  # or "music21", or "groove" (a MIDI file whose drums are mapped to GM)
    numbers: tuple[int, ...] | None = None  # music21: None = every work in the file
    works: int = 1  # how many pieces it should give (for the progress bar)
    group: str | None = None  # split by this identity, not the piece's
    split: str | None = None  # "train", "valid" or "test": the collection's own split

    @property
    def label(self) -> str:
        return self.source


@dataclass
class Converted:
    """What one item became: tokens and their facts, or the reason it was skipped."""

    item: Item
    piece_id: str = ""
    tokens: np.ndarray | None = None
    notes: int = 0
    seconds: float = 0.0
    error: str | None = None


def split_of(identity: str) -> int:
    """0 train, 1 valid, 2 test: a hash of the piece's identity, so splits never move."""
    bucket = int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=8).digest(), "big") % 100
    return 0 if bucket < SPLIT_PERCENT[0] else 1 if bucket < SPLIT_PERCENT[0] + SPLIT_PERCENT[1] else 2


def split_of_piece(item: Item, piece_id: str) -> int:
    """A piece's split: the item's fixed one, else a hash of its group, else of the piece."""
    if item.split is not None:
        return SPLITS.index(item.split)
    return split_of(item.group or piece_id)


# ---- conversion, in worker processes ------------------------------------------------------

@lru_cache(maxsize=64)
def _file_digest(path: str) -> str:
    return hashlib.blake2b(Path(path).read_bytes(), digest_size=16).hexdigest()


def _cache_key(item: Item, vocab: Vocab, content_digest: str) -> str:
    recipe = f"{BUILD_VERSION}|{vocab.time_mode}|{item.style}|{item.kind}|{item.numbers}|{content_digest}"
    return hashlib.blake2b(recipe.encode(), digest_size=16).hexdigest()


def convert(item: Item, vocab: Vocab, cache_dir: Path | None) -> list[Converted]:
    """Convert one item (cached) into its pieces. Never raises for bad input: the reason
    goes in `.error`."""
    try:
        if item.kind in ("midi", "groove"):
            data = Path(item.source).read_bytes()
            digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        else:
            from .corpus.music21_corpus import corpus_path

            data, digest = None, _file_digest(str(corpus_path(item.source)))
    except (OSError, MuseNetError) as err:
        return [Converted(item, error=f"cannot read ({err})")]
    key = _cache_key(item, vocab, digest)
    cache_file = cache_dir / key[:2] / f"{key}.npz" if cache_dir else None
    if cache_file is not None and cache_file.exists():
        try:
            return _load_cached(item, cache_file)
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is recomputed
    results = _convert_uncached(item, vocab, data, digest)
    if cache_file is not None:
        _save_cached(results, cache_file)
    return results


def _pieces_of(item: Item, data: bytes | None, digest: str) -> list[tuple[str, object]]:
    """(piece id, NoteTable or the reason it failed) for each piece an item holds."""
    if item.kind == "midi":
        return [(f"midi:{digest}", read_midi(data))]
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
        if isinstance(table, str):
            results.append(Converted(item, piece_id, error=table))
            continue
        try:
            tokens = encode_notes(table, vocab, item.style)
        except MuseNetError as err:
            results.append(Converted(item, piece_id, error=str(err)))
            continue
        seconds = sequence_seconds(tokens, vocab)
        results.append(Converted(item, piece_id, tokens.astype(np.uint16), len(table), seconds))
    return results


def _save_cached(results: list[Converted], path: Path) -> None:
    tokens = [r.tokens for r in results if r.tokens is not None]
    meta = [{"piece_id": r.piece_id, "notes": r.notes, "seconds": r.seconds, "error": r.error,
             "length": 0 if r.tokens is None else len(r.tokens)} for r in results]
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
        results.append(Converted(item, m["piece_id"], piece, m["notes"], m["seconds"], m["error"]))
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


# ---- sources --------------------------------------------------------------------------------

#: `KIND[,OPTION...]:FOLDER` names a published collection and its options.
COLLECTIONS = {"pop909": ("versions",), "groove": ("beat", "fill")}
_COLLECTION = re.compile(r"^([a-z0-9]+)((?:,[a-z]+)*):(.+)$")


def parse_collection(source: str) -> tuple[str, tuple[str, ...], str] | None:
    """`pop909,versions:DIR` -> ("pop909", ("versions",), "DIR"); None for a source that
    names no collection (music21, or a plain folder)."""
    match = _COLLECTION.match(source)
    if match is None or match.group(1) not in COLLECTIONS:
        return None
    kind, options, folder = match.group(1), tuple(o for o in match.group(2).split(",") if o), match.group(3)
    unknown = [o for o in options if o not in COLLECTIONS[kind]]
    if unknown:
        known = ", ".join(COLLECTIONS[kind])
        raise MuseNetError(f"unknown option {unknown[0]!r} for {kind}; known: {known}")
    return kind, options, folder


def plan_items(source: str, styles: list[str] | None, limit: int | None, manifest: str | None) -> list[Item]:
    """The items of a source, filtered by style, at most `limit` per style. A source is:

    - `music21`: music21's bundled corpus, a style per collection;
    - `pop909:DIR` (DIR holds `POP909/`, or is it): POP909's songs, style `pop`, split by song
      number; `pop909,versions:DIR` adds each song's other versions, in its song's split;
    - `groove:DIR` (DIR holds `info.csv`): the Groove MIDI Dataset, style `drums-` and the
      take's main style, in the authors' split; `groove,beat:DIR` or `groove,fill:DIR` keeps
      those takes only (both by default);
    - any other folder: its MIDI files, style from the first sub-folder or `manifest`.
    """
    taken: dict[str, int] = {}
    items: list[Item] = []

    def add(item: Item) -> None:
        if styles and item.style not in styles:
            return
        if limit is not None and taken.get(item.style, 0) >= limit:
            return
        taken[item.style] = taken.get(item.style, 0) + 1
        items.append(item)

    collection = parse_collection(source)
    if collection is not None:
        kind, options, folder = collection
        if kind == "pop909":
            from .corpus.pop909 import STYLE, song_files

            for path, song in song_files(folder, versions="versions" in options):
                add(Item(str(path), STYLE, group=f"pop909:{song}"))
        else:
            from .corpus.groove import BEAT_TYPES, takes

            for take in takes(folder, tuple(o for o in options if o in BEAT_TYPES) or BEAT_TYPES):
                add(Item(str(take.path), take.style, "groove", split=take.split))
    elif source == "music21":
        from .corpus.music21_corpus import corpus_works

        by_file: dict[tuple[str, str], list] = {}
        for path, number, style in corpus_works(styles):
            by_file.setdefault((path, style), []).append(number)
        for (path, style), numbers in by_file.items():
            room = len(numbers) if limit is None else limit - taken.get(style, 0)
            if room <= 0:
                continue
            chosen = numbers[:room]
            taken[style] = taken.get(style, 0) + len(chosen)
            whole = len(chosen) == len(numbers)  # parse the file once for all its works
            items.append(Item(path, style, "music21", None if whole else tuple(chosen), len(chosen)))
    else:
        from .corpus.folder import midi_files

        for path, style in midi_files(source, manifest):
            add(Item(str(path), style))
    if not items:
        raise MuseNetError(f"no music found in {source}" + (f" for styles {', '.join(styles)}" if styles else ""))
    return items


# ---- the build ------------------------------------------------------------------------------

def build(
    source: str,
    out: str | Path,
    styles: list[str] | None = None,
    limit: int | None = None,
    manifest: str | None = None,
    time_mode: str = "beat",
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Build a dataset in `out` from `source` (see `plan_items`: music21, pop909:DIR,
    groove:DIR or a MIDI folder); returns the build manifest (also written as manifest.json).
    The vocabulary lists the default styles, then any other style of the items, sorted."""
    started = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = plan_items(source, styles, limit, manifest)
    extra = sorted({item.style for item in items} - set(DEFAULT_STYLES))
    vocab = Vocab(time_mode, styles=DEFAULT_STYLES + tuple(extra))
    workers = workers or os.cpu_count() or 1

    writer = _ShardWriter(out)
    index: dict[str, list] = {key: [] for key in
                              ("shard", "offset", "length", "style", "families", "seconds", "notes", "split")}
    ids, sources, failures, duplicates = [], [], [], []
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
        index["shard"].append(shard)
        index["offset"].append(offset)
        index["length"].append(len(tokens))
        index["style"].append(vocab.styles.index(result.item.style))
        index["families"].append(int(family_bits[families].sum()))
        index["seconds"].append(result.seconds)
        index["notes"].append(result.notes)
        index["split"].append(split_of_piece(result.item, result.piece_id))
        ids.append(result.piece_id)
        sources.append(_where(result))
    bar.close()
    if not ids:
        raise MuseNetError(f"no piece could be converted ({len(failures)} failed; see the reasons above)")

    shard_names = writer.close()
    arrays = {
        "shard": np.array(index["shard"], np.int16), "offset": np.array(index["offset"], np.int64),
        "length": np.array(index["length"], np.int32), "style": np.array(index["style"], np.int16),
        "families": np.array(index["families"], np.int32), "seconds": np.array(index["seconds"], np.float32),
        "notes": np.array(index["notes"], np.int64), "split": np.array(index["split"], np.int8),
        "piece_id": np.array(ids), "source": np.array(sources),
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(out / "index.npz", buffer.getvalue())
    vocab.save(out / "vocab.json")
    write_atomic(out / "failures.log", ("\n".join(failures + duplicates) + "\n").encode())
    summary = {
        "version": BUILD_VERSION,
        "musenet": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "options": {"styles": styles, "limit": limit, "manifest": manifest, "time_mode": time_mode},
        "shards": shard_names,
        "counts": {
            "items": len(items), "pieces": len(ids), "failed": len(failures), "duplicates": len(duplicates),
            "tokens": int(arrays["length"].sum()), "notes": int(arrays["notes"].sum()),
            "hours": round(float(arrays["seconds"].sum()) / 3600, 3),
            "by_split": {name: int((arrays["split"] == i).sum()) for i, name in enumerate(SPLITS)},
        },
        "build_seconds": round(time.time() - started, 1),
    }
    write_atomic(out / "manifest.json", json.dumps(summary, indent=2).encode())
    return summary


def _where(result: Converted) -> str:
    """Where a piece came from: a file's path, or a music21 work id."""
    return result.piece_id.removeprefix("music21:") if result.item.kind == "music21" else result.item.source


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
