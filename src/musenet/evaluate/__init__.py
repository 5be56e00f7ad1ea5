"""`musenet eval`: how good is a model? One module per question, each usable on its own:

- `likelihood`: the model's held-out bits per note (the trainer's validation loss too),
  beside the `ngram` baseline, an interpolated modified Kneser-Ney 5-gram;
- `music`: statistics of a piece (pitch classes, scale, polyphony, rhythm) and how much
  generated and real pieces' histograms overlap;
- `classifier` and `style`: a scikit-learn classifier over piece features, and whether
  generated pieces are named as the style they were asked for;
- `instruments`: the share of generated notes in the requested families;
- `long_pieces`: longest silence, stuck notes and verbatim bar repetition;
- `coverage`, `drums`, `harmony`, `continuation`: whether it plays as a band: requested
  families that play, drum parts against real grooves, bass notes in the chord, and continued
  songs against their own next seconds; `band` runs the four (`run_eval(band=True)`);
- `report`: the headline table, report.md, report.json and the plots;
- `run`: `run_eval`, all of it for a model and a built dataset.
"""

from .band import run_band
from .classifier import classifier, cross_validated_accuracy, piece_features
from .continuation import window_figures
from .coverage import coverage, coverage_grid
from .drums import drum_figures
from .harmony import bass_in_chord
from .likelihood import heldout_scores
from .long_pieces import long_piece_health
from .music import excerpt, music_stats, overlap
from .ngram import KneserNey, ngram_bits_per_note, shared_ngram_share
from .report import markdown, write_report
from .run import run_eval

__all__ = [
    "KneserNey", "bass_in_chord", "classifier", "coverage", "coverage_grid", "cross_validated_accuracy",
    "drum_figures", "excerpt", "heldout_scores", "long_piece_health", "markdown", "music_stats",
    "ngram_bits_per_note", "overlap", "piece_features", "run_band", "run_eval", "shared_ngram_share",
    "window_figures", "write_report",
]
