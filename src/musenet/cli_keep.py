"""`musenet accompany` and `musenet infill`: composing around a user's own music."""

from __future__ import annotations

import argparse

from .cli import add_composing_options, check_wav, comma_list, print_pieces, sampling_fields
from .errors import MuseNetError
from .instruments import FAMILIES
from .settings import DEFAULT_HARMONY


def _sampling(args: argparse.Namespace) -> dict:
    return {"style": args.style, **sampling_fields(args), "seed": args.seed, "candidates": args.candidates}


def _write(args, composer, pieces, task: dict) -> None:
    from .composer import write_pieces

    model = composer.model_label
    paths = write_pieces(pieces, args.out, pieces[0].settings, model, prompt=args.song, wav=args.wav, png=args.png,
                         soundfont=args.soundfont, stem=task["task"], task=task)
    print_pieces(paths, pieces)


def _cmd_accompany(args: argparse.Namespace) -> None:
    from .composer import Composer
    from .harmoniser import chord_list

    keep, add = comma_list(args.keep), comma_list(args.add)
    if not keep or not add:
        raise MuseNetError("give the parts to keep (--keep) and the families to add (--add)")
    composer = Composer.load(args.model, precision=args.precision, compiled=args.compiled)
    check_wav(args)
    pieces = composer.accompany(args.song, keep, add, rank=args.rank, progress=True, seconds=args.seconds,
                                hints=not args.no_hints, beside=not args.in_sequence, harmony=args.harmony,
                                chords=chord_list(args.chords) if args.chords else None, **_sampling(args))
    _write(args, composer, pieces, {"task": "accompany", "keep": keep, "add": add,
                                    "harmony": composer.harmony(args.harmony, bool(args.chords)),
                                    "chords": args.chords,
                                    "hints": composer.reads_hints and not args.no_hints,
                                    "beside": composer.reads_beside and not args.in_sequence})


def _cmd_infill(args: argparse.Namespace) -> None:
    from .composer import Composer
    from .harmoniser import chord_list
    from .song import bars_to_seconds

    if args.bars:
        if args.start is not None or args.stop is not None:
            raise MuseNetError("give --bars or --from/--to, not both")
        try:
            first, last = (int(x) for x in args.bars.split("-"))
        except ValueError:
            raise MuseNetError(f"--bars {args.bars!r}: give FIRST-LAST, e.g. 9-16") from None
        start, stop = bars_to_seconds(args.song, first, last)
    elif args.start is None or args.stop is None:
        raise MuseNetError("give the span to rewrite: --from S --to S (seconds) or --bars FIRST-LAST")
    else:
        start, stop = args.start, args.stop
    composer = Composer.load(args.model, precision=args.precision, compiled=args.compiled)
    check_wav(args)
    chords = chord_list(args.chords) if args.chords else None
    pieces = composer.infill(args.song, start, stop, comma_list(args.instruments), rank=not args.no_rank, progress=True,
                             hints=not args.no_hints, chords=chords, harmony=args.harmony, **_sampling(args))
    task = {"task": "infill", "from": round(start, 3), "to": round(stop, 3),
            "hints": composer.reads_hints and not args.no_hints}
    if chords is not None:
        task |= {"chords": args.chords, "harmony": composer.harmony(args.harmony, True)}
    _write(args, composer, pieces, task)


def add_keep_commands(commands) -> None:
    """accompany and infill."""
    accompany = commands.add_parser(
        "accompany", help="keep parts of a song note for note and compose new parts around them",
        description="Keep the parts --keep of SONG.mid exactly (every note: pitch, onset, duration, velocity) and "
        "compose the families --add around them for the whole song, in time with them. Writes "
        "OUT/accompany-N.mid with a JSON sidecar.",
    )
    accompany.add_argument("song", metavar="SONG.mid", help="the song whose parts are kept")
    accompany.add_argument("--keep", required=True, metavar="PART,...",
                           help="parts to keep: families (voice), track names (Melody) or track numbers (0 is the "
                           "first track); an unknown name lists the song's tracks")
    accompany.add_argument("--add", required=True, metavar="A,B,...",
                           help=f"families to compose, from: {', '.join(FAMILIES)}")
    accompany.add_argument("--style", help="a style the model knows (musenet styles lists them)")
    accompany.add_argument("--seconds", type=float, help="how much of the song (default: all of it)")
    accompany.add_argument("--rank", action="store_true",
                           help="candidates best first: by how likely the model finds the kept parts beside each "
                           "(the sidecar's `fit`)")
    accompany.add_argument("--no-hints", action="store_true",
                           help="do not let the model read the kept parts ahead (a model that learnt hints does by "
                           "default); it then meets each kept note as it comes")
    accompany.add_argument("--in-sequence", action="store_true",
                           help="put the kept melodic parts' notes in the token sequence between the model's own, "
                           "as a model without the side channel reads them (one that learnt it, training option "
                           "kept_channel, reads them beside the sequence by default)")
    accompany.add_argument("--harmony", type=float, metavar="S",
                           help="how strongly the added parts lean towards the chord tones the model's harmoniser "
                           f"hears in the kept parts: 0 not at all; default {DEFAULT_HARMONY:g} where the model has a "
                           "harmoniser (the bundled one does; `musenet harmoniser` fits one) or --chords, else 0")
    accompany.add_argument("--chords", metavar="'C G Am F'",
                           help="chord symbols, one a bar (the song's time signature), repeated to the end: the "
                           "added parts lean towards these chords instead of the harmoniser's (N: no chord there)")
    add_composing_options(accompany)
    accompany.set_defaults(run=_cmd_accompany)

    infill = commands.add_parser(
        "infill", help="rewrite a span of a song: what comes before and after stays note for note",
        description="Keep SONG.mid before --from and from --to on exactly, and compose the span between anew "
        "(--bars 9-16 reads bars from the song's time signature). With several --candidates they come best "
        "first: ranked by how likely the model finds the 8 s after the span, given each new middle (the "
        "sidecar's `fit`). Writes OUT/infill-N.mid with a JSON sidecar.",
    )
    infill.add_argument("song", metavar="SONG.mid", help="the song to rewrite a span of")
    infill.add_argument("--from", dest="start", type=float, metavar="S", help="start of the span, in seconds")
    infill.add_argument("--to", dest="stop", type=float, metavar="S", help="end of the span, in seconds")
    infill.add_argument("--bars", metavar="FIRST-LAST", help="the span as bars, from 1, both included (e.g. 9-16)")
    infill.add_argument("--instruments", metavar="A,B,...",
                        help="families the new span may use (default: those playing in the span)")
    infill.add_argument("--style", help="a style the model knows (musenet styles lists them)")
    infill.add_argument("--no-rank", action="store_true", help="keep the candidates in the order they were drawn")
    infill.add_argument("--no-hints", action="store_true",
                        help="do not let the model read the music after the span first (a model that learnt hints "
                        "does by default)")
    infill.add_argument("--chords", metavar="'C G Am F'",
                        help="chord symbols, one a bar of the song from its start, repeated: the new span leans "
                        "towards them (N: no chord there)")
    infill.add_argument("--harmony", type=float, metavar="S",
                        help=f"how strongly it leans towards --chords: 0 not at all (default {DEFAULT_HARMONY:g})")
    add_composing_options(infill, candidates=4)
    infill.set_defaults(run=_cmd_infill)
