"""MuseNet's inner critic: how much a piece reads like the training data rather than like
the model's own generations, to pick the best of several candidates.

The critic is a head on the frozen transformer: the model reads the first WINDOW tokens of
a piece (header, tempo, the opening notes; conditioned like the generator, since style and
instruments are in the header) and the critic looks at what it computes there: the mean of
the last layer's states over the music, and the mean, spread and lowest decile of the log-
probabilities the model gave the piece's own tokens. A logistic regression on these (width
+ 3 numbers, standardised) says how likely the piece is real. It is trained
(`train_critic`, `musenet critic`) on the openings of training pieces against the model's
own generations with the same style, instruments and length, drawn fresh from the model as
it is (the backbone does not change, so one round of generations is the whole of "the
model's own past generations"); it is saved beside the weights as `critic.json` (a few KB).

`Critic.score` gives each candidate's probability of being real; `Composer.generate(...,
rank=True)` orders candidates by it (`--keep K` keeps the best K).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .errors import MuseNetError
from .files import write_atomic
from .instruments import FAMILIES
from .model import ALL_FEATURES
from .sequence import side_features, token_seconds
from .vocab import Vocab

CRITIC_FILE = "critic.json"
WINDOW = 384          # tokens of a piece's opening the critic reads
LOW_DECILE = 0.1


@dataclass
class Critic:
    """A logistic regression on `critic_features`, standardised."""

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    window: int = WINDOW
    trained: dict | None = None  # how it was trained: pieces, seconds, held-out accuracy

    def score(self, model, vocab: Vocab, sequences: list[np.ndarray], seconds: list[float] | None = None) -> np.ndarray:
        """Probability that each token sequence (header to end) is real music."""
        return self.probability(critic_features(model, vocab, sequences, seconds, self.window))

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Probability of being real for rows of `critic_features`."""
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CRITIC_FILE
        write_atomic(path, json.dumps(asdict(self)).encode())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Critic | None:
        """The critic saved in a model directory, or None if it has none."""
        path = Path(directory) / CRITIC_FILE
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text()))
        except (ValueError, TypeError) as error:
            raise MuseNetError(f"{path}: not a critic file ({error})") from None


@torch.inference_mode()
def critic_features(model, vocab: Vocab, sequences: list[np.ndarray], seconds: list[float] | None = None,
                    window: int = WINDOW, batch: int = 16) -> np.ndarray:
    """(pieces, width + 3): the mean last-layer state over each opening's music and the mean,
    standard deviation and lowest decile of the log-probabilities of its tokens. `seconds`:
    each piece's whole length (for the position and countdown features; default: its own)."""
    device = next(model.parameters()).device
    window = min(window, model.config.context)
    rows = []
    for first in range(0, len(sequences), batch):
        chunk = [np.asarray(s[:window], np.int64) for s in sequences[first:first + batch]]
        lengths = [len(s) for s in chunk]
        longest = max(lengths)
        tokens = np.full((len(chunk), longest), vocab.PAD, np.int64)
        feats = {name: np.zeros((len(chunk), longest), np.int64) for name in ALL_FEATURES}
        for row, piece in enumerate(chunk):
            total = seconds[first + row] if seconds is not None else float(token_seconds(sequences[first + row],
                                                                                         vocab)[-1])
            tokens[row, :len(piece)] = piece
            for name, values in side_features(piece, vocab, max(total, 1e-3)).items():
                feats[name][row, :len(piece)] = values
        logits, states = model(torch.from_numpy(tokens).to(device),
                               {k: torch.from_numpy(v).to(device) for k, v in feats.items()}, hidden=True)
        logp = torch.log_softmax(logits.float(), dim=-1)[:, :-1].gather(
            2, torch.from_numpy(tokens[:, 1:]).to(device)[..., None])[..., 0].cpu().numpy()
        states = states.float().cpu().numpy()
        for row, piece in enumerate(chunk):
            body = int(np.argmax(piece == vocab.START)) + 1  # the music after the header
            music = slice(body, lengths[row])
            token_logp = logp[row, body - 1: lengths[row] - 1]
            mean_state = states[row, music].mean(axis=0) if lengths[row] > body else np.zeros(states.shape[-1])
            low = np.quantile(token_logp, LOW_DECILE) if len(token_logp) else 0.0
            rows.append(np.r_[mean_state, token_logp.mean() if len(token_logp) else 0.0,
                              token_logp.std() if len(token_logp) else 0.0, low])
    return np.asarray(rows, np.float64)


def real_openings(dataset, per_style: int, rng: np.random.Generator, window: int = WINDOW) -> dict[str, dict]:
    """For each style with pieces: up to `per_style` pieces whose header names the style's most
    common set of families, as {style: {"families", "seconds", "tokens"}}."""
    chosen = {}
    styles, family_bits = dataset.index["style"][dataset.rows], dataset.index["families"][dataset.rows]
    for number, style in enumerate(dataset.vocab.styles):
        in_style = styles == number
        if not in_style.any() or style == "unknown":
            continue
        sets, counts = np.unique(family_bits[in_style], return_counts=True)
        usual = int(sets[np.argmax(counts)])
        rows = dataset.rows[in_style & (family_bits == usual)]
        rows = rng.choice(rows, min(per_style, len(rows)), replace=False)
        chosen[style] = {"families": [FAMILIES[f] for f in range(len(FAMILIES)) if usual >> f & 1],
                         "seconds": [float(dataset.index["seconds"][r]) for r in rows],
                         "tokens": [dataset.piece(int(r))[:window] for r in rows]}
    return chosen


def generated_openings(composer, real: dict[str, dict], seed: int, progress: bool = True,
                       window: int = WINDOW) -> dict[str, dict]:
    """As many generated openings per style as `real` has, with the same families and the
    median length of its pieces (capped at 10 minutes), in one batch per style."""
    made = {}
    for number, (style, group) in enumerate(tqdm(real.items(), desc="generating", disable=not progress)):
        seconds = float(min(np.median(group["seconds"]), 600.0))
        pieces = composer.generate(style=style, instruments=group["families"], seconds=seconds,
                                   candidates=len(group["tokens"]), seed=seed * 1000 + number, max_tokens=window)
        made[style] = {"families": group["families"], "seconds": [seconds] * len(pieces),
                       "tokens": [p.tokens[:window] for p in pieces]}
    return made


def _features(composer, groups: dict[str, dict], window: int) -> tuple[np.ndarray, list[str]]:
    sequences = [t for g in groups.values() for t in g["tokens"]]
    seconds = [s for g in groups.values() for s in g["seconds"]]
    styles = [style for style, g in groups.items() for _ in g["tokens"]]
    return critic_features(composer.model, composer.vocab, sequences, seconds, window), styles


def fit(real_x: np.ndarray, generated_x: np.ndarray, regularisation: float = 0.1) -> Critic:
    """The logistic regression (scikit-learn) of real (1) against generated (0)."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([real_x, generated_x])
    y = np.r_[np.ones(len(real_x)), np.zeros(len(generated_x))]
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    model = LogisticRegression(C=regularisation, max_iter=2000).fit((x - mean) / scale, y)
    return Critic(mean.tolist(), scale.tolist(), model.coef_[0].tolist(), float(model.intercept_[0]))


def accuracy_by_style(critic: Critic, real_x, real_styles, generated_x, generated_styles) -> dict:
    """The critic's accuracy (real called real, generated called generated), overall and per style."""
    right = np.r_[critic.probability(real_x) >= 0.5, critic.probability(generated_x) < 0.5]
    styles = np.asarray(list(real_styles) + list(generated_styles))
    by_style = {s: float(right[styles == s].mean()) for s in sorted(set(styles.tolist()))}
    return {"accuracy": float(right.mean()), "pieces": int(len(right)), "by_style": by_style}


def train_critic(composer, data: str | Path, per_style: int = 16, seed: int = 0, progress: bool = True) -> Critic:
    """Train a critic for `composer`'s model on the build at `data`: real openings of the train
    split against fresh generations, then held out: the valid split's (or the test split's,
    if there is no valid one) against generations of other seeds. Returns it with `trained`
    filled in (not saved)."""
    from .dataset import Dataset

    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    train = Dataset(data, "train")
    if composer.vocab != train.vocab:
        raise MuseNetError(f"{data}: the dataset's vocabulary differs from the model's")
    window = min(WINDOW, composer.model.config.context)
    real = real_openings(train, per_style, rng, window)
    made = generated_openings(composer, real, seed, progress, window)
    generating = time.perf_counter() - start
    real_x, _ = _features(composer, real, window)
    made_x, _ = _features(composer, made, window)
    critic = fit(real_x, made_x)
    critic.window = window
    held = Dataset(data, "valid")
    if len(held) == 0:  # a small build may have no valid split
        held = Dataset(data, "test")
    held_real = real_openings(held, per_style, rng, window)
    held_made = generated_openings(composer, held_real, seed + 1, progress, window)
    (hr_x, hr_styles), (hm_x, hm_styles) = _features(composer, held_real, window), _features(composer, held_made,
                                                                                             window)
    critic.trained = {
        "train_pieces": {"real": len(real_x), "generated": len(made_x)}, "per_style": per_style,
        "window": window, "train_accuracy": accuracy_by_style(critic, real_x, [], made_x, [])["accuracy"],
        "held_out": accuracy_by_style(critic, hr_x, hr_styles, hm_x, hm_styles),
        "generating_seconds": round(generating, 1), "seconds": round(time.perf_counter() - start, 1),
        "precision": composer.metadata.get("precision", "float32"),
    }
    if not math.isfinite(critic.intercept):
        raise MuseNetError("the critic did not converge")
    return critic
