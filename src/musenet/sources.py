"""What a data build reads: its sources, as items of work, and the split of every piece.

A source is `music21`, a folder of MIDI files, or a published collection named with its
options, `KIND[,OPTION[=VALUE]...]:FOLDER` (`pop909,band:DIR`, `groove,beat:DIR`); see
`plan_items`. The split of a piece (train / valid / test) is a hash of its identity (its
group's, where a collection groups files: a POP909 song and its versions), stable across
runs, unless the collection fixes it (the Groove MIDI Dataset's own split).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import MuseNetError

SPLITS = ("train", "valid", "test")
SPLIT_PERCENT = (90, 5, 5)


@dataclass(frozen=True)
class Item:
    """One unit of work: a MIDI file, or a music21 corpus file (parsed once for all its
    works) or some numbered works of one (a --limit build reads just those). `group` is the
    split identity of files that are one piece of music; `split` fixes the split."""

    source: str
    style: str
    kind: str = "midi"  # or "music21", "groove" (drums mapped to GM), "pop909-band" (a song and its bands)
    numbers: tuple[int, ...] | None = None  # music21: None = every work in the file
    works: int = 1  # how many pieces it should give (for the progress bar)
    group: str | None = None  # split by this identity, not the piece's
    split: str | None = None  # "train", "valid" or "test": the collection's own split
    parts: tuple[str, ...] = ()  # pop909-band: the derivations (arrange.PARTS) of its band versions
    bands: int = 0  # pop909-band: how many band versions
    melody: bool = False  # pop909-band: also the melody over the song's own piano (arrange.melody_over_piano)
    grooves: str | None = None  # pop909-band: the Groove MIDI Dataset folder its drums come from

    @property
    def label(self) -> str:
        return self.source


def split_of(identity: str) -> int:
    """0 train, 1 valid, 2 test: a hash of the piece's identity, so splits never move."""
    bucket = int.from_bytes(hashlib.blake2b(identity.encode(), digest_size=8).digest(), "big") % 100
    return 0 if bucket < SPLIT_PERCENT[0] else 1 if bucket < SPLIT_PERCENT[0] + SPLIT_PERCENT[1] else 2


def split_of_piece(item: Item, piece_id: str) -> int:
    """A piece's split: the item's fixed one, else a hash of its group, else of the piece."""
    if item.split is not None:
        return SPLITS.index(item.split)
    return split_of(item.group or piece_id)


#: `KIND[,OPTION[=VALUE]...]:FOLDER` names a published collection and its options.
COLLECTIONS = {"pop909": ("versions", "band", "bands", "melody"), "groove": ("beat", "fill")}
_COLLECTION = re.compile(r"^([a-z0-9]+)((?:,[a-z]+(?:=[a-z0-9+]+)?)*):(.+)$")
_VALUED = ("band", "bands")  # the options that take a value
BAND_VERSIONS = 2  # band versions per song unless `bands=N` says otherwise


def parse_collection(source: str) -> tuple[str, tuple[str, ...], str] | None:
    """`pop909,versions:DIR` -> ("pop909", ("versions",), "DIR"); None for a source that
    names no collection (music21, or a plain folder)."""
    match = _COLLECTION.match(source)
    if match is None or match.group(1) not in COLLECTIONS:
        return None
    kind, options, folder = match.group(1), tuple(o for o in match.group(2).split(",") if o), match.group(3)
    unknown = [o for o in options if o.partition("=")[0] not in COLLECTIONS[kind]]
    if unknown:
        known = ", ".join(COLLECTIONS[kind])
        raise MuseNetError(f"unknown option {unknown[0]!r} for {kind}; known: {known}")
    valued = [o for o in options if "=" in o and o.partition("=")[0] not in _VALUED]
    if valued:
        raise MuseNetError(f"option {valued[0].partition('=')[0]!r} of {kind} takes no value")
    return kind, options, folder


def band_options(options: tuple[str, ...]) -> tuple[tuple[str, ...], int]:
    """POP909's band options -> (derivations, versions per song): `band` is every derivation
    (arrange.PARTS: bass, chords, lead, drums), `band=bass+drums` those only, `bands=N` N
    versions a song (2 by default; alone it means every derivation); ((), 0) for neither."""
    from .arrange import PARTS

    values = dict(o.partition("=")[::2] for o in options)
    if "band" not in values and "bands" not in values:
        return (), 0
    parts = tuple(p for p in values.get("band", "").split("+") if p) or PARTS
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        raise MuseNetError(f"unknown band part {unknown[0]!r}; known: {', '.join(PARTS)}")
    count = values.get("bands", "") or str(BAND_VERSIONS)
    if not count.isdigit() or not 1 <= int(count) <= 16:
        raise MuseNetError(f"bands={count}: give a number of band versions from 1 to 16")
    return tuple(p for p in PARTS if p in parts), int(count)


def _groove_folder(pop909: str, grooves: str | None) -> str:
    """Where band drums come from: `grooves` (a groove source of the same build), else a
    `groove/` folder beside the POP909 one (../shared/corpora's layout)."""
    from .corpus.groove import takes

    folder = grooves or str(Path(pop909).resolve().parent / "groove")
    try:
        takes(folder, ("beat",))
    except MuseNetError:
        raise MuseNetError(f"band drums need the Groove MIDI Dataset: none in {folder}; add --source groove:DIR, "
                           "or leave the drums out (pop909,band=bass+chords+lead:DIR)") from None
    return folder


def plan_items(source: str, styles: list[str] | None, limit: int | None, manifest: str | None,
               grooves: str | None = None) -> list[Item]:
    """The items of a source, filtered by style, at most `limit` per style. A source is:

    - `music21`: music21's bundled corpus, a style per collection;
    - `pop909:DIR` (DIR holds `POP909/`, or is it): POP909's songs, style `pop`, split by song
      number; `pop909,versions:DIR` adds each song's other versions, in its song's split;
      `pop909,band:DIR` adds 2 band versions of each song (`bands=N`: N), derived by
      `arrange.band_versions` (`band=bass+chords+lead+drums` picks the derivations), in the
      song's split, style `pop`, ids `midi:<hash>#band1`...; their drums are Groove takes
      from `grooves` (the build's groove source) or `DIR/../groove`; `pop909,melody:DIR`
      adds a version with the melody on a lead family over the song's own piano
      accompaniment (`arrange.melody_over_piano`, id `midi:<hash>#melody`);
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

            parts, count = band_options(options)
            melody = "melody" in options
            drums = _groove_folder(folder, grooves) if "drums" in parts else None
            for path, song in song_files(folder, versions="versions" in options):
                if (count or melody) and path.stem == song:  # a main file: with its derived versions
                    add(Item(str(path), STYLE, "pop909-band", works=1 + count + melody, group=f"pop909:{song}",
                             parts=parts, bands=count, grooves=drums, melody=melody))
                else:
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


def plan_sources(sources: list[str], styles: list[str] | None, limit: int | None,
                 manifest: str | None) -> list[Item]:
    """The items of several sources, in order (`plan_items` each); band versions of POP909
    take their drums from the build's own groove source, where it has one."""
    collections = [parse_collection(source) for source in sources]
    grooves = next((c[2] for c in collections if c is not None and c[0] == "groove"), None)
    return [item for source in sources for item in plan_items(source, styles, limit, manifest, grooves)]
