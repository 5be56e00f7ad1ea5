"""The trainer: it learns, it resumes exactly after SIGKILL, and 2 DDP processes match 1."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from test_dataset import write_song

from musenet.build import build
from musenet.checkpoint import load_checkpoint
from musenet.dataset import Dataset
from musenet.errors import MuseNetError
from musenet.evaluate import heldout_scores
from musenet.train import learning_rate, load_config, train, use_bf16

CONFIG = """
[model]
size = "tiny"
context = 64
dropout = {dropout}
[train]
batch_size = 4
max_steps = {steps}
warmup_steps = 3
checkpoint_every = 2
eval_every = 6
log_every = 1
eval_tokens = 3000
precision = "{precision}"
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    for i in range(12):
        write_song(root / ("jazz" if i % 2 else "pop") / f"song{i}.mid", i, bars=4)
    out = root / "data"
    build(str(root), out, workers=1, progress=False)
    return out


def run_train(data, out, config_path, *extra, nproc=1, wait=True):
    command = [sys.executable, "-m", "musenet", "train", "--data", str(data), "--config", str(config_path),
               "--out", str(out), *extra]
    if nproc > 1:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
                   "--master-port", "29533", "-m", "musenet", *command[3:]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if "loss" in r}


def test_config_schedule_and_learning(dataset, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG.format(dropout=0.0, steps=12, precision="auto") + 'ensembles = { pop = ["voice"] }\n')
    model_settings, train_config = load_config(str(config))
    assert model_settings["layers"] == 2 and model_settings["context"] == 64 and train_config.batch_size == 4
    assert learning_rate(0, train_config) < learning_rate(2, train_config) == pytest.approx(train_config.learning_rate)
    assert learning_rate(12, train_config) == pytest.approx(train_config.min_learning_rate)
    run_train(dataset, tmp_path / "run", config)
    seen = losses(tmp_path / "run")
    assert len(seen) == 12 and seen[12] < seen[1] - 1.0  # it learns
    model, vocab, saved = load_checkpoint(tmp_path / "run")
    assert saved["train"]["max_steps"] == 12 and (tmp_path / "run" / "latest").read_text() == "step-0000012"
    assert saved["ensembles"]["pop"] == ["voice"]  # the config's, over the counts
    assert saved["ensembles"]["jazz"] == Dataset(dataset, "train").ensembles()["jazz"]
    train_set = Dataset(dataset, "train")
    report = heldout_scores(model, train_set, 64, "cpu", max_tokens=2000)
    assert report["bits_per_note"] > 0 and set(report["bits_per_note_by_style"]) <= {"jazz", "pop"}
    assert not model.training  # left in the mode it came in: eval here, training in the trainer
    scored = [train_set.style_of(row) for row in report["rows"]]  # styles in turn, and said which pieces
    assert len(scored) == report["pieces"] and scored[0] != scored[1]
    # a sliding window scores every token once too, each with more of its piece before it
    model.train()
    sliding = heldout_scores(model, train_set, 64, "cpu", max_tokens=2000, overlap=0.5)
    assert model.training
    assert sliding["rows"] == report["rows"] and sliding["tokens"] == report["tokens"]
    assert sliding["bits_per_note"] == pytest.approx(report["bits_per_note"], rel=0.2)
    assert sliding["bits_per_note"] != report["bits_per_note"]


def test_sigkill_and_resume_reaches_the_same_losses(dataset, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG.format(dropout=0.1, steps=14, precision="bf16"))  # bf16 autocast on CPU
    run_train(dataset, tmp_path / "straight", config)
    process = run_train(dataset, tmp_path / "killed", config, wait=False)
    latest = tmp_path / "killed" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and not (latest.exists() and latest.read_text() >= "step-0000004"):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert "step-0000004" <= latest.read_text() < "step-0000014"  # killed part-way
    assert process.returncode == -signal.SIGKILL
    run_train(dataset, tmp_path / "killed", config, "--resume")
    straight, resumed = losses(tmp_path / "straight"), losses(tmp_path / "killed")
    assert sorted(resumed) == list(range(1, 15))
    for step in range(1, 15):
        assert resumed[step] == pytest.approx(straight[step], abs=1e-6), step


def test_two_ddp_processes_match_one(dataset, tmp_path):
    config = tmp_path / "tiny.toml"
    # exact sums: AdamW (Muon's Newton-Schulz runs in bfloat16 and magnifies the two processes'
    # summation order to about 1e-5 by step 4)
    config.write_text(CONFIG.format(dropout=0.0, steps=4, precision="fp32") + 'optimizer = "adamw"\n')
    run_train(dataset, tmp_path / "one", config)
    run_train(dataset, tmp_path / "two", config, nproc=2)
    one, two = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert sorted(two) == [1, 2, 3, 4]
    for step in one:
        assert two[step] == pytest.approx(one[step], abs=1e-5), step


def test_precision_setting():
    cpu = torch.device("cpu")
    assert use_bf16("bf16", cpu) and not use_bf16("fp32", cpu) and use_bf16("auto", torch.device("cuda"))
    with pytest.raises(MuseNetError, match="precision must be"):
        use_bf16("fp16", cpu)


def test_init_starts_from_a_models_weights(dataset, tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG.format(dropout=0.0, steps=12, precision="fp32"))
    run_train(dataset, tmp_path / "first", config)
    factored = tmp_path / "factored.toml"  # may add note factors (they start at 0) but not change shapes
    factored.write_text(CONFIG.format(dropout=0.0, steps=12, precision="fp32").replace(
        "context = 64", "context = 32\nnote_factors = true"))
    run_train(dataset, tmp_path / "again", factored, "--max-steps", "2", "--init", str(tmp_path / "first"))
    first, again = losses(tmp_path / "first"), losses(tmp_path / "again")
    # first[1] is a fresh model's loss on the same first batch: the new run goes on from the trained weights
    assert again[1] < first[1] - 1.0 and abs(again[1] - first[12]) < 0.5
    _, _, saved = load_checkpoint(tmp_path / "again")
    assert saved["init"] == str(tmp_path / "first") and saved["train"]["max_steps"] == 2
    assert saved["model"]["note_factors"] and saved["model"]["context"] == 64
    phased = tmp_path / "phased.toml"  # may add a side feature (its embedding starts at 0)
    phased.write_text(CONFIG.format(dropout=0.0, steps=12, precision="fp32").replace(
        "context = 64", 'context = 64\nside_features = ["time", "chord", "position", "countdown", "phase"]'))
    run_train(dataset, tmp_path / "phase", phased, "--max-steps", "2", "--init", str(tmp_path / "first"))
    assert abs(losses(tmp_path / "phase")[1] - first[12]) < 0.5
    assert "phase" in load_checkpoint(tmp_path / "phase")[2]["model"]["side_features"]
    plain = tmp_path / "plain.toml"  # a model without relative attention (the tiny size has it)...
    plain.write_text(CONFIG.format(dropout=0.0, steps=12, precision="fp32").replace(
        "context = 64", "context = 64\nrelative_span = 0"))
    run_train(dataset, tmp_path / "plain", plain)
    relative = tmp_path / "relative.toml"  # ...may be given it (its distance tables start at 0)
    relative.write_text(CONFIG.format(dropout=0.0, steps=12, precision="fp32").replace(
        "context = 64", "context = 64\nrelative_span = 16"))
    run_train(dataset, tmp_path / "relative", relative, "--max-steps", "2", "--init", str(tmp_path / "plain"))
    assert abs(losses(tmp_path / "relative")[1] - losses(tmp_path / "plain")[12]) < 0.5
    assert load_checkpoint(tmp_path / "relative")[2]["model"]["relative_span"] == 16
    with pytest.raises(MuseNetError, match="may add relative attention, not resize it"):  # first's is 64
        train(dataset, str(relative), tmp_path / "resized", init=tmp_path / "first", progress=False)

    other = tmp_path / "other"
    write_song(other / "rock" / "song.mid", 0, bars=4)  # a style the first build lacks: another vocabulary
    build(str(other), other / "data", workers=1, progress=False)
    with pytest.raises(MuseNetError, match="vocabulary"):
        train(other / "data", str(config), tmp_path / "mismatch", init=tmp_path / "first", progress=False)


def test_init_grows_a_model_to_a_vocabulary_with_more_styles(tmp_path):
    from musenet.checkpoint import save_checkpoint
    from musenet.model import build_model
    from musenet.train import initial_weights
    from musenet.vocab import Vocab, default_vocab

    old = default_vocab()
    new = Vocab(styles=(*old.styles, "drums-rock", "drums-funk"))
    torch.manual_seed(0)
    small = build_model("tiny", old.size, context=32).eval()
    save_checkpoint(tmp_path / "old", small, old)
    weights, shape = initial_weights(tmp_path / "old", new, {})
    grown = build_model(shape, new.size).eval()
    grown.load_state_dict(weights, strict=False)
    tokens = torch.tensor([[old.style_token("bach"), old.START, old.wait_offset, old.note_offset + 5]])
    with torch.no_grad():
        assert torch.allclose(grown(tokens)[..., : old.size], small(tokens), atol=1e-5)  # old ids keep their meaning
        assert grown(torch.tensor([[new.style_token("drums-rock"), new.START]])).isfinite().all()
    with pytest.raises(MuseNetError, match="not the data's"):
        initial_weights(tmp_path / "old", Vocab(time_mode="seconds"), {})


def test_a_wall_clock_budget_ends_the_schedule_in_time(dataset, tmp_path):
    """--minutes: the run times its steps, sets its last one so that the learning rate has
    decayed to its minimum when the budget is spent, and saves that step."""
    config = tmp_path / "budget.toml"
    config.write_text(CONFIG.format(dropout=0.0, steps=100_000, precision="fp32")
                      .replace("checkpoint_every = 2", "checkpoint_every = 100_000")
                      .replace("eval_every = 6", "eval_every = 100_000"))
    started = time.time()
    records = train(dataset, str(config), tmp_path / "run", max_steps=3000, minutes=0.15, progress=False)
    took = time.time() - started
    steps = [r for r in records if "loss" in r]
    assert 25 < steps[-1]["step"] < 3000 and took < 0.15 * 60 + 6, (steps[-1]["step"], took)
    assert steps[-1]["lr"] < 1.5 * load_config(str(config))[1].min_learning_rate  # the schedule ran its course
    assert (tmp_path / "run" / "latest").read_text().strip().endswith(str(steps[-1]["step"]))


@pytest.mark.slow
def test_the_gpu_kit_trains_and_exports_on_a_cpu(dataset, tmp_path):
    """scripts/gpu-kit.sh packs a build and the wheels (pip download: needs the package index);
    scripts/gpu-train.sh unpacks it, trains within a budget and exports into $OUT."""
    root = __import__("pathlib").Path(__file__).parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), "KIT": str(tmp_path / "kit")}
    subprocess.run(["bash", "scripts/gpu-kit.sh", str(dataset)], cwd=root, env=env, check=True, timeout=600)
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG.format(dropout=0.0, steps=6, precision="fp32"))
    subprocess.run(["bash", "scripts/gpu-train.sh", str(config), "0.5"], cwd=root, env=env, check=True, timeout=600)
    assert (tmp_path / "out" / "model" / "model.safetensors").stat().st_size > 1000
    assert '"step": 6' in (tmp_path / "out" / "metrics.jsonl").read_text()


def test_named_side_features_learn_at_their_own_rate():
    """`feature_lr` puts those embeddings in their own group, which the schedule scales."""
    from musenet.model import build_model
    from musenet.train import param_groups

    model = build_model("tiny", 300, side_features=["time", "kept_top", "kept_low"])
    groups = param_groups(model, 0.1, {"kept_top": 30.0, "kept_low": 30.0})
    faster = [g for g in groups if g.get("lr_factor") == 30.0]
    assert len(faster) == 1 and faster[0]["weight_decay"] == 0.0
    assert {id(p) for p in faster[0]["params"]} == {id(model.feature_embeddings[n].weight)
                                                    for n in ("kept_top", "kept_low")}
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert len(param_groups(model, 0.1)) == 2  # none named: as before


def test_muon_trains_resumes_exactly_and_refuses_an_adamw_state(dataset, tmp_path):
    """optimizer = "muon": Muon steps the blocks' matrices, AdamW the rest; the run learns as
    AdamW's does, its saved state restores the very next steps, and a checkpoint of the other
    optimizer is a clear error, not a silent restart."""
    from musenet.model import build_model
    from musenet.train import MuonAdamW, _model_and_optimizer, make_optimizer

    config = tmp_path / "muon.toml"
    config.write_text(CONFIG.format(dropout=0.0, steps=12, precision="fp32") + 'optimizer = "muon"\n')
    run_train(dataset, tmp_path / "run", config)
    seen = losses(tmp_path / "run")
    assert len(seen) == 12 and seen[12] < seen[1] - 1.0

    torch.manual_seed(0)
    model = build_model("tiny", 50, context=16)
    optimizer = make_optimizer(model, "muon", 1e-2, 0.1)
    assert isinstance(optimizer, MuonAdamW)
    muon_params = {id(p) for group in optimizer.parts[0].param_groups for p in group["params"]}
    assert muon_params == {id(p) for name, p in model.named_parameters() if name.startswith("blocks.") and p.dim() == 2}
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in model.parameters()}
    tokens = torch.randint(0, 50, (6, 4, 17), generator=torch.Generator().manual_seed(1))

    def steps(model, optimizer, batches):
        for batch in batches:
            loss = torch.nn.functional.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()

    steps(model, optimizer, tokens[:3])
    saved = {"model": {k: v.clone() for k, v in model.state_dict().items()},
             "optimizer": __import__("copy").deepcopy(optimizer.state_dict())}
    steps(model, optimizer, tokens[3:])
    again = build_model("tiny", 50, context=16)
    again.load_state_dict(saved["model"])
    optimizer_again = make_optimizer(again, "muon", 1e-2, 0.1)
    optimizer_again.load_state_dict(saved["optimizer"])
    steps(again, optimizer_again, tokens[3:])
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    _, vocab, _ = load_checkpoint(tmp_path / "run")
    model_settings, train_config = load_config(str(config))
    adamw = build_model(model_settings, vocab.size)
    adamw_state = {"model": adamw.state_dict(), "optimizer": make_optimizer(adamw, "adamw", 1e-3, 0.1).state_dict(),
                   "step": 3}
    with pytest.raises(MuseNetError, match="optimizer state does not fit"):
        _model_and_optimizer(model_settings, vocab, train_config, None, adamw_state, torch.device("cpu"))
    with pytest.raises(MuseNetError, match="unknown optimizer"):
        make_optimizer(model, "sgd", 1e-3, 0.1)
