"""Which instrument family a score part is, from its part name and instrument name.

Keywords of each family are matched as whole words in the lower-cased name, in several
languages and with the names old scores use (cantus, superius, sackbut, continuo); two-word
names whose first word is a voice range ("Alto Sax", "Double Bass") are instruments.
"""

from __future__ import annotations

import re

from ..errors import MuseNetError
from ..instruments import FAMILIES, FAMILY_ID, GM_PROGRAM_NAMES, PROGRAM_FAMILY

# Keywords of each family, matched as whole words in a lower-cased name.
_FAMILY_WORDS: dict[str, str] = {
    "strings": r"violin\w*|violini|viol[ae]|viole|viols?|violone|violoncell\w*|cello\w*|contrabass\w*|"
               r"kontrabass|gamba|fiddle\w*|strings?|streicher",
    "winds": r"flutes?|flauto|fl[oö]te|piccolo|oboes?|clarinet\w*|klarinette|bassoons?|fagott\w*|recorders?|"
             r"fifes?|pipes?|bagpipes?|whistles?|sax\w*|shawms?|crumhorns?|harmonica|accordion",
    "brass": r"trumpets?|tromba|trompete|horns?|corno|trombones?|posaune|tubas?|cornets?|sackbuts?|euphonium|"
             r"flugelhorn",
    "piano": r"piano\w*|keyboards?|organ\w*|orgel|harpsichord|cembalo|clavier|klavier|clavichord|celesta|"
             r"continuo",
    "guitar": r"guitars?|gitarre|lutes?|laute|theorbo|banjo|mandolin\w*|chitarr\w*|sitar",
    "harp": r"harps?|harfe|arpa|timpani|glockenspiel|marimba|xylophone|vibraphone|bells|dulcimer",
    "voice": r"sopran\w*|mezzo|alto|altus|contralto|tenor\w*|contratenor|countertenor|baritone?|bariton|"
             r"bass|basso|bassus|cantus|canto|superius|discant\w*|quintus|quinto|sextus|sexto|septimus|"
             r"voices?|vox|vocal|voce|choir|chorus|coro|motetus|triplum|duplum|medius|treble|singer|"
             r"singstimme|stimme",
}
# Names of two words whose first is a voice range: they are instruments, checked first.
_COMPOUNDS: tuple[tuple[str, str], ...] = (
    ("bass", r"electric bass|bass guitar|acoustic bass|fretless bass|slap bass|synth bass"),
    ("strings", r"double bass|string bass|(?:treble|alto|tenor|bass) viols?"),
    ("winds", r"english horn|cor anglais|(?:sopranino|soprano|alto|tenor|baritone|bass|contrabass) "
              r"(?:sax\w*|flutes?|clarinets?|recorders?|bassoons?|shawms?|crumhorns?)"),
    ("brass", r"(?:alto|tenor|baritone|bass|contrabass) (?:trombones?|horns?|tubas?|trumpets?|sackbuts?)"),
    ("piano", r"basso continuo"),
)
_KEYWORDS = tuple((FAMILY_ID[family], re.compile(rf"\b(?:{words})\b")) for family, words in _FAMILY_WORDS.items())
_COMPOUND_KEYWORDS = tuple((FAMILY_ID[family], re.compile(rf"\b(?:{words})\b")) for family, words in _COMPOUNDS)
_GM_NAME_FAMILY = {name.lower(): int(PROGRAM_FAMILY[program]) for program, name in enumerate(GM_PROGRAM_NAMES)}


def _family_of_name(name: str | None) -> int | None:
    """The family a part or instrument name says, or None: a compound instrument name
    ("Alto Sax", "Bass Clarinet", "Double Bass") first, else the keyword that comes first in
    the name, so that "Soprano / Oboe 1 / Violin 1" (a sung line doubled) is a voice."""
    if not name:
        return None
    lowered = " ".join(name.lower().split())
    for family, pattern in _COMPOUND_KEYWORDS:
        if pattern.search(lowered):
            return family
    best: tuple[int, int] | None = None
    for family, pattern in _KEYWORDS:
        match = pattern.search(lowered)
        if match and (best is None or match.start() < best[0]):
            best = (match.start(), family)
    return None if best is None else best[1]


def family_for_part(part_name: str | None, instrument_name: str | None, default_family: str) -> int:
    """The family id of a score part: keywords in the part name first (a part named "Canto"
    is a voice even where music21 says its instrument is "Grand Piano"; "Bass" is a singer,
    "Electric Bass" the bass family), then the instrument name (a General MIDI name, or
    keywords), then the collection's default family."""
    if default_family not in FAMILY_ID:
        raise MuseNetError(f"unknown family {default_family!r}; known: {', '.join(FAMILIES)}")
    family = _family_of_name(part_name)
    if family is None and instrument_name:
        family = _GM_NAME_FAMILY.get(instrument_name.strip().lower())
        if family is None:
            family = _family_of_name(instrument_name)
    return FAMILY_ID[default_family] if family is None else family
