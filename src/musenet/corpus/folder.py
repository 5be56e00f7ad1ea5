"""A folder of MIDI files as a source: recursive, style from the first sub-folder or a CSV."""

from __future__ import annotations

import csv
import re
from pathlib import Path

from ..errors import MuseNetError

MIDI_SUFFIXES = {".mid", ".midi", ".kar", ".smf"}


def style_name(raw: str) -> str:
    """A folder or manifest label as a style token name: lower case, words joined by '-'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.strip().lower()).strip("-_")
    if not name:
        raise MuseNetError(f"cannot make a style name of {raw!r}")
    return name


def midi_files(root: str | Path, manifest: str | Path | None = None) -> list[tuple[Path, str]]:
    """Every MIDI file under root (sorted) with its style: from the manifest CSV (path,style;
    paths relative to root or absolute) when given, else the first sub-folder's name, else
    `unknown` for files directly in root."""
    root = Path(root)
    if not root.is_dir():
        raise MuseNetError(f"{root}: not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in MIDI_SUFFIXES and p.is_file())
    labels = _read_manifest(root, manifest) if manifest else None
    out = []
    for path in files:
        relative = path.relative_to(root)
        if labels is not None:
            style = labels.get(relative.as_posix(), "unknown")
        else:
            style = style_name(relative.parts[0]) if len(relative.parts) > 1 else "unknown"
        out.append((path, style))
    return out


def _read_manifest(root: Path, manifest: str | Path) -> dict[str, str]:
    """path,style rows -> {path relative to root: style}. A header row is allowed."""
    try:
        with open(manifest, newline="") as handle:
            rows = [row for row in csv.reader(handle) if row and not row[0].startswith("#")]
    except OSError as err:
        raise MuseNetError(f"{manifest}: cannot read manifest ({err.strerror or err})") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "style"]:
        rows = rows[1:]
    labels = {}
    for number, row in enumerate(rows, 1):
        if len(row) < 2:
            raise MuseNetError(f"{manifest}: row {number} needs two columns, path and style")
        path = Path(row[0].strip())
        if path.is_absolute():
            try:
                path = path.resolve().relative_to(root.resolve())
            except ValueError:
                raise MuseNetError(f"{manifest}: row {number}: {path} is not under {root}") from None
        labels[path.as_posix()] = style_name(row[1])
    return labels
