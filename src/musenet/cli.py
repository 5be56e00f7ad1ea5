"""The `musenet` command: a thin layer of argparse over the modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import MuseNetError
from .vocab import TIME_MODES


def _cmd_tokens(args: argparse.Namespace) -> None:
    from .encoding import decode_tokens, encode
    from .notes import write_midi
    from .vocab import default_vocab, from_text, to_text

    vocab = default_vocab(args.time)
    if args.decode:
        if not args.output:
            raise MuseNetError("--decode needs -o OUT.mid")
        source = sys.stdin if args.file == "-" else None
        try:
            text = source.read() if source else Path(args.file).read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise MuseNetError(f"{args.file}: cannot read tokens ({err})") from None
        table = decode_tokens(from_text(text, vocab), vocab)
        write_midi(table, args.output)
        print(f"wrote {args.output}: {len(table)} notes")
    else:
        print(to_text(encode(args.file, style=args.style, time_mode=args.time), vocab))


def _cmd_instruments(args: argparse.Namespace) -> None:
    from .instruments import family_table

    print(family_table(markdown=args.markdown))


def _cmd_vocab(args: argparse.Namespace) -> None:
    from .vocab import default_vocab

    vocab = default_vocab(args.time)
    if args.json:
        print(vocab.to_json())
        return
    blocks = [
        ("pad, start, end", 0, vocab.family_offset),
        ("instrument families", vocab.family_offset, vocab.tempo_offset),
        ("tempo buckets", vocab.tempo_offset, vocab.wait_offset),
        ("waits", vocab.wait_offset, vocab.note_offset),
        ("notes (family x pitch x volume)", vocab.note_offset, vocab.style_offset),
        ("styles", vocab.style_offset, vocab.size),
    ]
    print(f"vocabulary v{vocab.version}, time mode {vocab.time_mode}: {vocab.size} tokens")
    for name, start, stop in blocks:
        if stop > start:
            print(f"  {name:32s} {stop - start:5d}  ids {start}-{stop - 1}  e.g. {vocab.names[start]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musenet",
        description="An open MuseNet: MIDI <-> MuseNet tokens, and (later) training and composing.",
    )
    parser.add_argument("--version", action="version", version=f"musenet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tokens = commands.add_parser(
        "tokens",
        help="print a MIDI file as MuseNet tokens, or turn tokens back into MIDI",
        description="Print FILE.mid in MuseNet's text form (e.g. `bach piano start tempo:96 "
        "piano:v80:G4 wait:12 piano:v0:G4 ... end`), or with --decode read that text and write MIDI.",
    )
    tokens.add_argument("file", metavar="FILE", help="a MIDI file; with --decode a text file of tokens (- for stdin)")
    tokens.add_argument("--style", default=None, help="style token to put in the header (default: unknown)")
    tokens.add_argument("--time", choices=TIME_MODES, default="beat",
                        help="beat: 12 steps per quarter note, with tempo tokens; seconds: 10 ms steps")
    tokens.add_argument("--decode", action="store_true", help="read tokens from FILE and write MIDI to -o")
    tokens.add_argument("-o", "--output", metavar="OUT.mid", help="where --decode writes the MIDI file")
    tokens.set_defaults(run=_cmd_tokens)

    instruments = commands.add_parser(
        "instruments", help="print the ten instrument families and the General MIDI programs in each"
    )
    instruments.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    instruments.set_defaults(run=_cmd_instruments)

    vocab = commands.add_parser("vocab", help="print the vocabulary's size and layout")
    vocab.add_argument("--time", choices=TIME_MODES, default="beat", help="which time mode's vocabulary")
    vocab.add_argument("--json", action="store_true", help="print the vocabulary JSON saved beside datasets")
    vocab.set_defaults(run=_cmd_vocab)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except MuseNetError as err:
        print(f"musenet: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("musenet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
