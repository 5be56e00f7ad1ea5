"""The ten instrument families, the General MIDI program -> family table, and pitch ranges.

MuseNet conditioned on ten instruments; we keep ten families so that one note token can
carry its instrument. Every one of the 128 GM programs belongs to exactly one family and
every family decodes to one representative program (drums: the channel-10 kit).
"""

from __future__ import annotations

import numpy as np

#: Family names in token order. The index of a name is its family id.
FAMILIES: tuple[str, ...] = (
    "piano", "strings", "winds", "brass", "voice", "harp", "guitar", "bass", "drums", "synth",
)
FAMILY_ID: dict[str, int] = {name: i for i, name in enumerate(FAMILIES)}
DRUMS: int = FAMILY_ID["drums"]

#: The GM program (0-based) each family is written back as; drums are a channel-10 kit.
REPRESENTATIVE_PROGRAM: dict[str, int] = {
    "piano": 0,      # Acoustic Grand Piano
    "strings": 48,   # String Ensemble 1
    "winds": 73,     # Flute
    "brass": 61,     # Brass Section
    "voice": 52,     # Choir Aahs
    "harp": 46,      # Orchestral Harp
    "guitar": 25,    # Acoustic Guitar (steel)
    "bass": 33,      # Electric Bass (finger)
    "drums": 0,      # Standard kit on channel 10
    "synth": 81,     # Lead 2 (sawtooth)
}

#: Inclusive pitch range of each family's note tokens. Generous enough for every file in
#: the shared test collections and the music21 corpus; a note outside is moved by octaves
#: into the range (drums outside their range are dropped: they have no octaves).
PITCH_RANGE: dict[str, tuple[int, int]] = {
    "piano": (21, 108),
    "strings": (24, 103),
    "winds": (24, 110),
    "brass": (24, 96),
    "voice": (31, 96),
    "harp": (21, 108),
    "guitar": (28, 100),
    "bass": (16, 72),
    "drums": (24, 95),
    "synth": (21, 108),
}

# One row per GM program group of eight, refined by the exceptions below.
_GROUP_FAMILY = (
    "piano",    # 0-7 pianos
    "harp",     # 8-15 chromatic percussion (celesta is moved to piano below)
    "piano",    # 16-23 organs (accordions and harmonica are moved to winds below)
    "guitar",   # 24-31 guitars
    "bass",     # 32-39 basses
    "strings",  # 40-47 strings (harp and timpani are moved below)
    "strings",  # 48-55 ensembles (choirs to voice, orchestra hit to synth)
    "brass",    # 56-63 brass
    "winds",    # 64-71 reeds
    "winds",    # 72-79 pipes
    "synth",    # 80-87 synth leads
    "synth",    # 88-95 synth pads
    "synth",    # 96-103 synth effects
    "guitar",   # 104-111 ethnic (plucked ones stay, others moved below)
    "harp",     # 112-119 pitched percussion: struck and decaying like harp and mallets
    "synth",    # 120-127 sound effects
)
_EXCEPTIONS = {
    8: "piano",     # Celesta: a keyboard
    21: "winds",    # Accordion
    22: "winds",    # Harmonica
    23: "winds",    # Tango Accordion
    46: "harp",     # Orchestral Harp
    47: "harp",     # Timpani: pitched and struck
    52: "voice",    # Choir Aahs
    53: "voice",    # Voice Oohs
    54: "voice",    # Synth Voice
    55: "synth",    # Orchestra Hit
    107: "harp",    # Koto
    108: "harp",    # Kalimba
    109: "winds",   # Bagpipe
    110: "strings",  # Fiddle
    111: "winds",   # Shanai
}

#: PROGRAM_FAMILY[program] is the family id of a GM program (0-127) on a melodic channel.
PROGRAM_FAMILY: np.ndarray = np.array(
    [FAMILY_ID[_EXCEPTIONS.get(p, _GROUP_FAMILY[p // 8])] for p in range(128)], dtype=np.uint8
)

#: GM program names, for the table in `musenet instruments` and the README.
GM_PROGRAM_NAMES: tuple[str, ...] = (
    "Acoustic Grand Piano", "Bright Acoustic Piano", "Electric Grand Piano", "Honky-tonk Piano",
    "Electric Piano 1", "Electric Piano 2", "Harpsichord", "Clavinet",
    "Celesta", "Glockenspiel", "Music Box", "Vibraphone",
    "Marimba", "Xylophone", "Tubular Bells", "Dulcimer",
    "Drawbar Organ", "Percussive Organ", "Rock Organ", "Church Organ",
    "Reed Organ", "Accordion", "Harmonica", "Tango Accordion",
    "Acoustic Guitar (nylon)", "Acoustic Guitar (steel)", "Electric Guitar (jazz)",
    "Electric Guitar (clean)", "Electric Guitar (muted)", "Overdriven Guitar",
    "Distortion Guitar", "Guitar Harmonics",
    "Acoustic Bass", "Electric Bass (finger)", "Electric Bass (pick)", "Fretless Bass",
    "Slap Bass 1", "Slap Bass 2", "Synth Bass 1", "Synth Bass 2",
    "Violin", "Viola", "Cello", "Contrabass",
    "Tremolo Strings", "Pizzicato Strings", "Orchestral Harp", "Timpani",
    "String Ensemble 1", "String Ensemble 2", "Synth Strings 1", "Synth Strings 2",
    "Choir Aahs", "Voice Oohs", "Synth Voice", "Orchestra Hit",
    "Trumpet", "Trombone", "Tuba", "Muted Trumpet",
    "French Horn", "Brass Section", "Synth Brass 1", "Synth Brass 2",
    "Soprano Sax", "Alto Sax", "Tenor Sax", "Baritone Sax",
    "Oboe", "English Horn", "Bassoon", "Clarinet",
    "Piccolo", "Flute", "Recorder", "Pan Flute",
    "Blown Bottle", "Shakuhachi", "Whistle", "Ocarina",
    "Lead 1 (square)", "Lead 2 (sawtooth)", "Lead 3 (calliope)", "Lead 4 (chiff)",
    "Lead 5 (charang)", "Lead 6 (voice)", "Lead 7 (fifths)", "Lead 8 (bass + lead)",
    "Pad 1 (new age)", "Pad 2 (warm)", "Pad 3 (polysynth)", "Pad 4 (choir)",
    "Pad 5 (bowed)", "Pad 6 (metallic)", "Pad 7 (halo)", "Pad 8 (sweep)",
    "FX 1 (rain)", "FX 2 (soundtrack)", "FX 3 (crystal)", "FX 4 (atmosphere)",
    "FX 5 (brightness)", "FX 6 (goblin)", "FX 7 (echoes)", "FX 8 (sci-fi)",
    "Sitar", "Banjo", "Shamisen", "Koto",
    "Kalimba", "Bagpipe", "Fiddle", "Shanai",
    "Tinkle Bell", "Agogo", "Steel Drums", "Woodblock",
    "Taiko Drum", "Melodic Tom", "Synth Drum", "Reverse Cymbal",
    "Guitar Fret Noise", "Breath Noise", "Seashore", "Bird Tweet",
    "Telephone Ring", "Helicopter", "Applause", "Gunshot",
)

PITCH_LOW = np.array([PITCH_RANGE[f][0] for f in FAMILIES], dtype=np.int64)
PITCH_HIGH = np.array([PITCH_RANGE[f][1] for f in FAMILIES], dtype=np.int64)


def family_of_program(program: int, is_drum: bool = False) -> int:
    """Family id of a GM program (0-127); channel-10 tracks are drums whatever their program."""
    return DRUMS if is_drum else int(PROGRAM_FAMILY[program])


def family_table(markdown: bool = False) -> str:
    """The family table: each family, its pitch range, what it is written as, its GM programs."""
    rows = []
    for fid, name in enumerate(FAMILIES):
        lo, hi = PITCH_RANGE[name]
        if fid == DRUMS:
            written, programs = "channel-10 kit", "every track on MIDI channel 10, whatever its program"
        else:
            rep = REPRESENTATIVE_PROGRAM[name]
            written = f"{rep} {GM_PROGRAM_NAMES[rep]}"
            programs = ", ".join(f"{p} {GM_PROGRAM_NAMES[p]}" for p in np.flatnonzero(PROGRAM_FAMILY == fid))
        rows.append((name, f"{lo}-{hi}", written, programs))
    if markdown:
        lines = ["| family | pitches | written back as | General MIDI programs (0-based) |", "|---|---|---|---|"]
        return "\n".join(lines + [f"| {' | '.join(row)} |" for row in rows])
    return "\n".join(f"{n:8s} pitches {r:7s} written as {w}\n         programs: {p}" for n, r, w, p in rows)
