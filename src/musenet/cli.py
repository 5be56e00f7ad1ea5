"""The `musenet` command: a thin layer of argparse over the modules."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import MuseNetError
from .instruments import FAMILIES
from .settings import DEFAULT_GUIDANCE, DEFAULT_HARMONY, NUCLEUS_MODES
from .version import __version__
from .vocab import INSTANT_ORDERS, TIME_MODES


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
    print(f"vocabulary v{vocab.version}, time mode {vocab.time_mode}: {vocab.size} tokens")
    for name, start, stop in vocab.blocks():
        if stop > start:
            print(f"  {name:32s} {stop - start:5d}  ids {start}-{stop - 1}  e.g. {vocab.names[start]}")


def _cmd_data_build(args: argparse.Namespace) -> None:
    from .build import build

    styles = [s.strip() for s in args.styles.split(",") if s.strip()] if args.styles else None
    source = args.source[0] if len(args.source) == 1 else args.source
    summary = build(source, args.out, styles=styles, limit=args.limit, manifest=args.manifest,
                    time_mode=args.time, workers=args.workers, instant_order=args.order)
    counts = summary["counts"]
    print(f"built {args.out}: {counts['pieces']} pieces, {counts['notes']:,} notes, {counts['tokens']:,} tokens, "
          f"{counts['hours']:.1f} hours in {summary['build_seconds']:.0f} s; split {counts['by_split']}")
    if counts["failed"] or counts["duplicates"]:
        print(f"skipped {counts['failed']} that failed and {counts['duplicates']} duplicates: "
              f"see {Path(args.out) / 'failures.log'}")


def _cmd_data_stats(args: argparse.Namespace) -> None:
    from .dataset import Dataset

    print(Dataset(args.dir, split=None).style_table())


def _cmd_data_show(args: argparse.Namespace) -> None:
    import numpy as np

    from .dataset import Dataset
    from .vocab import to_text

    data = Dataset(args.dir, split=args.split)
    window, start = data.random_window(np.random.default_rng(args.seed), args.length, args.style)
    row = window.piece
    print(f"# {data.index['source'][row]} ({data.style_of(row)}), {len(window.tokens)} tokens from {start}")
    print(to_text(window.tokens, data.vocab))


def _cmd_train(args: argparse.Namespace) -> None:
    from .train import train

    records = train(args.data, args.config, args.out, max_steps=args.max_steps, resume=args.resume,
                    init=args.init, minutes=args.minutes)
    evals = [r for r in records if "bits_per_note" in r]
    if evals:
        last = evals[-1]
        print(f"step {last['step']}: valid loss {last['valid_loss']:.4f} nats/token, "
              f"{last['bits_per_note']:.3f} bits per note; checkpoints in {args.out}")


def _cmd_generate(args: argparse.Namespace) -> None:
    from .composer import Composer, write_pieces
    from .settings import Settings

    if args.prompt_notes is not None and args.prompt_seconds is not None:
        raise MuseNetError("give --prompt-notes or --prompt-seconds, not both")
    if (args.prompt_notes is not None or args.prompt_seconds is not None) and not args.prompt:
        raise MuseNetError("--prompt-notes and --prompt-seconds need --prompt FILE.mid")
    instruments = comma_list(args.instruments)
    if instruments == ["any"]:
        instruments = "any"
    settings = Settings(
        style=args.style, instruments=instruments, seconds=args.seconds,
        **sampling_fields(args), seed=args.seed, candidates=args.candidates,
        instrument_mode=args.instrument_mode, prompt_notes=args.prompt_notes, prompt_seconds=args.prompt_seconds,
        max_family_silence=args.max_family_silence,
    )
    composer = Composer.load(args.model, precision=args.precision, compiled=args.compiled)
    composer.check(settings)
    check_wav(args)
    from .harmoniser import chord_list

    chords = chord_list(args.chords) if args.chords else None
    pieces = composer.generate(prompt=args.prompt, settings=settings, progress=True, keep=args.keep, chords=chords,
                               harmony=args.harmony)
    model = composer.model_label
    task = None if chords is None else {"task": "generate", "chords": args.chords,
                                        "harmony": composer.harmony(args.harmony, True)}
    paths = write_pieces(pieces, args.out, settings, model, prompt=args.prompt, wav=args.wav,
                         png=args.png, soundfont=args.soundfont, task=task)
    print_pieces(paths, pieces)


def _cmd_compile(args: argparse.Namespace) -> None:
    from .composer import Composer
    from .kernels import cache_dir

    composer = Composer.load(args.model, precision=args.precision, compiled="on")
    if composer.sampler.decoder.kernel is None:
        raise MuseNetError("no compiled step for this model on this machine (the reason is above); composing "
                           "still works, without it")
    print(f"compiled: {composer.model_label}; packages in {cache_dir()}")


def _cmd_styles(args: argparse.Namespace) -> None:
    from .composer import Composer
    from .corpus.styles import style_description

    styles = Composer.load(args.model).styles if args.model or _has_bundled() else None
    if styles is None:
        from .vocab import DEFAULT_STYLES as styles
    for style in styles:
        print(f"{style:18s} {style_description(style)}")


def _cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate import run_eval

    report = run_eval(args.model, args.data, args.out, pieces_per_style=args.pieces_per_style, seconds=args.seconds,
                      long_pieces=args.long_pieces, long_seconds=args.long_seconds, split=args.split, seed=args.seed,
                      max_tokens=args.max_tokens, threads=args.threads, band=args.band, corpora=args.corpora,
                      prompts=args.prompts, band_requests=args.band_requests, critic_draws=args.critic_draws,
                      sampling=sampling_fields(args))
    for row in report["headline"]:
        met = "" if row["met"] is None else "  (met)" if row["met"] else "  (NOT met)"
        value = row["value"]
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        print(f"{row['metric']:58s} {shown:>10s}  {row['target']}{met}")
    print(f"wrote {Path(args.out) / 'report.md'}, report.json and {len(report['images'])} plots")


def _cmd_serve(args: argparse.Namespace) -> None:
    try:
        import uvicorn

        from .server import create_app
    except ImportError as err:
        raise MuseNetError(f"musenet serve needs {err.name}; pip install fastapi uvicorn fastapi-offline") from None
    from .composer import Composer

    composer = Composer.load(args.model, compiled=args.compiled)
    app = create_app(composer=composer, workers=args.workers, queue_size=args.queue)
    print(f"musenet: composing at http://{args.host}:{args.port}/ (API docs at /docs); Ctrl-C stops")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def _has_bundled() -> bool:
    from .composer import bundled_model_path

    return bundled_model_path() is not None


def _cmd_export(args: argparse.Namespace) -> None:
    import torch

    from .checkpoint import export_model

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    path = export_model(args.model, args.out, dtype)
    size = (path / "model.safetensors").stat().st_size
    print(f"wrote {path}: {size / 1e6:.1f} MB of {args.dtype} weights")


def _cmd_harmoniser(args: argparse.Namespace) -> None:
    from .checkpoint import resolve
    from .harmoniser import fit

    if args.epochs < 1:
        raise MuseNetError("--epochs must be at least 1")
    directory = resolve(args.model)
    harmoniser, trained = fit(args.corpora, args.epochs, args.seed)
    path = harmoniser.save(directory, trained)
    print(f"wrote {path}: {trained['train_beats']:,} train beats, {trained['seconds']:.0f} s")
    for split in ("valid", "test"):
        found = trained[split]
        print(f"  {split}: {found['bits_per_class']:.3f} bits a pitch class, chord tones given "
              f"{found['p_tones']:.2f} against {found['p_others']:.2f}, the 3 likeliest all chord tones in "
              f"{found['top3_all_tones']:.1%} of {found['beats']:,} beats")


def _cmd_critic(args: argparse.Namespace) -> None:
    from .checkpoint import resolve
    from .composer import Composer
    from .critic import train_critic

    if args.per_style < 2:
        raise MuseNetError("--per-style must be at least 2")
    composer = Composer.load(args.model)
    critic = train_critic(composer, args.data, args.per_style, args.seed)
    path = critic.save(resolve(args.model))
    held = critic.trained["held_out"]
    print(f"wrote {path}: held-out accuracy {held['accuracy']:.3f} over {held['pieces']} openings "
          f"(train {critic.trained['train_accuracy']:.3f}; {critic.trained['seconds']:.0f} s)")
    for style, accuracy in held["by_style"].items():
        print(f"  {style:24s} {accuracy:.3f}")


def build_parser() -> argparse.ArgumentParser:
    """The `musenet` command and its sub-commands, a function per group."""
    parser = argparse.ArgumentParser(
        prog="musenet",
        description="An open MuseNet: a transformer that composes multi-instrument music, token by token. "
        "Read and write MuseNet's tokens, build training sets, train, compose, evaluate, and serve the "
        "co-composer page.",
    )
    parser.add_argument("--version", action="version", version=f"musenet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from .cli_keep import add_keep_commands

    for add in (add_token_commands, add_data_commands, add_train_commands, add_generate_command,
                add_keep_commands, add_serve_commands, add_eval_command):
        add(commands)
    return parser


def add_token_commands(commands) -> None:
    """tokens, instruments, vocab: the encoding."""
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


def add_data_commands(commands) -> None:
    """data build / stats / show."""
    data = commands.add_parser("data", help="build a training set (music21's corpus or a MIDI folder); inspect it")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    build = data_commands.add_parser(
        "build", help="convert a source of music into token shards",
        description="Convert music21's bundled corpus (--source music21), POP909 (with band versions derived from "
        "it: pop909,band:DIR), the Groove MIDI Dataset (groove:DIR) or a folder of MIDI files (style from "
        "the first sub-folder, or --manifest) into token shards, an index, vocab.json and manifest.json in --out; "
        "several --source make one dataset. "
        "Parallel, cached by content hash (a re-run resumes), failures logged in failures.log.",
    )
    build.add_argument("--source", required=True, action="append", metavar="SOURCE",
                       help="music21, pop909[,versions][,band[=bass+chords+lead+drums]][,bands=N][,melody]:DIR, "
                       "groove[,beat|,fill]:DIR, or a folder of MIDI files; repeat it to build one dataset "
                       "from several")
    build.add_argument("--out", required=True, metavar="DIR", help="where the dataset is written")
    build.add_argument("--styles", help="only these styles, comma-separated (see musenet styles)")
    build.add_argument("--limit", type=int, metavar="N", help="the first N files or works of each style only")
    build.add_argument("--manifest", metavar="CSV", help="a path,style CSV giving each MIDI file's style")
    build.add_argument("--time", choices=TIME_MODES, default="beat", help="time mode of the tokens")
    build.add_argument("--order", choices=INSTANT_ORDERS, default="low-first",
                       help="the events of one instant by pitch: the lowest first (default; the bundled model's "
                       "order) or the highest first, the melody before the chord under it (README, design study)")
    build.add_argument("--workers", type=int, help="parallel worker processes (default: one per core)")
    build.set_defaults(run=_cmd_data_build)
    stats = data_commands.add_parser("stats", help="per-style table of a built dataset")
    stats.add_argument("dir", metavar="DIR")
    stats.set_defaults(run=_cmd_data_stats)
    show = data_commands.add_parser("show", help="print one training window in the text form")
    show.add_argument("dir", metavar="DIR")
    show.add_argument("--style", help="a piece of this style")
    show.add_argument("--split", choices=("train", "valid", "test"), default="train")
    show.add_argument("--length", type=int, default=128, help="window length in tokens")
    show.add_argument("--seed", type=int, default=0)
    show.set_defaults(run=_cmd_data_show)


def add_train_commands(commands) -> None:
    """train and export."""
    train = commands.add_parser(
        "train", help="train a model on a built dataset (one CPU, one GPU, or many with torchrun)",
        description="Train the MuseNet transformer on a dataset from `musenet data build`. Checkpoints go to "
        "RUN_DIR/checkpoints (the newest named in RUN_DIR/latest), metrics to RUN_DIR/metrics.jsonl. For many "
        "GPUs or machines: torchrun --nproc-per-node N -m musenet train ... (the same arguments).",
    )
    train.add_argument("--data", required=True, metavar="DIR", help="a built dataset")
    train.add_argument("--config", default="small",
                       help="tiny, small, base, musenet, or a TOML file with [model] and [train] tables")
    train.add_argument("--out", required=True, metavar="RUN_DIR", help="where checkpoints and metrics go")
    train.add_argument("--max-steps", type=int, metavar="N", help="stop after N optimizer steps")
    train.add_argument("--minutes", type=float, metavar="M",
                       help="a wall-clock budget: the run times its steps and sets its last one so that the "
                       "learning-rate schedule ends within M minutes (never past --max-steps or the config's)")
    train.add_argument("--resume", action="store_true", help="continue from RUN_DIR's latest checkpoint")
    train.add_argument("--init", metavar="MODEL_DIR",
                       help="start from this model's weights instead of random ones (fine-tuning); its shape "
                       "replaces the config's [model] (whose dropout, attention_dropout and note_factors still "
                       "apply) and its vocabulary must be the data's")
    train.set_defaults(run=_cmd_train)

    export = commands.add_parser("export", help="save a checkpoint's weights small (bf16) for shipping")
    export.add_argument("model", metavar="RUN_OR_CHECKPOINT", help="a run directory or checkpoint")
    export.add_argument("--out", required=True, metavar="DIR", help="where the exported model goes")
    export.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), default="bf16")
    export.set_defaults(run=_cmd_export)

    critic = commands.add_parser(
        "critic", help="train a model's inner critic, which ranks candidates (generate --keep)",
        description="Train the critic of MODEL_DIR (critic.py): the model's own view of the openings of real "
        "pieces (the train split of DIR) against openings it composes with the same style, families and length; "
        "then its accuracy on the valid split against fresh generations. Saved as MODEL_DIR/critic.json.",
    )
    critic.add_argument("model", metavar="MODEL_DIR", help="a checkpoint or exported model (written into)")
    critic.add_argument("--data", required=True, metavar="DIR", help="the model's training build")
    critic.add_argument("--per-style", type=int, default=24, metavar="N",
                        help="real and generated openings per style, each split (default 24)")
    critic.add_argument("--seed", type=int, default=0)
    critic.set_defaults(run=_cmd_critic)

    harmoniser = commands.add_parser(
        "harmoniser", help="fit the harmoniser that leans accompaniments towards a melody's chords",
        description="Fit a harmoniser (harmoniser.py: for each beat of a melody, the probability that each pitch "
        "class is in the chord) on the POP909 songs of the train split under DIR and their annotated chords, "
        "score it on the valid and test splits, and save it as MODEL_DIR/harmoniser.safetensors, where "
        "`musenet accompany` finds it (--harmony). About 1.5 minutes on 2 CPU cores.",
    )
    harmoniser.add_argument("model", metavar="MODEL_DIR", help="a checkpoint or exported model (written into)")
    harmoniser.add_argument("--corpora", required=True, metavar="DIR",
                            help="the folder holding pop909/ (or POP909 itself)")
    harmoniser.add_argument("--epochs", type=int, default=6, metavar="N", help="passes over the train beats (6)")
    harmoniser.add_argument("--seed", type=int, default=0)
    harmoniser.set_defaults(run=_cmd_harmoniser)


def add_generate_command(commands) -> None:
    """generate: composing from the command line."""
    generate = commands.add_parser(
        "generate", help="compose new pieces in a style, for chosen instruments, from an optional prompt",
        description="Compose --candidates pieces of about --seconds each and write OUT/piece-N.mid with a JSON "
        "sidecar of every setting (and .wav / .png on request). The same inputs and --seed give the same files.",
    )
    generate.add_argument("--style", help="a style the model knows (musenet styles lists them)")
    generate.add_argument("--instruments", metavar="A,B,...",
                          help=f"instrument families, from: {', '.join(FAMILIES)}; or 'any' (default: the "
                          "prompt's families, else the style's usual ensemble, e.g. bach: voice)")
    generate.add_argument("--instrument-mode", choices=("strict", "soft"), default="strict",
                          help="strict: only the chosen families play, and every one of them does (default); "
                          "soft: they are only suggested, as in MuseNet")
    generate.add_argument("--max-family-silence", type=float, default=8.0, metavar="S",
                          help="strict mode: a chosen family silent for S seconds plays next, the model choosing "
                          "its note; the first time 2 s in (default 8; 0: off, the model alone decides)")
    generate.add_argument("--keep", type=int, metavar="K",
                          help="keep the K of the --candidates the model's critic likes best, best first (the "
                          "sidecar records each one's critic score); default: every candidate, in the order drawn")
    generate.add_argument("--prompt", metavar="FILE.mid", help="continue this piece (its opening)")
    generate.add_argument("--chords", metavar="'C G Am F'",
                          help="chord symbols, one a bar (4 beats, or the prompt's time signature) from the piece's "
                          "start, repeated to its end: the melodic parts lean towards them (N: no chord there)")
    generate.add_argument("--harmony", type=float, metavar="S",
                          help=f"how strongly they lean towards --chords: 0 not at all (default {DEFAULT_HARMONY:g})")
    generate.add_argument("--prompt-notes", type=int, metavar="N", help="use only the prompt's first N notes")
    generate.add_argument("--prompt-seconds", type=float, metavar="S", help="use only the prompt's first S seconds")
    generate.add_argument("--seconds", type=float, default=60.0, help="length of each whole piece, the prompt "
                          "included (default 60; a prompt that long is refused)")
    add_composing_options(generate)
    generate.set_defaults(run=_cmd_generate)


def comma_list(text: str | None) -> list[str] | None:
    """`a, b,c` -> ["a", "b", "c"]; None for no text."""
    return [word.strip() for word in text.split(",") if word.strip()] if text else None


def add_compiled_option(command, default: str = "auto") -> None:
    command.add_argument("--compiled", choices=("auto", "on", "off"), default=default,
                         help="the compiled decode step and state update (C++ built for this CPU, fewer "
                         "milliseconds a token; README: composing speed): on builds them if need be (about 30 s, "
                         "once per model and machine, needs a C++ compiler); auto uses them once built; off never "
                         f"(default {default})")


def add_sampling_options(command) -> None:
    """How each token is drawn: temperature, top-k, top-p and the nucleus's grouping."""
    command.add_argument("--temperature", type=float, default=1.0,
                         help="creativity: higher is wilder (0.05-2, default 1)")
    command.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest tokens (0: off)")
    command.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    command.add_argument("--min-p", type=float, default=0.0,
                         help="drop every token less likely than this share of the likeliest one (within the "
                         "family drawn, with --nucleus family; 0: off, the default)")
    command.add_argument("--nucleus", choices=NUCLEUS_MODES, default="all",
                         help="family: draw the family of the next note (or a wait) at the model's "
                         "own odds, then take the nucleus within it, so a family whose notes are each unlikely "
                         "can still come in; all (default): one nucleus over every token")
    command.add_argument("--guidance", type=float, default=None, metavar="W",
                         help="classifier-free guidance: above 1 the style and instruments asked for weigh more "
                         "than the model alone gives them, at two passes a token (needs a model trained with "
                         f"unconditioned headers, as the bundled one); 1: off; default {DEFAULT_GUIDANCE:g} for "
                         "such a model, else off")


def sampling_fields(args: argparse.Namespace) -> dict:
    """The `Settings` fields `add_sampling_options` sets."""
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "min_p": args.min_p,
            "nucleus": args.nucleus, "guidance": args.guidance}


def add_composing_options(command, candidates: int = 1) -> None:
    """The options every composing command shares: sampling, the model, the files written."""
    add_sampling_options(command)
    command.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    command.add_argument("--candidates", type=int, default=candidates,
                         help=f"pieces to compose at once (batched; default {candidates})")
    command.add_argument("--precision", choices=("auto", "float32", "int8"), default="auto",
                         help="int8: 8-bit weights on a CPU, 2-3x faster per token with the same next-token "
                         "distribution within a KL of 0.001 nats (README: composing speed); auto (default): int8 "
                         "on a CPU, float32 on a GPU")
    add_compiled_option(command)
    command.add_argument("--model", metavar="DIR", help="a checkpoint or run directory (default: the bundled "
                         "model)")
    command.add_argument("--out", default="out", metavar="DIR", help="output folder (default: out)")
    command.add_argument("--wav", action="store_true", help="also render audio with FluidSynth")
    command.add_argument("--png", action="store_true", help="also draw a piano roll")
    command.add_argument("--soundfont", metavar="FILE.sf2", help="General MIDI SoundFont for --wav")


def print_pieces(paths, pieces) -> None:
    """A line per written piece: path, length, notes, families, the extra files."""
    for path, piece in zip(paths, pieces, strict=True):
        extras = [p.name for p in (path.with_suffix(".wav"), path.with_suffix(".png")) if p.exists()]
        print(f"{path}  {piece.seconds:5.1f} s, {len(piece.table)} notes, {', '.join(piece.families())}"
              + (f"  (+ {', '.join(extras)})" if extras else ""))


def check_wav(args: argparse.Namespace) -> None:
    """With --wav, fail before composing (no FluidSynth, no SoundFont), not after."""
    if args.wav:
        from .render import find_soundfont, fluidsynth_program

        fluidsynth_program()
        find_soundfont(args.soundfont)


def add_serve_commands(commands) -> None:
    """compile, styles and serve."""
    compile_ = commands.add_parser(
        "compile", help="build the compiled decoder for this CPU once; composing uses it from then on",
        description="Build a model's compiled decode step and state update (kernels.py: C++ for this CPU, made by "
        "PyTorch's AOTInductor; about 30 s, a C++ compiler needed) and the sampler's chooser (choose.py, C) into "
        "~/.cache/musenet/kernels "
        "($MUSENET_CACHE/kernels), so that generate, accompany, infill and serve decode through them by default "
        "(2-3x fewer milliseconds a token). make setup runs it for the bundled model; found again, it returns "
        "at once.")
    compile_.add_argument("--model", metavar="DIR", help="a checkpoint or run directory (default: the bundled model)")
    compile_.add_argument("--precision", choices=("auto", "float32", "int8"), default="auto",
                          help="the weights to compile for, as generate's option (default auto: int8 on a CPU)")
    compile_.set_defaults(run=_cmd_compile)

    styles = commands.add_parser("styles", help="list the styles a model knows, a line each")
    styles.add_argument("--model", metavar="DIR", help="a checkpoint or run directory (default: the bundled model)")
    styles.set_defaults(run=_cmd_styles)

    serve = commands.add_parser(
        "serve", help="the co-composer: a web page to compose with the model, and its JSON API",
        description="Serve the co-composer page and JSON API (OpenAPI docs at /docs): pick a style, instruments "
        "and an intro, choose among candidate continuations, go on from there, download MIDI and WAV.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine "
                       "only; 0.0.0.0 for every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--model", metavar="DIR", help="a checkpoint or run directory (default: the bundled model)")
    serve.add_argument("--workers", type=int, default=1, help="pieces composed at once (default 1)")
    serve.add_argument("--queue", type=int, default=8, help="requests that may wait; more get 503 (default 8)")
    add_compiled_option(serve, default="on")
    serve.set_defaults(run=_cmd_serve)


def add_eval_command(commands) -> None:
    """eval: the evaluation report."""
    evaluation = commands.add_parser(
        "eval", help="evaluate a model: bits per note vs a 5-gram, music statistics, style and instrument "
        "adherence, four-minute health",
        description="Write REPORT_DIR/report.md, report.json and PNG plots: held-out bits per note against an "
        "interpolated Kneser-Ney 5-gram, music statistics of generated vs real pieces per style, a style "
        "classifier's verdict on generated pieces, strict and soft instrument adherence, and the health of "
        "four-minute pieces (longest silence, stuck notes, repeated bars).",
    )
    evaluation.add_argument("--model", required=True, metavar="DIR", help="a checkpoint or run directory")
    evaluation.add_argument("--data", required=True, metavar="DIR", help="the built dataset it was trained on")
    evaluation.add_argument("--out", required=True, metavar="REPORT_DIR", help="where the report goes")
    evaluation.add_argument("--pieces-per-style", type=int, default=8, metavar="N",
                            help="generated pieces per style (default 8; soft mode composes half as many)")
    evaluation.add_argument("--seconds", type=float, default=30.0, help="length of those pieces (default 30)")
    evaluation.add_argument("--long-pieces", type=int, default=2, metavar="N",
                            help="four-minute pieces for the health checks (default 2; 0 skips them)")
    evaluation.add_argument("--long-seconds", type=float, default=240.0, help="length of those (default 240)")
    evaluation.add_argument("--split", choices=("valid", "test"), default="test",
                            help="held-out split (default test)")
    evaluation.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    evaluation.add_argument("--max-tokens", type=int, default=200_000, metavar="N",
                            help="score held-out pieces until N tokens (default 200000; 0: the whole split)")
    evaluation.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch (default: torch's)")
    evaluation.add_argument("--band", action="store_true",
                            help="also measure playing as a band: instrument coverage, drums, bass in the chord, "
                            "continuations (implied by --corpora and --prompts)")
    evaluation.add_argument("--corpora", metavar="DIR", help="with --band: a folder with groove/ and pop909/ "
                            "(e.g. ../shared/corpora): real grooves, bass lines and held-out songs to continue")
    evaluation.add_argument("--prompts", metavar="DIR", help="with --band: MIDI songs to cut at 20 s and continue "
                            "for 30 s (e.g. ../shared/midi/multitrack)")
    evaluation.add_argument("--band-requests", type=int, default=40, metavar="N",
                            help="with --band: instrument coverage requests (default 40)")
    evaluation.add_argument("--critic-draws", type=int, default=16, metavar="N",
                            help="for a model with a critic: per style, draw N candidates twice and judge the "
                            "first 4 drawn against the critic's best 4 (two-sample test, style ratio); 0: skip "
                            "(default 16)")
    add_sampling_options(evaluation)  # for every piece it composes (the critic's comparison keeps the defaults)
    evaluation.set_defaults(run=_cmd_eval)


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
