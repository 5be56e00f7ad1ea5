"""What a style is, in one line: for `musenet styles` and the co-composer's /api/styles.

Importing this does not import music21 (`music21_corpus` imports it only to read a work).
"""

from __future__ import annotations

from .music21_corpus import STYLE_GROUPS

_GROOVE = "drum kit alone (Groove MIDI Dataset):"
#: Styles of the published collections read by `pop909` and `groove`.
COLLECTION_STYLES: dict[str, str] = {
    "pop": "Chinese pop songs arranged for piano: melody, bridge and accompaniment (POP909)",
    "drums-afrobeat": f"{_GROOVE} Afrobeat",
    "drums-afrocuban": f"{_GROOVE} Afro-Cuban (bembé, rumba, calypso)",
    "drums-blues": f"{_GROOVE} blues shuffle",
    "drums-country": f"{_GROOVE} country",
    "drums-dance": f"{_GROOVE} dance (disco, breakbeat)",
    "drums-funk": f"{_GROOVE} funk (and the Purdie shuffle)",
    "drums-gospel": f"{_GROOVE} gospel",
    "drums-highlife": f"{_GROOVE} highlife",
    "drums-hiphop": f"{_GROOVE} hip hop",
    "drums-jazz": f"{_GROOVE} jazz (swing, fusion, march)",
    "drums-latin": f"{_GROOVE} Latin and Brazilian (samba, baião, songo, bossa)",
    "drums-middleeastern": f"{_GROOVE} Middle Eastern",
    "drums-neworleans": f"{_GROOVE} New Orleans (funk, second line)",
    "drums-pop": f"{_GROOVE} pop",
    "drums-punk": f"{_GROOVE} punk",
    "drums-reggae": f"{_GROOVE} reggae",
    "drums-rock": f"{_GROOVE} rock (half-time, indie, shuffle, prog)",
    "drums-soul": f"{_GROOVE} soul and Motown",
}


def style_description(style: str) -> str:
    """The style's music21 corpus group, told in a line; `unknown` is music given no style,
    and any other style is a folder of a MIDI collection."""
    group = STYLE_GROUPS.get(style)
    if group is not None:
        return group.description
    if style in COLLECTION_STYLES:
        return COLLECTION_STYLES[style]
    return "no style given" if style == "unknown" else "from a MIDI collection"
