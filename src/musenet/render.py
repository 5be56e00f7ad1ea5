"""Audio and pictures for generated music: SoundFont synthesis with FluidSynth, piano rolls.

`render_wav` writes the MIDI to a temporary file, runs the `fluidsynth` program over it
(fast render to raw float samples: no audio driver, no MIDI driver, no shell), trims
FluidSynth's long silent tail to the piece's length plus a short release, peak-normalises,
and renames the 16-bit WAV into place, so a WAV is written whole or not at all.
`pianoroll_png` draws one bar per note, one colour per instrument family, with matplotlib's
Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import symusic

from .errors import MidiError, MuseNetError
from .files import atomic_output, write_atomic
from .instruments import DRUMS, FAMILIES
from .notes import NoteTable, load_score, source_name, to_score

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Where General MIDI SoundFonts are usually installed, most preferred first. Debian and
#: Ubuntu: fluid-soundfont-gm, timgm6mb-soundfont and musescore-general-soundfont(-small)
#: install the files below /usr/share/sounds and point the default-GM.sf2/.sf3 links at the
#: best one present; Fedora and Arch use /usr/share/soundfonts; FluidSynth's own default
#: (also Homebrew's, under its prefix) is share/soundfonts/default.sf2.
SOUNDFONT_PATHS: tuple[str, ...] = (
    "~/.local/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
    "/usr/share/sounds/sf3/MuseScore_General_Lite.sf3",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf3",
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/FluidR3_GM.sf2",
    "/usr/local/share/soundfonts/FluidR3_GM.sf2",
)
SOUNDFONT_ENV = "MUSENET_SOUNDFONT"
NO_SOUNDFONT = (
    "no General MIDI SoundFont found; install one (Debian/Ubuntu: sudo apt-get install fluidsynth fluid-soundfont-gm;"
    " Fedora: sudo dnf install fluid-soundfont-gm), set MUSENET_SOUNDFONT=FILE.sf2 or pass --soundfont FILE.sf2"
)
NO_FLUIDSYNTH = (
    "the fluidsynth program is not installed; install it (Debian/Ubuntu: sudo apt-get install fluidsynth"
    " fluid-soundfont-gm; Fedora: sudo dnf install fluidsynth; macOS: brew install fluid-synth)"
)

GAIN = 0.5              # FluidSynth's master gain; float output does not clip, and the result is normalised
PEAK = 10 ** (-1 / 20)  # normalise to -1 dBFS
RELEASE_SECONDS = 1.0   # kept after the last note-off: release and reverb, then a short fade
FADE_SECONDS = 0.05
SAMPLE_RATES = (8000, 96000)  # FluidSynth's limits

#: One fixed colour per family (matplotlib's tab10, drums grey), indexed by family id.
FAMILY_COLORS: tuple[str, ...] = (
    "#1f77b4",  # piano: blue
    "#ff7f0e",  # strings: orange
    "#2ca02c",  # winds: green
    "#d62728",  # brass: red
    "#9467bd",  # voice: purple
    "#8c564b",  # harp: brown
    "#e377c2",  # guitar: pink
    "#bcbd22",  # bass: olive
    "#7f7f7f",  # drums: grey
    "#17becf",  # synth: cyan
)


def find_soundfont(explicit: str | Path | None = None) -> Path:
    """The SoundFont to render with: `explicit`, else $MUSENET_SOUNDFONT, else the first of
    SOUNDFONT_PATHS that exists. MuseNetError (one line) when none is found or a named
    file is missing or is not a SoundFont."""
    named = explicit if explicit not in (None, "") else os.environ.get(SOUNDFONT_ENV) or None
    if named is not None:
        path = Path(named).expanduser()
        if not path.is_file():
            origin = "" if explicit not in (None, "") else f" (from ${SOUNDFONT_ENV})"
            raise MuseNetError(f"{path}{origin}: no such SoundFont file")
        _check_soundfont(path)
        return path
    for candidate in SOUNDFONT_PATHS:
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    raise MuseNetError(NO_SOUNDFONT)


def _check_soundfont(path: Path) -> None:
    """A SoundFont (SF2, or SF3 with compressed samples) is a RIFF file of form 'sfbk'."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(12)
    except OSError as err:
        raise MuseNetError(f"{path}: cannot read ({err.strerror or err})") from None
    if head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise MuseNetError(f"{path}: not a SoundFont (.sf2/.sf3) file")


def fluidsynth_program() -> str:
    """Path of the `fluidsynth` program; MuseNetError (one line, how to install) if missing."""
    program = shutil.which("fluidsynth")
    if program is None:
        raise MuseNetError(NO_FLUIDSYNTH)
    return program


def midi_seconds(midi: NoteTable | symusic.Score | bytes | str | Path) -> float:
    """Length in seconds (through the tempo map) of a NoteTable, symusic Score, MIDI bytes or
    path: the time of its last event, normally the last note-off (or pedal release)."""
    if isinstance(midi, NoteTable):
        return midi.end_seconds()
    return float(load_score(midi).to("second").end())


def _midi_source(midi: NoteTable | symusic.Score | bytes | str | Path) -> tuple[bytes, float, str]:
    """(Standard MIDI File bytes, length in seconds, name for messages) of any accepted input."""
    if isinstance(midi, NoteTable):
        if len(midi) == 0:
            raise MidiError("<notes>: no notes to render")
        score, name = to_score(midi), "<notes>"
    else:
        name = source_name(midi)
        score = load_score(midi)
        if score.note_num() == 0:
            raise MidiError(f"{name}: no notes to render")
    return bytes(score.dumps_midi()), float(score.to("second").end()), name


def render_wav(
    midi: NoteTable | symusic.Score | bytes | str | Path,
    out_path: str | Path,
    soundfont: str | Path | None = None,
    sample_rate: int = 44100,
    *,
    release: float = RELEASE_SECONDS,
) -> Path:
    """Synthesise `midi` (NoteTable, symusic Score, MIDI bytes or path) to a 16-bit stereo WAV
    at `out_path` with FluidSynth and a General MIDI SoundFont (see `find_soundfont`).

    FluidSynth renders 32-bit float samples, which are peak-normalised to -1 dBFS (MIDI files
    differ in loudness by 10x or more, and a dense one clips at any fixed gain) and written
    as 16-bit PCM. The WAV lasts the piece's length plus `release` seconds: FluidSynth renders
    2-8 s of near-silent tail after the last note-off, which is cut, with a 50 ms fade. The
    file is written whole or not at all. MuseNetError (one line) when FluidSynth or a
    SoundFont is missing or the render fails; MidiError when the MIDI cannot be read or has
    no notes."""
    if not (SAMPLE_RATES[0] <= int(sample_rate) <= SAMPLE_RATES[1]):
        low, high = SAMPLE_RATES
        raise MuseNetError(f"sample rate {sample_rate} Hz is outside FluidSynth's {low}-{high} Hz")
    program = fluidsynth_program()
    font = find_soundfont(soundfont)
    data, seconds, name = _midi_source(midi)
    out_path = Path(out_path)
    timeout = 60.0 + seconds  # loading the SoundFont, then at least real time (it runs at ~50-100x)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        fd, raw = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".f32")
        os.close(fd)
    except OSError as err:
        raise MuseNetError(f"{out_path}: cannot write ({err.strerror or err})") from None
    raw = Path(raw)
    try:
        with tempfile.TemporaryDirectory(prefix="musenet-render-") as scratch:
            midi_file = Path(scratch) / "input.mid"
            midi_file.write_bytes(data)
            command = [
                program, "-q", "-n", "-i",          # quiet, no MIDI driver, no shell
                "-o", "synth.lock-memory=0",        # mlock fails (and warns) in containers
                "-F", str(raw), "-T", "raw", "-O", "float", "-E", "little",
                "-r", str(int(sample_rate)), "-g", f"{GAIN:g}",
                str(font), str(midi_file),
            ]
            try:
                result = subprocess.run(
                    command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                    errors="replace", timeout=timeout, cwd=scratch,
                )
            except subprocess.TimeoutExpired:
                raise MuseNetError(
                    f"{name}: fluidsynth took over {timeout:.0f} s to render {seconds:.0f} s of music; gave up"
                ) from None
            except OSError as err:
                raise MuseNetError(f"cannot run {program} ({err.strerror or err})") from None
        # FluidSynth exits 0 even when it cannot load the SoundFont or open the output: read its errors.
        lines = [line.strip() for line in (result.stderr + "\n" + result.stdout).splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        if result.returncode != 0 or errors or raw.stat().st_size < 8:
            reason = (errors or lines or [f"exit status {result.returncode}, no audio"])[0]
            raise MuseNetError(f"{name}: fluidsynth failed ({reason})")
        _write_wav(raw, out_path, int(sample_rate), seconds + max(release, 0.0))
    except OSError as err:
        raise MuseNetError(f"{out_path}: cannot write ({err.strerror or err})") from None
    finally:
        raw.unlink(missing_ok=True)
    return out_path


def _write_wav(raw: Path, out_path: Path, rate: int, keep_seconds: float) -> None:
    """FluidSynth's raw float32 stereo samples -> a 16-bit WAV of at most `keep_seconds`
    (fading out the last 50 ms when it cuts), peak-normalised, written to a temporary file
    beside `out_path` and renamed over it."""
    samples = np.memmap(raw, dtype="<f4", mode="r")
    samples = samples[: len(samples) // 2 * 2].reshape(-1, 2)
    keep = min(len(samples), int(round(keep_seconds * rate)))
    fade = min(keep, int(FADE_SECONDS * rate)) if keep < len(samples) else 0
    chunk = 1 << 18
    peak = max((float(np.abs(samples[i:i + chunk]).max()) for i in range(0, keep, chunk)), default=0.0)
    scale = PEAK / peak if peak > 0 else 1.0
    try:
        with atomic_output(out_path) as tmp, wave.open(str(tmp), "wb") as dst:
            dst.setnchannels(2)
            dst.setsampwidth(2)
            dst.setframerate(rate)
            for i in range(0, keep, chunk):
                block = samples[i:min(i + chunk, keep)] * scale
                if fade and i + len(block) > keep - fade:  # the fade lies in this block or spans two
                    frame = np.arange(i, i + len(block))
                    block *= np.clip((keep - frame) / fade, 0.0, 1.0)[:, None]
                dst.writeframes(np.clip(np.round(block * 32767), -32768, 32767).astype("<i2").tobytes())
    finally:
        del samples


def wav_seconds(path: str | Path) -> float:
    """Duration of a PCM WAV file in seconds (frames / sample rate)."""
    try:
        with wave.open(str(path), "rb") as handle:
            return handle.getnframes() / handle.getframerate()
    except (OSError, wave.Error, EOFError) as err:
        raise MuseNetError(f"{path}: not a readable WAV file ({getattr(err, 'strerror', None) or err})") from None


def pianoroll_figure(table: NoteTable, title: str | None = None) -> tuple[Figure, list[str]]:
    """(figure, families drawn): a matplotlib Figure (Agg canvas, not registered with pyplot, so
    nothing to close) of the notes: x = seconds, y = MIDI pitch, one bar per note coloured by
    family, drums as grey ticks, and a legend naming the families present, in family order."""
    Figure = _matplotlib_figure()
    from matplotlib.collections import PolyCollection

    fig = Figure(figsize=(12, 5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    start = table.seconds(table.onset) if len(table) else np.zeros(0)
    end = table.seconds(table.onset + table.duration) if len(table) else np.zeros(0)
    drawn: list[str] = []
    for family in np.unique(table.family):
        rows = table.family == family
        x0, x1, y = start[rows], end[rows], table.pitch[rows].astype(np.float64)
        name, color = FAMILIES[family], FAMILY_COLORS[family]
        if family == DRUMS:
            ax.scatter(x0, y, marker="|", s=100, linewidths=2.0, color=color, label=name, zorder=3)
        else:
            verts = np.stack(
                [np.stack([x0, y - 0.4], 1), np.stack([x1, y - 0.4], 1),
                 np.stack([x1, y + 0.4], 1), np.stack([x0, y + 0.4], 1)], axis=1,
            )
            ax.add_collection(PolyCollection(verts, facecolors=color, edgecolors="none", alpha=0.85, label=name))
        drawn.append(name)
    if len(table):
        low, high = int(table.pitch.min()), int(table.pitch.max())
        span = max(float(end.max()), 1e-3)
        ax.set_xlim(-0.01 * span, 1.01 * span)
        ax.set_ylim(low - 2, high + 2)
        octaves = np.arange((low // 12) * 12, high + 1, 12)
        ax.set_yticks(octaves, [f"{p} C{p // 12 - 1}" for p in octaves])
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False, title="family")
    else:
        ax.set_xlim(0.0, 1.0)
        ax.set_ylim(20, 109)
    ax.set_xlabel("time (seconds)")
    ax.set_ylabel("MIDI pitch")
    ax.grid(True, axis="y", alpha=0.3, linewidth=0.5)
    if title:
        ax.set_title(title)
    return fig, drawn


def pianoroll_png(table: NoteTable, out_path: str | Path, title: str | None = None) -> Path:
    """Draw `table` as a piano roll (see `pianoroll_figure`) to a 1200x500 PNG at `out_path`,
    written whole or not at all."""
    fig, _ = pianoroll_figure(table, title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    out_path = Path(out_path)
    try:
        write_atomic(out_path, buffer.getvalue())
    except OSError as err:
        raise MuseNetError(f"{out_path}: cannot write ({err.strerror or err})") from None
    return out_path


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise MuseNetError("matplotlib is not installed; pip install 'matplotlib>=3.6'") from None
    return Figure
