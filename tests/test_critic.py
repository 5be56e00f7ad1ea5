"""The inner critic: trained on a tiny build, it scores, ranks and keeps candidates."""

import json
import shutil

import numpy as np
import pytest
from test_evaluate import tiny_setup  # noqa: F401  (the module's built data and tiny model)

from musenet import Composer, MuseNetError
from musenet.cli import main
from musenet.critic import CRITIC_FILE, Critic, fit


def test_a_fitted_critic_separates_what_differs_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    critic = fit(rng.normal(1.0, 1.0, (80, 6)), rng.normal(-1.0, 1.0, (80, 6)))
    assert critic.coef[0] > 0 and len(critic.mean) == 6
    critic.save(tmp_path)
    assert Critic.load(tmp_path) == critic
    assert Critic.load(tmp_path / "nowhere") is None
    (tmp_path / CRITIC_FILE).write_text("[1, 2]")
    with pytest.raises(MuseNetError, match="not a critic file"):
        Critic.load(tmp_path)


def test_the_critic_is_trained_then_ranks_and_keeps_candidates(tiny_setup, tmp_path, capsys):  # noqa: F811
    root, data, model = tiny_setup
    model_dir = tmp_path / "model"
    shutil.copytree(model, model_dir)
    plain = Composer.load(model_dir)
    with pytest.raises(MuseNetError, match="no critic"):
        plain.generate(style="rock", seconds=4, candidates=2, rank=True)
    assert main(["critic", str(model_dir), "--data", str(root / "data"), "--per-style", "3"]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and (model_dir / CRITIC_FILE).is_file()
    trained = json.loads((model_dir / CRITIC_FILE).read_text())["trained"]
    assert trained["train_pieces"] == {"real": 6, "generated": 6} and 0 <= trained["held_out"]["accuracy"] <= 1

    composer = Composer.load(model_dir)
    request = dict(style="rock", seconds=6, candidates=4, seed=1)
    drawn = composer.generate(**request)
    assert all(p.critic is None for p in drawn)
    ranked = composer.generate(**request, rank=True)
    scores = [p.critic for p in ranked]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)
    assert sorted(p.tokens.tobytes() for p in ranked) == sorted(p.tokens.tobytes() for p in drawn)  # same draws
    kept = composer.generate(**request, keep=2)
    assert [p.tokens.tobytes() for p in kept] == [p.tokens.tobytes() for p in ranked[:2]]
    with pytest.raises(MuseNetError, match="keep must be"):
        composer.generate(**request, keep=5)
    args = ["generate", "--model", str(model_dir), "--style", "rock", "--seconds", "6", "--candidates", "4",
            "--keep", "2", "--seed", "1", "--out", str(tmp_path / "out")]
    assert main(args) == 0
    sidecars = [json.loads((tmp_path / "out" / f"piece-{n}.json").read_text()) for n in (1, 2)]
    assert [s["critic"] for s in sidecars] == pytest.approx(scores[:2], abs=1e-4)
    assert not (tmp_path / "out" / "piece-3.mid").exists()


def test_eval_judges_random_against_critic_picked_candidates(tiny_setup, tmp_path, capsys):  # noqa: F811
    root, data, model = tiny_setup
    model_dir = tmp_path / "model"
    shutil.copytree(model, model_dir)
    assert main(["critic", str(model_dir), "--data", str(root / "data"), "--per-style", "2"]) == 0
    out = tmp_path / "report"
    assert main(["eval", "--model", str(model_dir), "--data", str(root / "data"), "--out", str(out),
                 "--pieces-per-style", "1", "--seconds", "4", "--long-pieces", "0", "--critic-draws", "4",
                 "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "two-sample test, the critic's best 4 of 4" in printed and "piano-roll net" in printed
    critic = json.loads((out / "report.json").read_text())["critic"]
    assert (critic["draws"], critic["keep"], critic["rounds"]) == (4, 4, 2)
    assert critic["random"]["pieces"] == critic["critic"]["pieces"] == 2 * 2 * 4  # 2 styles x 2 rounds x 4
    assert critic["timing"]["ranked_seconds"] > 0 and "held_out" in critic["trained"]
    assert "## 7. The inner critic" in (out / "report.md").read_text()
