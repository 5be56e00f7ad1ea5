"""The co-composer's API with a tiny random-weight model: every route, bad input, load, clean-up."""

from __future__ import annotations

import base64
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers import make_score
from server_helpers import live_server, make_tiny_model, song_excerpt

from musenet import Composer
from musenet.cli import build_parser, main
from musenet.corpus.intros import INTROS, cut_beats, intro_table
from musenet.corpus.music21_corpus import STYLE_GROUPS, corpus_path
from musenet.errors import MuseNetError
from musenet.fixed import RING_SECONDS
from musenet.instruments import FAMILIES
from musenet.notes import midi_bytes, read_midi
from musenet.render import wav_seconds
from musenet.server import create_app
from musenet.server.jobs import CANCELLED, DONE, FAILED, JobQueue, QueueFull
from musenet.settings import LIMITS
from musenet.song import parts


@pytest.fixture(scope="module")
def composer(tmp_path_factory):
    return Composer.load(make_tiny_model(tmp_path_factory.mktemp("model")))


@pytest.fixture
def client(composer, tmp_path):
    with TestClient(create_app(composer=composer, store_dir=tmp_path / "store")) as test_client:
        yield test_client


def notes_of(data: bytes) -> list[tuple[float, int, int]]:
    """(onset in beats, family, pitch) of every note in MIDI bytes, sorted."""
    table = read_midi(data)
    return sorted(zip(np.round(table.onset, 3).tolist(), table.family.tolist(), table.pitch.tolist(), strict=True))


def small_midi(notes: int = 8) -> bytes:
    return bytes(make_score([{"program": 0, "notes": [(i * 0.5, 0.5, 60 + i, 80) for i in range(notes)]}]).dumps_midi())


def wait_for(client, job: dict, until=lambda j: j["status"] not in ("queued", "running"), timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while not until(job):
        assert time.monotonic() < deadline, f"job stuck: {job}"
        time.sleep(0.02)
        job = client.get(job["url"]).json()
    return job


# ---- progress and cancel in the sampler --------------------------------------------------------

def test_on_step_reports_progress_and_raising_cancels(composer):
    shares: list[float] = []
    with_callback = composer.generate(style="irish", seconds=8, candidates=2, seed=4, on_step=shares.append)
    without = composer.generate(style="irish", seconds=8, candidates=2, seed=4)
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(with_callback, without, strict=True))
    assert len(shares) > 10 and shares[-1] == 1.0 and shares == sorted(shares) and 0 <= shares[0] < 0.5

    calls = []

    def stop_after_five(share):
        calls.append(share)
        if len(calls) == 5:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        composer.generate(style="irish", seconds=60, seed=4, on_step=stop_after_five)
    assert len(calls) == 5


def test_on_step_counts_only_the_new_music_after_a_prompt(composer):
    prompt = read_midi(small_midi(8))  # 4 s at 120 BPM
    shares: list[float] = []
    composer.generate(prompt=prompt, style="pop", seconds=10, seed=1, on_step=shares.append)
    assert shares[0] < 0.2 and shares[-1] == 1.0


# ---- the intros --------------------------------------------------------------------------------

def test_intros_name_real_corpus_files_and_known_styles():
    assert len(INTROS) >= 12 and len({i.id for i in INTROS}) == len(INTROS)
    for intro in INTROS:
        assert corpus_path(intro.path).is_file()
        assert intro.style in STYLE_GROUPS
    with pytest.raises(MuseNetError, match="unknown intro"):
        intro_table("nope")


def test_an_intro_is_the_opening_cut_at_its_beats():
    table = intro_table("alle-meine-entchen")
    assert len(table) > 4 and table.onset.max() < 8 and (table.onset + table.duration).max() <= 8 + 1e-9
    assert set(table.family.tolist()) == {FAMILIES.index("voice")}
    cut = cut_beats(read_midi(small_midi(8)), 2.25)  # notes at 0, 0.5, ... 2.0; the last cut to 0.25 beats
    assert len(cut) == 5 and cut.duration[-1] == pytest.approx(0.25)


@pytest.mark.slow
def test_every_intro_reads():
    for intro in INTROS:
        table = intro_table(intro.id)
        assert 4 <= len(table) and table.seconds(np.array([intro.beats]))[0] < 20, intro.id


# ---- the job queue ---------------------------------------------------------------------------------

def test_job_queue_bounds_cancels_and_reports_errors():
    queue = JobQueue(workers=1, queue_size=1)
    release = threading.Event()

    def blocked(job):
        while not release.wait(0.01):
            job.report("waiting", 0.5)
        return "ok"

    running = queue.submit(blocked)
    queued = queue.submit(blocked)
    with pytest.raises(QueueFull) as full:
        queue.submit(blocked)
    assert full.value.retry_after >= 1 and "busy" in str(full.value)
    assert queue.position(queued) == 0 and queued.status == "queued"
    assert queue.cancel(queued.id).status == CANCELLED  # a queued job is dropped at once
    while running.status != "running":
        time.sleep(0.01)
    queue.cancel(running.id)  # a running one stops at its next report
    running.future.result(timeout=10)
    assert running.status == CANCELLED and running.result is None
    release.set()
    done = queue.submit(lambda job: 42)
    done.future.result(timeout=10)
    assert done.status == DONE and done.result == 42
    failed = queue.submit(lambda job: (_ for _ in ()).throw(MuseNetError("bad settings")))
    failed.future.result(timeout=10)
    assert failed.status == FAILED and failed.error == "bad settings" and failed.error_status == 422
    broken = queue.submit(lambda job: 1 / 0)
    broken.future.result(timeout=10)
    assert broken.status == FAILED and broken.error.startswith("internal error: ZeroDivisionError")
    assert queue.cleanup(ttl=0) == 5 and not queue.jobs
    queue.shutdown()


# ---- the page and the catalogue ----------------------------------------------------------------------

def test_page_static_files_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "MuseNet co-composer" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert f'"{asset}"' in page.text and client.get(asset).status_code == 200
    assert "http" not in page.text.replace('href="/docs"', "")  # nothing fetched from elsewhere
    docs = client.get("/docs")
    assert docs.status_code == 200
    local = [part.split('"')[0] for part in docs.text.split('"/static-offline-docs/')[1:]]
    assert local and all(client.get(f"/static-offline-docs/{name}").status_code == 200 for name in local)
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/api/styles", "/api/instruments", "/api/intros", "/api/info", "/api/compose", "/api/jobs",
                  "/api/jobs/{job_id}", "/api/candidates/{candidate_id}/{kind}", "/api/candidates/{candidate_id}/pick",
                  "/api/pieces/{piece_id}", "/api/pieces/{piece_id}/undo", "/api/pieces/{piece_id}/{kind}",
                  "/api/accompany", "/api/rewrite"):
        assert route in paths


def test_catalogue(client, composer):
    styles = client.get("/api/styles").json()
    assert [s["name"] for s in styles] == list(composer.styles)
    assert next(s for s in styles if s["name"] == "irish")["description"].startswith("Irish")
    instruments = client.get("/api/instruments").json()
    assert [i["name"] for i in instruments] == list(FAMILIES)
    assert all(i["color"].startswith("#") and i["low"] < i["high"] for i in instruments)
    intros = client.get("/api/intros").json()
    assert [i["id"] for i in intros] == [i.id for i in INTROS]
    info = client.get("/api/info").json()
    assert info["workers"] == 1 and info["busy"] == 0 and info["limits"]["upload_bytes"] == 1 << 20


# ---- composing, picking, continuing, downloading -------------------------------------------------------

def test_compose_pick_continue_undo_download(client, artifacts):
    body = {"style": "irish", "instruments": ["strings", "guitar"], "seconds": 5, "temperature": 1.0, "seed": 3,
            "candidates": 4, "intro": "drowsy-maggie"}
    first = client.post("/api/compose", json=body)
    assert first.status_code == 200, first.text
    result = first.json()
    assert result["seed"] == 3 and result["piece_id"] is None and len(result["candidates"]) == 4
    assert client.post("/api/compose", json=body).json()["candidates"][0]["seconds"] == \
        result["candidates"][0]["seconds"]  # same seed, same music
    intro = notes_of(midi_bytes(intro_table("drowsy-maggie")))
    audio = client.get("/api/info").json()["audio"]
    for candidate in result["candidates"]:
        assert set(candidate) >= {"id", "midi_url", "audio_url", "pianoroll_url", "seconds"}
        midi = client.get(candidate["midi_url"])
        assert midi.status_code == 200 and midi.headers["content-type"] == "audio/midi"
        assert notes_of(midi.content)[:len(intro)] == intro  # the intro comes back as it was
        assert candidate["prompt_seconds"] == pytest.approx(3.0)  # 8 beats at 160 BPM
        assert 3.0 + 0.9 * 5 <= candidate["seconds"] <= 3.0 + 1.1 * 5 + 0.5
        assert set(candidate["families"]) <= {"strings", "guitar"}
    roll = client.get(result["candidates"][0]["pianoroll_url"])
    assert roll.status_code == 200 and roll.content[:4] == b"\x89PNG"
    if audio:
        wav = client.get(result["candidates"][0]["audio_url"])
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"

    chosen = result["candidates"][1]
    piece = client.post(f"/api/candidates/{chosen['id']}/pick").json()
    assert piece["versions"] == 1 and piece["seconds"] == chosen["seconds"] and piece["style"] == "irish"
    so_far = client.get(piece["midi_url"]).content
    assert so_far == client.get(chosen["midi_url"]).content

    body.update(piece_id=piece["id"], intro=None, seconds=4, seed=5)
    follow = client.post("/api/compose", json=body).json()
    assert follow["piece_id"] == piece["id"]
    before = notes_of(so_far)
    for candidate in follow["candidates"]:
        assert candidate["prompt_seconds"] == pytest.approx(piece["seconds"], abs=1e-3)
        assert candidate["seconds"] > piece["seconds"]
        assert notes_of(client.get(candidate["midi_url"]).content)[:len(before)] == before  # the piece, verbatim

    longer = client.post(f"/api/candidates/{follow['candidates'][0]['id']}/pick").json()
    assert longer["id"] == piece["id"] and longer["versions"] == 2 and longer["seconds"] > piece["seconds"]
    stale = client.post(f"/api/candidates/{follow['candidates'][2]['id']}/pick")
    assert stale.status_code == 409 and "earlier state" in stale.json()["detail"]
    assert client.get(f"/api/pieces/{piece['id']}").json() == longer

    download = client.get(longer["midi_url"])
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    assert ".mid" in download.headers["content-disposition"]
    assert download.content == client.get(follow["candidates"][0]["midi_url"]).content
    assert client.get(longer["pianoroll_url"]).content[:4] == b"\x89PNG"
    if audio:
        wav = client.get(longer["audio_url"])
        assert wav.status_code == 200 and "attachment" in wav.headers["content-disposition"]
        (artifacts / "piece.wav").write_bytes(wav.content)
        assert wav_seconds(artifacts / "piece.wav") == pytest.approx(longer["seconds"] + 1.0, abs=0.1)

    back = client.post(f"/api/pieces/{piece['id']}/undo").json()
    assert back["versions"] == 1 and back["seconds"] == piece["seconds"]
    assert client.get(back["midi_url"]).content == so_far  # the piece as it was, not a stale cached file
    again = client.post(f"/api/pieces/{piece['id']}/undo")
    assert again.status_code == 409 and "nothing to undo" in again.json()["detail"]


def test_uploaded_midi_is_the_opening(client):
    upload = small_midi(12)  # a note every 8th (0.25 s at 120 BPM): 3 s
    body = {"style": "pop", "instruments": ["piano", "drums"], "seconds": 3, "seed": 1, "candidates": 2,
            "prompt_midi": base64.b64encode(upload).decode(), "prompt_seconds": 1.1}
    result = client.post("/api/compose", json=body)
    assert result.status_code == 200, result.text
    kept = notes_of(upload)[:5]  # the notes starting in the first 1.1 s, the last ending at 1.25 s
    for candidate in result.json()["candidates"]:
        got = notes_of(client.get(candidate["midi_url"]).content)
        assert got[:5] == kept and (got[5:] == [] or got[5][0] >= 2.5)
        assert candidate["prompt_seconds"] == pytest.approx(1.25)


def test_jobs_report_progress_and_cancel(composer, tmp_path):
    with TestClient(create_app(composer=composer, workers=1, queue_size=2, store_dir=tmp_path)) as client:
        long = {"style": "irish", "seconds": 120, "candidates": 8, "temperature": 2.0, "seed": 1}
        first = client.post("/api/jobs", json=long)
        assert first.status_code == 202
        second = client.post("/api/jobs", json={**long, "seed": 2}).json()
        assert second["status"] == "queued" and second["queue_position"] == 0
        cancelled = client.delete(second["url"]).json()
        assert cancelled["status"] == "cancelled" and cancelled["result"] is None
        job = wait_for(client, first.json(), until=lambda j: j["status"] != "queued" and j["progress"] > 0)
        assert job["status"] == "running" and job["stage"] == "composing" and 0 < job["progress"] < 1
        client.delete(job["url"])
        job = wait_for(client, job, timeout=10)
        assert job["status"] == "cancelled" and job["result"] is None and job["progress"] < 1

        quick = client.post("/api/jobs", json={"style": "bach", "seconds": 3, "candidates": 1}).json()
        quick = wait_for(client, quick)
        assert quick["status"] == "done" and quick["progress"] == 1 and len(quick["result"]["candidates"]) == 1
        assert client.get("/api/jobs/0123456789abcdef").status_code == 404
        assert client.delete("/api/jobs/0123456789abcdef").status_code == 404
        assert client.get("/api/jobs/not-an-id").status_code == 422


def test_workers_share_one_composer(composer, tmp_path):
    """Jobs composed at once by one Composer give what each gives alone: no state is shared between calls."""
    alone = {seed: [midi_bytes(p.table) for p in composer.generate(style="irish", seconds=4, candidates=2, seed=seed)]
             for seed in (1, 2)}
    with TestClient(create_app(composer=composer, workers=2, store_dir=tmp_path / "store")) as client:
        jobs = [client.post("/api/jobs", json={"style": "irish", "seconds": 4, "candidates": 2, "seed": seed}).json()
                for seed in (1, 2, 1, 2)]
        results = [wait_for(client, job)["result"] for job in jobs]
        together = [[client.get(c["midi_url"]).content for c in result["candidates"]] for result in results]
    assert together == [alone[1], alone[2], alone[1], alone[2]]


def test_full_queue_answers_503_with_retry_after(composer, tmp_path):
    with TestClient(create_app(composer=composer, workers=1, queue_size=0, store_dir=tmp_path)) as client:
        running = client.post("/api/jobs", json={"style": "irish", "seconds": 120, "candidates": 8,
                                                 "temperature": 2.0}).json()
        busy = client.post("/api/compose", json={"style": "bach", "seconds": 3})
        assert client.get(running["url"]).json()["status"] == "running"
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
        assert "busy" in busy.json()["detail"]
        assert client.post("/api/jobs", json={"style": "bach", "seconds": 3}).status_code == 503
        client.delete(running["url"])
        wait_for(client, running)
        assert client.post("/api/compose", json={"style": "bach", "seconds": 3}).status_code == 200


# ---- bad input -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, field", [
    ({"seconds": 0}, "seconds"), ({"seconds": 121}, "seconds"), ({"seconds": "long"}, "seconds"),
    ({"temperature": 0}, "temperature"), ({"temperature": 2.5}, "temperature"),
    ({"candidates": 0}, "candidates"), ({"candidates": 9}, "candidates"),
    ({"seed": -1}, "seed"), ({"seed": 2**63}, "seed"),
    ({"instruments": ["kazoo"]}, "instruments"), ({"instruments": []}, "instruments"),
    ({"instruments": ["piano", "piano"]}, "instruments"), ({"instruments": "piano"}, "instruments"),
    ({"style": "x" * 65}, "style"), ({"intro": "nope"}, "intro"), ({"piece_id": "../../etc"}, "piece_id"),
    ({"prompt_seconds": 0}, "prompt_seconds"), ({"colour": "blue"}, "colour"),
    ({"intro": "molihua", "piece_id": "0123456789abcdef"}, "at most one"),
    ({"seconds": float("nan")}, "seconds"), ({"temperature": float("inf")}, "temperature"),
    ({"seconds": "5"}, "seconds"), ({"candidates": True}, "candidates"),
])
def test_out_of_range_parameters_are_422(client, body, field):
    answer = client.post("/api/compose", content=json.dumps(body), headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert field in json.dumps(answer.json()["detail"])


def test_request_bounds_are_the_settings_limits(client):
    fields = client.get("/openapi.json").json()["components"]["schemas"]["ComposeRequest"]["properties"]
    for name in ("temperature", "prompt_seconds"):
        assert (fields[name]["minimum"], fields[name]["maximum"]) == LIMITS[name]
    assert fields["candidates"]["minimum"] == LIMITS["candidates"][0]


def test_bad_values_get_a_one_line_reason(client):
    cases = [
        ({"style": "dubstep"}, 422, "unknown style 'dubstep'"),
        ({"piece_id": "0123456789abcdef"}, 404, "no piece 0123456789abcdef"),
        ({"prompt_midi": base64.b64encode(b"RIFF....WAVEfmt ").decode()}, 400, "prompt_midi: not a MIDI file"),
        ({"prompt_midi": base64.b64encode(small_midi()[:30]).decode()}, 400, "prompt_midi: corrupted MIDI"),
        ({"prompt_midi": "%%% not base64 %%%"}, 400, "not valid base64"),
        ({"prompt_midi": base64.b64encode(b"MThd" + bytes(1 << 20)).decode()}, 413, "over the 1024 KB limit"),
    ]
    for body, status, reason in cases:
        answer = client.post("/api/compose", json=body)
        assert answer.status_code == status, (body, answer.text)
        detail = answer.json()["detail"]
        assert reason in detail and "\n" not in detail
    for route in ("/api/compose", "/api/jobs"):
        huge = client.post(route, content=b"{" + b" " * (3 << 20) + b"}", headers={"content-type": "application/json"})
        assert huge.status_code == 413 and "limit" in huge.json()["detail"]

    def chunks():
        yield b'{"prompt_midi": "'
        for _ in range(40):
            yield b"A" * 65536
        yield b'"}'

    streamed = client.post("/api/compose", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413  # no Content-Length: counted as it arrives
    assert client.post("/api/compose", content=b"not json", headers={"content-type": "application/json"}
                       ).status_code == 422


def test_files_only_by_id_from_the_store(client, tmp_path):
    candidate = client.post("/api/compose", json={"style": "bach", "seconds": 3, "candidates": 1}
                            ).json()["candidates"][0]
    good = candidate["midi_url"]
    assert client.get(good).status_code == 200
    assert client.get(good.replace("/midi", "/passwd")).status_code == 422
    for bad in ("/api/candidates/..%2F..%2Fetc%2Fpasswd/midi", "/api/candidates/%2e%2e/midi",
                "/api/candidates/../../pyproject.toml", "/api/pieces/..%2fstore/midi",
                "/api/candidates/0123456789ABCDEF/midi"):
        assert client.get(bad).status_code in (404, 422), bad
    assert client.get("/api/candidates/0123456789abcdef/midi").status_code == 404
    assert client.post("/api/candidates/0123456789abcdef/pick").status_code == 404
    assert client.get("/api/pieces/0123456789abcdef").status_code == 404
    assert client.post("/api/pieces/0123456789abcdef/undo").status_code == 404
    assert client.get("/api/pieces/0123456789abcdef/audio").status_code in (404, 501)
    stored = {p.name for p in (tmp_path / "store").iterdir()}
    assert stored == {f"{candidate['id']}.mid"}  # named by the ids the app made


def test_no_synthesizer_means_no_audio_but_the_rest_works(composer, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSENET_SOUNDFONT", str(tmp_path / "missing.sf2"))
    with TestClient(create_app(composer=composer, store_dir=tmp_path / "store")) as client:
        info = client.get("/api/info").json()
        assert info["audio"] is False and "missing.sf2" in info["audio_error"]
        candidate = client.post("/api/compose", json={"seconds": 2, "candidates": 1}).json()["candidates"][0]
        assert candidate["audio_url"] is None
        assert client.get(f"/api/candidates/{candidate['id']}/audio").status_code == 501
        piece = client.post(f"/api/candidates/{candidate['id']}/pick").json()
        assert piece["audio_url"] is None and client.get(piece["midi_url"]).status_code == 200


def test_old_results_are_cleaned_up(composer, tmp_path):
    store = tmp_path / "store"
    app = create_app(composer=composer, ttl_seconds=5.0, cleanup_every=0.1, store_dir=store)  # slack for a busy CPU
    with TestClient(app) as client:
        job = wait_for(client, client.post("/api/jobs", json={"seconds": 2, "candidates": 2}).json())
        first, second = job["result"]["candidates"]
        piece = client.post(f"/api/candidates/{first['id']}/pick").json()
        assert client.get(piece["pianoroll_url"]).status_code == 200
        assert len(list(store.iterdir())) == 3  # two candidates' MIDI, the piece's piano roll
        deadline = time.monotonic() + 20
        while any(store.iterdir()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(store.iterdir())
        assert client.get(second["midi_url"]).status_code == 404
        assert client.get(f"/api/pieces/{piece['id']}").status_code == 404
        assert client.get(job["url"]).status_code == 404
    assert store.is_dir()  # a store folder given by the caller is kept; a temporary one is removed
    temporary = create_app(composer=composer)
    root = temporary.state.cocomposer.store.root
    with TestClient(temporary):
        assert root.is_dir()
    assert not root.exists()


# ---- accompanying an upload, rewriting a span -------------------------------------------------------

def exact_notes(table) -> set:
    """Every note as (onset, duration, pitch, velocity, family): what "note for note" means."""
    return set(zip(np.round(table.onset, 6).tolist(), np.round(table.duration, 6).tolist(), table.pitch.tolist(),
                   table.velocity.tolist(), table.family.tolist(), strict=True))


def blue_sky(shared_midi) -> bytes:
    """Mr. Blue Sky's melody and bass, 8 bars from its first sung note (175 BPM: 11 s)."""
    return song_excerpt(shared_midi / "multitrack" / "Mr. Blue Sky.mid", ["Melody", "Bass"], 48, 80)


def upload(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_accompany_keeps_the_melody_and_undo_gives_it_back(client, shared_midi):
    song = blue_sky(shared_midi)
    body = {"melody_midi": upload(song), "keep": ["Melody"], "add": ["piano", "strings"], "style": "pop",
            "seconds": 4, "seed": 1, "candidates": 2}
    started = client.post("/api/accompany", json=body)
    assert started.status_code == 202, started.text
    job = wait_for(client, started.json())
    assert job["status"] == "done" and job["result"]["seed"] == 1 and job["result"]["piece_id"] is None
    melody = parts(song, ["Melody"])[0]
    melody = exact_notes(melody.select(np.flatnonzero(melody.seconds(melody.onset) < 4)))
    candidates = job["result"]["candidates"]
    assert len(candidates) == 2 and len(melody) >= 8
    for candidate in candidates:
        assert candidate["task"] == "accompany" and candidate["prompt_seconds"] == 0
        assert set(candidate["families"]) <= {"winds", "piano", "strings"}  # the melody is a flute: winds
        table = read_midi(client.get(candidate["midi_url"]).content)
        assert melody <= exact_notes(table) and len(table) > len(melody)  # every melody note, and more
        assert FAMILIES.index("bass") not in table.family                # the bass was not kept
    assert client.get(candidates[0]["pianoroll_url"]).content[:4] == b"\x89PNG"

    piece = client.post(f"/api/candidates/{candidates[1]['id']}/pick").json()
    assert piece["versions"] == 2 and piece["style"] == "pop"     # the song, then its accompaniment
    assert client.get(piece["midi_url"]).content == client.get(candidates[1]["midi_url"]).content
    assert melody <= exact_notes(read_midi(client.get(piece["midi_url"]).content))
    back = client.post(f"/api/pieces/{piece['id']}/undo").json()
    assert back["versions"] == 1 and back["families"] == ["winds"]
    assert exact_notes(read_midi(client.get(back["midi_url"]).content)) == melody  # the melody alone, as sent

    duet = bytes(make_score([{"program": 0, "notes": [(i, 1, 60 + i, 80) for i in range(8)]},
                             {"program": 33, "notes": [(2 * i, 2, 36 + i, 90) for i in range(4)]}]).dumps_midi())
    body = {"melody_midi": upload(duet), "add": ["strings"], "seed": 1, "candidates": 1}  # keep: all of it
    whole = wait_for(client, client.post("/api/accompany", json=body).json())["result"]["candidates"][0]
    assert exact_notes(read_midi(duet)) <= exact_notes(read_midi(client.get(whole["midi_url"]).content))
    assert whole["seconds"] >= 4 and set(whole["families"]) <= {"piano", "bass", "strings"}  # the whole song

    body = {"melody_midi": upload(duet), "add": ["strings"], "seed": 1, "candidates": 1, "chords": "C"}
    leant = wait_for(client, client.post("/api/accompany", json=body).json())["result"]["candidates"][0]
    added = read_midi(client.get(leant["midi_url"]).content)
    added = added.select(np.flatnonzero(added.family == FAMILIES.index("strings")))
    assert len(added) and np.isin(added.pitch % 12, [0, 4, 7]).mean() > 0.9  # C major, at the default lean 3


def test_rewrite_keeps_the_outside_and_undo_restores(client):
    composed = client.post("/api/compose", json={"style": "pop", "instruments": ["piano", "bass"], "seconds": 8,
                                                 "seed": 3, "candidates": 1}).json()["candidates"][0]
    piece = client.post(f"/api/candidates/{composed['id']}/pick").json()
    before_bytes = client.get(piece["midi_url"]).content
    before = read_midi(before_bytes)
    onset = before.seconds(before.onset)
    outside = exact_notes(before.select(np.flatnonzero((onset < 2) | (onset >= 5))))
    after = onset[(onset > 5) & (onset < 5 + RING_SECONDS)]
    let_go = float(after.min()) if len(after) else 5.0  # notes sounding at the span's end ring on to here
    started = client.post("/api/rewrite", json={"piece_id": piece["id"], "start": 2, "stop": 5, "seed": 2,
                                                "candidates": 3})
    assert started.status_code == 202, started.text
    job = wait_for(client, started.json())
    assert job["status"] == "done" and job["result"]["piece_id"] == piece["id"]
    rewrites = job["result"]["candidates"]
    assert len(rewrites) == 3
    for rewrite in rewrites:
        assert rewrite["task"] == "rewrite" and (rewrite["prompt_seconds"], rewrite["stop_seconds"]) == (2, 5)
        table = read_midi(client.get(rewrite["midi_url"]).content)
        notes = exact_notes(table)
        assert outside <= notes                                   # before and after the span: unchanged
        new = table.select(np.flatnonzero([n not in outside for n in notes_in_order(table)]))
        start, end = new.seconds(new.onset), new.seconds(new.onset + new.duration)
        tick = 0.0025  # the file's resolution: the span's edges are rounded to a MIDI tick
        assert (start >= 2 - tick).all() and (start < 5).all() and (end <= let_go + tick).all()
    assert client.get(rewrites[0]["pianoroll_url"]).content[:4] == b"\x89PNG"

    picked = client.post(f"/api/candidates/{rewrites[2]['id']}/pick").json()
    assert picked["id"] == piece["id"] and picked["versions"] == 2 and picked["style"] == "pop"
    assert client.get(picked["midi_url"]).content == client.get(rewrites[2]["midi_url"]).content
    back = client.post(f"/api/pieces/{piece['id']}/undo").json()
    assert back["versions"] == 1 and client.get(back["midi_url"]).content == before_bytes


def notes_in_order(table) -> list:
    return list(zip(np.round(table.onset, 6).tolist(), np.round(table.duration, 6).tolist(), table.pitch.tolist(),
                    table.velocity.tolist(), table.family.tolist(), strict=True))


@pytest.mark.parametrize("route, body, field", [
    ("accompany", {"add": []}, "add"), ("accompany", {"add": ["kazoo"]}, "add"),
    ("accompany", {"add": ["piano", "piano"]}, "named twice"), ("accompany", {"add": "piano"}, "add"),
    ("accompany", {"keep": []}, "keep"), ("accompany", {"keep": [""]}, "keep"), ("accompany", {"keep": [0]}, "keep"),
    ("accompany", {"seconds": 0}, "seconds"), ("accompany", {"seconds": 121}, "seconds"),
    ("accompany", {"seconds": float("nan")}, "seconds"), ("accompany", {"temperature": 2.5}, "temperature"),
    ("accompany", {"candidates": 9}, "candidates"), ("accompany", {"candidates": True}, "candidates"),
    ("accompany", {"seed": -1}, "seed"), ("accompany", {"melody_midi": None}, "melody_midi"),
    ("accompany", {"piece_id": "0123456789abcdef"}, "piece_id"), ("accompany", {"harmony": -1}, "harmony"),
    ("accompany", {"harmony": 11}, "harmony"), ("accompany", {"chords": "C " * 201}, "chords"),
    ("rewrite", {"start": -1}, "start"), ("rewrite", {"stop": 0}, "stop"), ("rewrite", {"start": "1"}, "start"),
    ("rewrite", {"start": 3, "stop": 3}, "is empty"), ("rewrite", {"start": 1, "stop": 122}, "over the 120 s limit"),
    ("rewrite", {"start": float("nan")}, "start"), ("rewrite", {"stop": float("inf")}, "stop"),
    ("rewrite", {"piece_id": "../../etc"}, "piece_id"), ("rewrite", {"instruments": []}, "instruments"),
    ("rewrite", {"candidates": 0}, "candidates"), ("rewrite", {"temperature": 0}, "temperature"),
    ("rewrite", {"seconds": 5}, "seconds"),
])
def test_accompany_and_rewrite_bounds_are_422(client, route, body, field):
    valid = {"accompany": {"melody_midi": upload(small_midi()), "add": ["piano"]},
             "rewrite": {"piece_id": "0123456789abcdef", "start": 1, "stop": 2}}[route]
    sent = {key: value for key, value in {**valid, **body}.items() if value is not None}
    answer = client.post(f"/api/{route}", content=json.dumps(sent), headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert field in json.dumps(answer.json()["detail"])


def test_accompany_and_rewrite_bounds_are_the_settings_limits(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("AccompanyRequest", "RewriteRequest"):
        fields = schemas[name]["properties"]
        assert (fields["temperature"]["minimum"], fields["temperature"]["maximum"]) == LIMITS["temperature"]
        assert (fields["seed"]["anyOf"][0]["minimum"], fields["candidates"]["minimum"]) == (0, LIMITS["candidates"][0])


def test_a_bad_upload_or_span_gets_a_one_line_reason(client):
    good = {"add": ["piano"], "seconds": 2, "candidates": 1}
    cases = [
        ("accompany", {"melody_midi": upload(b"RIFF....WAVEfmt ")}, 400, "melody_midi: not a MIDI file"),
        ("accompany", {"melody_midi": upload(small_midi()[:30])}, 400, "melody_midi: corrupted MIDI"),
        ("accompany", {"melody_midi": "%%% not base64 %%%"}, 400, "melody_midi is not valid base64"),
        ("accompany", {"melody_midi": upload(b"MThd" + bytes(1 << 20))}, 413, "over the 1024 KB limit"),
        ("accompany", {"melody_midi": upload(small_midi()), "keep": ["kazoo"]}, 422,
         "melody_midi has no part 'kazoo': its families are piano; its tracks with notes 0"),
        ("accompany", {"melody_midi": upload(small_midi()), "style": "dubstep"}, 422, "unknown style 'dubstep'"),
        ("accompany", {"melody_midi": upload(small_midi()), "chords": "Am Q7"}, 422, "unknown chord symbol 'Q7'"),
        ("accompany", {"melody_midi": upload(small_midi()), "harmony": 2}, 422, "no harmoniser"),
        ("rewrite", {"piece_id": "0123456789abcdef", "start": 1, "stop": 2}, 404, "no piece 0123456789abcdef"),
    ]
    for route, body, status, reason in cases:
        answer = client.post(f"/api/{route}", json={**(good if route == "accompany" else {}), **body})
        assert answer.status_code == status, (body, answer.text)
        detail = answer.json()["detail"]
        assert reason in detail and "\n" not in detail, detail
    composed = client.post("/api/compose", json={"seconds": 3, "candidates": 1}).json()["candidates"][0]
    piece = client.post(f"/api/candidates/{composed['id']}/pick").json()
    late = client.post("/api/rewrite", json={"piece_id": piece["id"], "start": 60, "stop": 70})
    assert late.status_code == 422 and "after the piece ends" in late.json()["detail"]
    assert client.get("/api/info").json()["busy"] == 0  # nothing was queued for a refused request


def test_an_accompaniment_job_reports_progress_and_cancels(client):
    long = {"melody_midi": upload(small_midi()), "add": ["piano", "drums"], "seconds": 120, "candidates": 8,
            "temperature": 2.0, "seed": 1}
    job = wait_for(client, client.post("/api/accompany", json=long).json(),
                   until=lambda j: j["status"] != "queued" and j["progress"] > 0)
    assert job["status"] == "running" and job["stage"] == "accompanying" and 0 < job["progress"] < 1
    client.delete(job["url"])
    job = wait_for(client, job, timeout=10)
    assert job["status"] == "cancelled" and job["result"] is None


# ---- under load --------------------------------------------------------------------------------------

def test_twenty_concurrent_requests_are_all_answered(composer, artifacts):
    app = create_app(composer=composer, workers=1, queue_size=4)
    body = {"style": "irish", "instruments": ["strings"], "seconds": 4, "candidates": 2}
    with live_server(app) as url, httpx.Client(base_url=url, timeout=120,
                                               limits=httpx.Limits(max_connections=20)) as http:
        def one(seed: int) -> tuple[int, float, str | None]:
            start = time.monotonic()
            answer = http.post("/api/compose", json={**body, "seed": seed})
            return answer.status_code, time.monotonic() - start, answer.headers.get("retry-after")

        started = time.monotonic()
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(one, range(20)))
        wall = time.monotonic() - started
        codes = [code for code, _, _ in answers]
        assert len(answers) == 20 and set(codes) <= {200, 503}, codes
        assert codes.count(200) >= 1
        assert all(retry and int(retry) >= 1 for code, _, retry in answers if code == 503)
        assert http.get("/api/info").json()["busy"] == 0
        assert http.post("/api/compose", json=body).status_code == 200
    ok = [seconds for code, seconds, _ in answers if code == 200]
    busy = [seconds for code, seconds, _ in answers if code == 503]
    figures = {"requests": 20, "ok": len(ok), "busy_503": len(busy), "wall_s": round(wall, 2),
               "slowest_ok_s": round(max(ok), 2), "median_503_s": round(float(np.median(busy)), 3) if busy else None,
               "slowest_503_s": round(max(busy), 3) if busy else None}
    (artifacts / "load.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("load check:", figures)


# ---- the command ---------------------------------------------------------------------------------------

def test_serve_command(monkeypatch, tmp_path):
    import uvicorn

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.model, args.workers, args.queue) == ("127.0.0.1", 8000, None, 1, 8)
    assert args.compiled == "on"  # a server composes for long: it builds the compiled step once
    model = make_tiny_model(tmp_path)
    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    assert main(["serve", "--model", str(model), "--port", "8123", "--workers", "2", "--compiled", "off"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123
    assert seen["app"].state.cocomposer.jobs.workers == 2
    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 1


def test_styles_read_the_same_in_the_command_and_the_api(client, tmp_path, capsys):
    api = {style["name"]: style["description"] for style in client.get("/api/styles").json()}
    assert main(["styles", "--model", str(make_tiny_model(tmp_path))]) == 0
    printed = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert printed == api and api["unknown"] == "no style given"


def test_with_a_critic_the_co_composer_draws_twice_as_many_and_offers_the_best(composer, tmp_path):
    import numpy as np

    from musenet.critic import fit

    rng = np.random.default_rng(0)
    width = composer.model.config.width + 3
    critic = fit(rng.normal(0.5, 1.0, (40, width)), rng.normal(-0.5, 1.0, (40, width)))
    ranking = Composer(composer.model, composer.vocab, composer.device, composer.model_path, composer.metadata, critic)
    body = {"style": "irish", "instruments": ["strings", "guitar"], "seconds": 4, "seed": 5, "candidates": 3}
    with TestClient(create_app(composer=ranking, store_dir=tmp_path / "store")) as client:
        offered = client.post("/api/compose", json=body).json()["candidates"]
        scores = [c["critic"] for c in offered]
        assert len(offered) == 3 and scores == sorted(scores, reverse=True) and None not in scores
        drawn = ranking.generate(style="irish", instruments=["strings", "guitar"], seconds=4, seed=5, candidates=6,
                                 rank=True)  # what the server drew: twice as many, ranked
        assert scores == pytest.approx([p.critic for p in drawn[:3]], abs=1e-4)
        plain = client.post("/api/compose", json={**body, "rank": False}).json()["candidates"]
        assert [c["critic"] for c in plain] == [None] * 3


def test_composing_over_chords(client):
    """Chords one a bar lean what is composed towards them (the default lean, 3); a bad symbol
    or harmony without chords is refused at once, nothing queued."""
    body = {"seconds": 6, "candidates": 1, "seed": 2, "instruments": ["piano"], "chords": "C", "rank": False}
    composed = client.post("/api/compose", json=body)
    assert composed.status_code == 200, composed.text
    table = read_midi(client.get(composed.json()["candidates"][0]["midi_url"]).content)
    melodic = table.select(np.flatnonzero(~table.drum))
    assert len(melodic) > 5 and np.isin(melodic.pitch % 12, [0, 4, 7]).mean() > 0.9
    for extra, reason in (({"chords": "C Q7"}, "unknown chord symbol 'Q7'"),
                          ({"harmony": 2.0}, "harmony leans towards chords")):
        answer = client.post("/api/compose", json={"seconds": 4, "candidates": 1, **extra})
        assert answer.status_code == 422 and reason in answer.json()["detail"], answer.text
    assert client.get("/api/info").json()["busy"] == 0


def test_rewriting_a_span_over_chords(client):
    composed = client.post("/api/compose", json={"instruments": ["piano"], "seconds": 8, "seed": 3, "candidates": 1,
                                                 "rank": False}).json()["candidates"][0]
    piece = client.post(f"/api/candidates/{composed['id']}/pick").json()
    body = {"piece_id": piece["id"], "start": 2, "stop": 6, "seed": 2, "candidates": 1, "chords": "F"}
    job = wait_for(client, client.post("/api/rewrite", json=body).json())
    table = read_midi(client.get(job["result"]["candidates"][0]["midi_url"]).content)
    onset = table.seconds(table.onset)
    new = table.pitch[(onset >= 2.01) & (onset < 6) & ~table.drum] % 12
    assert len(new) > 3 and np.isin(new, [5, 9, 0]).mean() > 0.9  # F major, at the default lean
    for extra, reason in (({"chords": "F X"}, "unknown chord symbol 'X'"),
                          ({"harmony": 1.0}, "harmony leans towards chords")):
        answer = client.post("/api/rewrite", json={**body, **extra} if "chords" in extra else
                             {k: v for k, v in {**body, **extra}.items() if k != "chords"})
        assert answer.status_code == 422 and reason in answer.json()["detail"], answer.text
