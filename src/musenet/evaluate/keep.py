"""Accompanying and infilling, measured on held-out music.

- Accompaniment, on POP909 test songs with the melody as `voice` and the bridge and piano
  parts as the accompaniment (`piano`): bits per accompaniment note given the melody, by the
  chain rule (bits of melody and accompaniment together minus bits of the melody alone),
  against the bits of the accompaniment alone; and the share of accompaniment onsets whose
  pitch class is in POP909's annotated chord, real against composed (`Composer.accompany`
  with the melody kept).
- Infilling, on test pieces of every style: bits per note of the real middle given the
  left side; the seams of composed middles (`Composer.infill`): the longest silence around
  each seam against the real piece's there, notes still sounding at the span's end that the
  model struck, and kept notes unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..arrange import in_chord, tones_at
from ..channel import KeptGrid, grid_of_table
from ..corpus.pop909 import MELODY, read_chords, read_song
from ..encoding import encode_notes
from ..errors import MuseNetError
from ..fixed import RING_SECONDS, grid_step
from ..hints import HINT_SHARE, MAX_TAIL, events_only, hint_for, with_hint
from ..instruments import FAMILY_ID
from ..model import ALL_FEATURES
from ..notes import NoteTable
from ..sequence import header_length, hint_mask, sequence_seconds, side_features, window_of
from .harmony import held_out_songs


@torch.no_grad()
def token_bits(model, vocab, tokens: np.ndarray, device, overlap: float = 0.5, hint=None,
               budget: int = 0, allowed: np.ndarray | None = None, kept: KeptGrid | None = None,
               total_seconds: float | None = None) -> np.ndarray:
    """Bits of each token of a sequence after the first (aligned with tokens[1:]) under the
    model: a long sequence in windows (each with the header in front) that overlap by
    `overlap`, each token scored once. With `hint` (steps, tokens: events from the body's
    start) and a `budget`, each window's header holds the hint from where it begins. With
    `allowed` (len(tokens) - 1, vocab; aligned with tokens[1:]), each prediction is
    renormalised over its allowed tokens, as a sampler with those masks draws it. With
    `kept`, every window reads that kept part beside it (`channel.py`). `total_seconds`: the
    piece's length the side features count towards (default: the sequence's own; a piece cut
    short for scoring passes the whole piece's, as composing it does)."""
    context = model.config.context
    head = header_length(tokens, vocab)
    body = context + 1 - head - (budget if hint is not None else 0)
    stride = max(1, int(body * (1 - overlap)))
    if total_seconds is None:
        total_seconds = sequence_seconds(tokens, vocab)
    step = np.cumsum(vocab.tables["wait"][tokens[head:]])  # grid steps after each body token
    parts, start = [], 0
    while True:
        window, start_seconds = window_of(tokens, vocab, head, start, body + head)
        from_step = int(step[start - 1]) if start > 0 else 0
        if hint is not None:
            window = with_hint(window, hint_for(*hint, from_step, vocab, budget), vocab)
        features = side_features(window, vocab, total_seconds, start_seconds, start_step=from_step, kept=kept)
        inputs = torch.from_numpy(window[None, :-1]).to(device)
        feats = {name: torch.from_numpy(features[name][None, :-1]).to(device) for name in ALL_FEATURES}
        logits = model(inputs, feats).float()[0]
        music = np.flatnonzero(~hint_mask(window, vocab))[1:] - 1  # the predictions of the window's own tokens
        if allowed is not None:  # the window's own tokens after the first sit at these places of `tokens`
            own = np.arange(1, len(music) + 1)
            where = np.where(own < head, own, own + start)
            rows = torch.from_numpy(allowed[where - 1]).to(device)
            logits[music] = logits[music].masked_fill(~rows, float("-inf"))
        logp = torch.log_softmax(logits, dim=-1)
        targets = torch.from_numpy(window[1:]).to(device)
        nats = -logp.gather(1, targets[:, None])[:, 0].cpu().numpy()
        nats = nats[music]
        skip = 0 if start == 0 else head - 1 + body - stride
        parts.append(nats[skip:] / np.log(2))
        if start + body >= len(tokens) - head:
            return np.concatenate(parts)
        start += stride


def sampler_masks(tokens: np.ndarray, vocab, families: list[str],
                  kept: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What a sampler composing `families` may write at each place of a sequence, and which
    of its tokens it writes (the rest are given). Returns (allowed, scored), aligned with
    tokens[1:]: in the body, notes of the families but `kept`, waits, `end` and, with nothing
    kept, tempo changes (a kept part's tempo map is given); with a `kept` family, its notes
    and the tempo tokens are given, and no wait may pass its next event (`fixed.py`'s rules:
    in the instant of a kept event, before it, the model draws as if nothing were kept). The
    header, tempo changes (which the sampler may write only with nothing kept) and `end` are
    not scored."""
    t = vocab.tables
    head = header_length(tokens, vocab)
    family, waits, is_tempo = t["family"][tokens], t["wait"][tokens], t["tempo"][tokens] > 0
    step = np.cumsum(waits) - waits
    step[:head] = 0
    own = [FAMILY_ID[f] for f in families if f != kept]
    allowed_kind = np.isin(t["family"], own) | (t["wait"] > 0)
    allowed_kind[vocab.END] = True
    if kept is None:
        allowed_kind |= t["tempo"] > 0
    allowed = np.ones((len(tokens) - 1, vocab.size), bool)
    allowed[head - 1:] = allowed_kind
    given = (np.arange(len(tokens)) < head) | is_tempo | (tokens == vocab.END)
    if kept is not None:
        is_kept = family == FAMILY_ID[kept]
        given |= is_kept
        events = np.unique(step[is_kept])
        later = np.searchsorted(events, step, side="right")  # the first kept event after each token's instant
        gap = np.where(later < len(events), events[np.minimum(later, len(events) - 1)] - step, np.iinfo(np.int64).max)
        too_long = t["wait"][None, :] > gap[1:, None]
        allowed &= ~(too_long & (np.arange(len(tokens) - 1) >= head - 1)[:, None])
        where = np.flatnonzero(is_kept)
        place = np.arange(head, len(tokens))
        coming = np.searchsorted(where, place)  # the next kept token from each place on
        pending = coming < len(where)
        place, nxt = place[pending], where[coming[pending]]
        same = step[nxt] == step[place]  # it is due in the instant of the token at `place`
        place, nxt = place[same], nxt[same]
        allowed[place - 1] = allowed_kind  # drawn as if nothing were kept: what the encoding puts
        allowed[place - 1, tokens[nxt]] = True  # after the kept event there stands for it (fixed.py)
    scored = ~given[1:]
    allowed[~scored] = True  # a given token is not the sampler's to draw
    return allowed, scored


def sequence_bits(model, vocab, tokens: np.ndarray, device) -> float:
    return float(token_bits(model, vocab, tokens, device).sum())


def _family_bits(bits: np.ndarray, vocab, tokens: np.ndarray, family: str) -> float:
    """Of a sequence's `token_bits`, those of the note tokens (on and off) of one family."""
    return float(bits[vocab.tables["family"][tokens[1:]] == FAMILY_ID[family]].sum())


def _as(table: NoteTable, rows: np.ndarray, family: str) -> NoteTable:
    part = table.select(rows)
    part.family = np.full(len(rows), FAMILY_ID[family], np.int64)
    return part


def melody_and_accompaniment(path: Path, seconds: float | None = None) -> tuple[NoteTable, NoteTable]:
    """A POP909 song's melody (as voice) and accompaniment (bridge and piano, as piano), up
    to `seconds` after the melody enters (intros are often long), if given."""
    table, roles = read_song(path)
    if seconds is not None:
        onset = table.seconds(table.onset)
        enters = float(onset[roles == MELODY].min()) if (roles == MELODY).any() else 0.0
        keep = onset < enters + seconds
        table, roles = table.select(np.flatnonzero(keep)), roles[keep]
    return _as(table, np.flatnonzero(roles == MELODY), "voice"), _as(table, np.flatnonzero(roles != MELODY), "piano")


def accompaniment_bits(model, vocab, root: str | Path, songs: int, device, seconds: float = 60.0,
                       style: str | None = "pop", hints: bool = False, beside: bool = False) -> dict:
    """Bits per accompaniment note given the melody and alone, over the first `songs`
    held-out POP909 songs (up to `seconds` after the melody enters): by the chain rule (all
    tokens: bits of both minus bits of the melody alone), and counting only the
    accompaniment's note tokens (its note choices, the waits left out) in each sequence.
    With `hints` (a model that reads them), also given the melody read ahead as a hint: the
    bits of every token but the melody's own notes (`hinted`), and of the accompaniment's
    note tokens (`notes_hinted`). With `beside` (a model that reads a kept part so), also
    given the melody beside the accompaniment's own sequence (`channel.py`): all its tokens
    (`beside`), its note tokens (`notes_beside`), and as a sampler draws it (`sampled_beside`)."""
    rows = []
    for path, song in held_out_songs(root, songs):
        melody, accompaniment = melody_and_accompaniment(path, seconds)
        if len(melody) == 0 or len(accompaniment) == 0:
            continue
        together = encode_notes(NoteTable.joined([melody, accompaniment]).sorted(), vocab, style)
        alone = encode_notes(accompaniment, vocab, style)
        both, alone_bits = token_bits(model, vocab, together, device), token_bits(model, vocab, alone, device)
        melody_bits = sequence_bits(model, vocab, encode_notes(melody, vocab, style), device)
        row = {"song": song, "notes": len(accompaniment),
               "given_melody": (float(both.sum()) - melody_bits) / len(accompaniment),
               "alone": float(alone_bits.sum()) / len(accompaniment),
               "notes_given_melody": _family_bits(both, vocab, together, "piano") / len(accompaniment),
               "notes_alone": _family_bits(alone_bits, vocab, alone, "piano") / len(accompaniment)}
        allowed_alone, scored_alone = sampler_masks(alone, vocab, ["piano"])
        allowed_both, scored_both = sampler_masks(together, vocab, ["voice", "piano"], kept="voice")
        row["sampled_alone"] = _scored(model, vocab, alone, device, allowed_alone, scored_alone) / len(accompaniment)
        row["sampled_given_melody"] = _scored(model, vocab, together, device, allowed_both,
                                              scored_both) / len(accompaniment)
        if hints:
            head = header_length(together, vocab)
            steps, events = events_only(together[head:], vocab)
            voice = vocab.tables["family"][events] == FAMILY_ID["voice"]
            budget = int(model.config.context * HINT_SHARE)
            bits = token_bits(model, vocab, together, device, hint=(steps[voice], events[voice]), budget=budget)
            family = vocab.tables["family"][together[1:]]
            row["hinted"] = float(bits[family != FAMILY_ID["voice"]].sum()) / len(accompaniment)
            row["notes_hinted"] = float(bits[family == FAMILY_ID["piano"]].sum()) / len(accompaniment)
            row["sampled_hinted"] = _scored(model, vocab, together, device, allowed_both, scored_both,
                                            hint=(steps[voice], events[voice]), budget=budget) / len(accompaniment)
        if beside:
            grid = grid_of_table(melody, vocab)
            bits = token_bits(model, vocab, alone, device, kept=grid)
            row["beside"] = float(bits.sum()) / len(accompaniment)
            row["notes_beside"] = _family_bits(bits, vocab, alone, "piano") / len(accompaniment)
            row["sampled_beside"] = _scored(model, vocab, alone, device, allowed_alone, scored_alone,
                                            kept=grid) / len(accompaniment)
        rows.append(row)
    notes = sum(r["notes"] for r in rows)
    if not notes:
        raise MuseNetError(f"{root}: no held-out song with a melody and an accompaniment")
    out = {"songs": rows, "notes": notes}
    for key in ("given_melody", "alone", "notes_given_melody", "notes_alone", "hinted", "notes_hinted",
                "sampled_alone", "sampled_given_melody", "sampled_hinted", "beside", "notes_beside", "sampled_beside"):
        if key in rows[0]:
            out[key] = sum(r[key] * r["notes"] for r in rows) / notes
    out["reduction"] = 1 - out["given_melody"] / out["alone"]
    out["notes_reduction"] = 1 - out["notes_given_melody"] / out["notes_alone"]
    out["sampled_reduction"] = 1 - out["sampled_given_melody"] / out["sampled_alone"]
    if hints:
        out["hinted_reduction"] = 1 - out["hinted"] / out["alone"]
        out["notes_hinted_reduction"] = 1 - out["notes_hinted"] / out["notes_alone"]
        out["sampled_hinted_reduction"] = 1 - out["sampled_hinted"] / out["sampled_alone"]
    if beside:
        out["beside_reduction"] = 1 - out["beside"] / out["alone"]
        out["notes_beside_reduction"] = 1 - out["notes_beside"] / out["notes_alone"]
        out["sampled_beside_reduction"] = 1 - out["sampled_beside"] / out["sampled_alone"]
    return out


def _scored(model, vocab, tokens, device, allowed, scored, **reads) -> float:
    """Bits of the tokens a sampler with masks `allowed` writes (`scored`, `sampler_masks`);
    `reads`: a hint or a kept part beside (`token_bits`)."""
    bits = token_bits(model, vocab, tokens, device, allowed=allowed, **reads)[scored]
    if not np.isfinite(bits).all():
        raise MuseNetError("internal error: a real token the sampler's masks forbid")
    return float(bits.sum())


def chord_share(table: NoteTable, rows: np.ndarray, chords) -> tuple[int, int]:
    """(onsets in the annotated chord, onsets where a chord is annotated) of `rows`."""
    hit = in_chord(table, rows, chords)
    return int((hit == 1).sum()), int((hit >= 0).sum())


def accompaniment_chords(composer, root: str | Path, songs: int, seconds: float = 30.0, candidates: int = 2,
                         style: str | None = "pop", seed: int = 0, hints: bool = True, beside: bool = True,
                         harmony: float | None = None, annotated: bool = False) -> dict:
    """Share of accompaniment onsets in POP909's annotated chord: the real accompaniment's
    and that of accompaniments composed for the same melodies (piano, the melody kept;
    read beside the sequence when `beside` and the model reads it so, else in it, read ahead
    as a hint when `hints` and the model reads them), leaning `harmony` (`Composer.accompany`)
    towards the harmoniser's chords, or with `annotated` towards the annotated chords
    themselves (a reference: what the lean does when the chords are known)."""
    real, made, kept_exact, used, composed = [0, 0], [0, 0], True, 0, 0
    for path, _song in held_out_songs(root, songs):
        melody, accompaniment = melody_and_accompaniment(path, seconds)
        if len(melody) == 0 or len(accompaniment) == 0:
            continue
        chords = read_chords(path.parent)
        hit, total = chord_share(accompaniment, np.arange(len(accompaniment)), chords)
        real, used = [real[0] + hit, real[1] + total], used + 1
        lean = None
        if annotated:  # the chord at the middle of every beat
            beats = int(np.ceil(melody.beats(accompaniment.end_seconds()))) + 1
            lean = tones_at(chords, melody.seconds(np.arange(beats) + 0.5))
        pieces = composer.accompany(melody, ["voice"], ["piano"], seconds=accompaniment.end_seconds(),
                                    candidates=candidates, seed=seed, style=style, hints=hints, beside=beside,
                                    harmony=harmony, chords=lean)
        composed += len(pieces)
        for piece in pieces:
            table = piece.table
            added = np.flatnonzero(table.family == FAMILY_ID["piano"])
            hit, total = chord_share(table, added, chords)
            made = [made[0] + hit, made[1] + total]
            voice = table.select(np.flatnonzero(table.family == FAMILY_ID["voice"]))
            kept_exact &= bool(np.array_equal(voice.onset, melody.onset) and np.array_equal(voice.pitch, melody.pitch)
                               and np.array_equal(voice.duration, melody.duration)
                               and np.array_equal(voice.velocity, melody.velocity))
    return {"real": real[0] / max(real[1], 1), "composed": made[0] / max(made[1], 1), "real_onsets": real[1],
            "composed_onsets": made[1], "kept_exact": kept_exact, "songs": used, "composed_pieces": composed}


def longest_silence(table: NoteTable, start: float, stop: float) -> float:
    """The longest time in [start, stop] seconds with no note sounding."""
    on, off = table.seconds(table.onset), table.seconds(table.onset + table.duration)
    near = (off > start) & (on < stop)
    spans = sorted(zip(np.clip(on[near], start, stop), np.clip(off[near], start, stop), strict=True))
    longest, reached = 0.0, start
    for begin, end in spans:
        longest = max(longest, begin - reached)
        reached = max(reached, end)
    return max(longest, stop - reached)


def infill_seams(composer, pieces: list[tuple[NoteTable, str]], span: tuple[float, float], candidates: int = 2,
                 margin: float = 2.0, seed: int = 0, hints: bool = True) -> dict:
    """For each (table, style): compose `span` anew and measure its seams: the longest
    silence within `margin` s of each seam, composed and real; model notes stuck past the
    span's end (sounding past it when the music after it comes in, or past its end where
    that music starts later than `fixed.RING_SECONDS`); kept notes unchanged."""
    start, stop = span
    rows = []
    for table, style in pieces:
        onset = table.seconds(table.onset)
        outside = table.select(np.flatnonzero((onset < start) | (onset >= stop)))
        after = onset[(onset > stop) & (onset < stop + RING_SECONDS)]
        let_go = float(after.min()) if len(after) else stop  # where the model's notes must have ended
        kept = set(_rows(outside))
        for piece in composer.infill(table, start, stop, candidates=candidates, seed=seed, style=style, hints=hints):
            made = piece.table
            new = np.array([n not in kept for n in _rows(made)])
            rows.append({
                "style": style,
                "kept_exact": kept <= set(_rows(made)),
                # drums decode to a fixed 16th; the span's end is on the grid (half a step at most off)
                "stuck": int((made.seconds(made.onset + made.duration)[new & ~made.drum] > let_go + 0.05).sum()),
                "silence_real": max(longest_silence(table, s - margin, s + margin) for s in span),
                "silence_composed": max(longest_silence(made, s - margin, s + margin) for s in span),
                "new_notes": int(new.sum()),
                "real_notes": int(((onset >= start) & (onset < stop)).sum()),
            })
    return {"pieces": rows, "kept_exact": all(r["kept_exact"] for r in rows),
            "stuck": sum(r["stuck"] for r in rows),
            "silence_longer_than_real": sum(r["silence_composed"] > r["silence_real"] + 0.05 for r in rows)}


def _rows(table: NoteTable) -> list[tuple]:
    return list(zip(np.round(table.onset, 6), np.round(table.duration, 6), table.pitch.tolist(),
                    table.velocity.tolist(), table.family.tolist(), strict=True))


def infill_bits(model, vocab, pieces: list[tuple[NoteTable, str]], span: tuple[float, float], device,
                hints: bool = False) -> dict:
    """Bits per note of the real middle: of the tokens of a piece's left side and middle
    from the span's start on (its `end` left out), per note that starts in the span, given
    the left side only, and with `hints` (a model that reads them) also given both sides:
    what follows the span read ahead as a hint. Either way the side features count towards
    the whole piece's end (the length is known when infilling)."""
    start, stop = span
    totals = {"given_left": 0.0, "given_both": 0.0}
    total_notes = 0
    for table, style in pieces:
        onset = table.seconds(table.onset)
        left = onset < start
        both = table.select(np.flatnonzero(onset < stop))
        middle = len(both) - int(left.sum())
        if middle == 0 or not left.any() or table.end_seconds() < stop:
            continue
        tokens = encode_notes(both, vocab, style)
        head = header_length(tokens, vocab)
        waits = vocab.tables["wait"][tokens]
        step = np.cumsum(waits) - waits  # grid step of each token
        region = (np.arange(len(tokens)) >= head) & (step >= grid_step(table, start, vocab)) & (tokens != vocab.END)
        region = region[1:]  # aligned with the bits, which start at the second token
        length = table.end_seconds()  # the whole piece's, as `Composer.infill` composes it
        totals["given_left"] += float(token_bits(model, vocab, tokens, device, total_seconds=length)[region].sum())
        if hints:
            whole = encode_notes(table, vocab, style)
            steps, events = events_only(whole[header_length(whole, vocab):], vocab)
            after = steps >= grid_step(table, stop, vocab)
            bits = token_bits(model, vocab, tokens, device, hint=(steps[after], events[after]), budget=MAX_TAIL,
                              total_seconds=length)
            totals["given_both"] += float(bits[region].sum())
        total_notes += middle
    out = {"given_left": totals["given_left"] / max(total_notes, 1), "notes": int(total_notes)}
    if hints:
        out["given_both"] = totals["given_both"] / max(total_notes, 1)
        out["reduction"] = 1 - out["given_both"] / max(out["given_left"], 1e-9)
    return out
