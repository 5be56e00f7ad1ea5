"""The co-composer page in a real headless browser (Debian's chromium, driven by Playwright) against
a real uvicorn server: compose, pick, continue, cancel, undo, download; accompany an uploaded melody and
rewrite a span; screenshots in the `artifacts` folder."""

from __future__ import annotations

import os
import shutil

import httpx
import numpy as np
import pytest
from server_helpers import live_server, make_tiny_model, song_excerpt

from musenet import Composer
from musenet.instruments import FAMILIES
from musenet.notes import read_midi
from musenet.server import create_app

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install -e .[test])")
CHROMIUM = os.environ.get("MUSENET_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; "
                                "scripts/setup.sh installs it), or set MUSENET_CHROMIUM")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    composer = Composer.load(make_tiny_model(tmp_path_factory.mktemp("model")))
    app = create_app(composer=composer, workers=1, queue_size=4, store_dir=tmp_path_factory.mktemp("store"))
    with live_server(app) as url:
        yield url


@pytest.fixture
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        context = browser.new_page(viewport={"width": 1280, "height": 1000}, accept_downloads=True)
        problems: list[str] = []
        context.on("pageerror", lambda err: problems.append(f"page error: {err}"))
        context.on("console", lambda msg: problems.append(f"console: {msg.text}")
                   if msg.type == "error" and "Failed to load resource" not in msg.text else None)
        context.on("response", lambda answer: problems.append(f"{answer.status} for {answer.url}")
                   if answer.status >= 400 and answer.status != 400 else None)  # 400: the bad-upload test
        context.goto(server)
        context.wait_for_selector("body[data-ready=true]")
        yield context
        browser.close()
        assert not problems, problems


def wait_idle(page) -> None:
    page.wait_for_selector("#status", state="hidden", timeout=60_000)


def all_images_loaded(page, selector: str) -> bool:
    return page.eval_on_selector_all(selector, "imgs => imgs.length > 0 && imgs.every(i => i.complete && "
                                     "i.naturalWidth > 0)")


def test_compose_pick_continue_cancel_undo_download(page, server, tmp_path, artifacts):
    expect = sync_api.expect
    assert page.locator(".instrument").count() == 10
    assert page.locator("#intro-list option").count() >= 12
    page.select_option("#intro", "drowsy-maggie")
    expect(page.locator("#style")).to_have_value("irish")  # the intro's style becomes the default
    page.click(".instrument[data-family=piano]")           # off
    page.click(".instrument[data-family=strings]")         # on
    page.click(".instrument[data-family=guitar]")          # on
    page.locator("#seconds").fill("5")
    expect(page.locator("#seconds-out")).to_have_text("5 s")

    page.click("#generate")
    cards = page.locator("#candidates .candidate")
    expect(cards).to_have_count(4, timeout=60_000)
    wait_idle(page)
    expect(page.locator("#candidates-title")).to_have_text("Ideas for the opening")
    page.wait_for_function("() => [...document.querySelectorAll('#candidates img')].every(i => i.complete)")
    assert all_images_loaded(page, "#candidates img")
    audio = page.locator("#candidates audio")
    if page.evaluate("fetch('/api/info').then(r => r.json()).then(i => i.audio)"):
        expect(audio).to_have_count(4)
    assert all("strings" in text or "guitar" in text or "silence" in text
               for text in cards.locator("p").all_inner_texts())
    page.screenshot(path=str(artifacts / "co-composer-ideas.png"), full_page=True)

    cards.nth(1).locator(".pick").click()                  # start the piece with idea 2
    expect(page.locator("#piece")).to_be_visible()
    expect(page.locator("#piece-info")).to_contain_text("1 pick")
    expect(page.locator("#intro")).to_be_disabled()          # the piece so far is the opening now
    expect(page.locator("#candidates-title")).to_have_text("Ideas for what comes next", timeout=60_000)
    wait_idle(page)
    expect(page.locator("#undo")).to_be_disabled()
    first_length = float(page.inner_text("#piece-info").split(" s")[0])

    cards.nth(0).locator(".pick").click()                  # continue with idea 1
    expect(page.locator("#piece-info")).to_contain_text("2 picks")
    wait_idle(page)
    expect(cards).to_have_count(4)
    assert float(page.inner_text("#piece-info").split(" s")[0]) > first_length
    page.wait_for_function("() => document.querySelector('#piece-roll').complete")
    assert all_images_loaded(page, "#piece-roll")

    # Cancel: a long job holds the only worker, so the page's job waits in the queue, showing where it stands.
    blocker = httpx.post(f"{server}/api/jobs", json={"seconds": 120, "candidates": 8, "temperature": 2.0},
                         timeout=30).json()
    try:
        page.click("#generate")
        expect(page.locator("#status")).to_be_visible()
        expect(page.locator("#stage")).to_contain_text("waiting for the composer")
        page.click("#cancel")
        expect(page.locator("#notice")).to_have_text("Cancelled: nothing was added.", timeout=10_000)
        wait_idle(page)
    finally:
        httpx.delete(f"{server}{blocker['url']}", timeout=30)
    expect(cards).to_have_count(4)  # the ideas offered before are still there

    expect(page.locator("#undo")).to_be_enabled()
    page.click("#undo")
    expect(page.locator("#piece-info")).to_contain_text("1 pick")
    assert float(page.inner_text("#piece-info").split(" s")[0]) == first_length
    page.click("#generate")                                # continue again from the undone state
    expect(cards).to_have_count(4, timeout=60_000)
    wait_idle(page)
    cards.nth(3).locator(".pick").click()
    expect(page.locator("#piece-info")).to_contain_text("2 picks")
    wait_idle(page)

    with page.expect_download() as download_info:
        page.click("#download-midi")
    download = download_info.value
    assert download.suggested_filename.startswith("musenet-irish-") and download.suggested_filename.endswith(".mid")
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    table = read_midi(saved)
    assert len(table) > 0
    piece_url = page.get_attribute("#download-midi", "href")
    assert saved.read_bytes() == httpx.get(f"{server}{piece_url}", timeout=30).content
    page.screenshot(path=str(artifacts / "co-composer.png"), full_page=True)
    assert (artifacts / "co-composer.png").stat().st_size > 10_000

    page.click("#new-piece")
    expect(page.locator("#piece")).to_be_hidden()
    expect(cards).to_have_count(0)
    expect(page.locator("#intro")).to_be_enabled()
    expect(page.locator("#generate")).to_have_text("Generate")

    page.select_option("#intro", "")                         # from silence, over a chord: C major
    page.locator("#compose-chords").fill("C")
    page.click("#generate")
    expect(cards).to_have_count(4, timeout=60_000)
    wait_idle(page)
    cards.nth(0).locator(".pick").click()
    expect(page.locator("#piece-info")).to_contain_text("1 pick")
    wait_idle(page)
    table = read_midi(httpx.get(f"{server}{page.get_attribute('#download-midi', 'href')}", timeout=30).content)
    melodic = table.pitch[~table.drum] % 12
    assert len(melodic) > 5 and np.isin(melodic, [0, 4, 7]).mean() > 0.9  # a random-weight model, leaning


def test_bad_upload_shows_the_reason(page, tmp_path):
    not_midi = tmp_path / "notes.mid"
    not_midi.write_bytes(b"these are not notes")
    page.select_option("#intro", "upload")
    expect = sync_api.expect
    expect(page.locator("#upload-field")).to_be_visible()
    page.click("#generate")
    expect(page.locator("#error")).to_have_text("choose a MIDI file to start from, or another intro")
    page.set_input_files("#upload", str(not_midi))
    page.wait_for_function("() => document.querySelector('#error').hidden")
    page.click("#generate")
    expect(page.locator("#error")).to_have_text("prompt_midi: not a MIDI file (no MThd header)")
    expect(page.locator("#candidates .candidate")).to_have_count(0)


def exact_notes(table, keep=None) -> set:
    """Every note (onset, duration, pitch, velocity, family), or those where `keep` is true."""
    rows = np.flatnonzero(keep) if keep is not None else np.arange(len(table))
    return set(zip(np.round(table.onset[rows], 6).tolist(), np.round(table.duration[rows], 6).tolist(),
                   table.pitch[rows].tolist(), table.velocity[rows].tolist(), table.family[rows].tolist(), strict=True))


def four_candidates(page, title: str, screenshot):
    """Wait for four candidates under `title`, their pictures loaded; keep a screenshot."""
    expect = sync_api.expect
    cards = page.locator("#candidates .candidate")
    expect(cards).to_have_count(4, timeout=60_000)
    wait_idle(page)
    expect(page.locator("#candidates-title")).to_have_text(title)
    page.wait_for_function("() => [...document.querySelectorAll('#candidates img')].every(i => i.complete)")
    assert all_images_loaded(page, "#candidates img")
    page.screenshot(path=str(screenshot), full_page=True)
    return cards


def test_accompany_a_melody_rewrite_a_span_undo(page, server, shared_midi, tmp_path, artifacts):
    expect = sync_api.expect
    melody_file = tmp_path / "blue-sky-melody.mid"  # Mr. Blue Sky's tune, 4 bars from its first sung note
    melody_file.write_bytes(song_excerpt(shared_midi / "multitrack" / "Mr. Blue Sky.mid", ["Melody"], 48, 64))
    melody = exact_notes(read_midi(melody_file))

    def piece_midi() -> bytes:
        return httpx.get(f"{server}{page.get_attribute('#download-midi', 'href')}", timeout=30).content

    page.click("#accompany-go")
    expect(page.locator("#error")).to_have_text("choose a MIDI file to accompany")
    page.set_input_files("#melody", str(melody_file))
    page.wait_for_function("() => state.melody !== null")
    for family in ("bass", "drums", "strings"):  # piano, bass, drums at first: now piano and strings
        page.click(f".family[data-family={family}]")
    page.select_option("#accompany-style", "pop")
    page.locator("#chords").fill("C G Am F")  # one a bar: the added parts lean towards them
    page.click("#accompany-go")
    cards = four_candidates(page, "Accompaniments for your melody", artifacts / "co-composer-accompaniments.png")
    expect(cards.first.locator("h3")).to_have_text("Accompaniment 1")

    cards.nth(2).locator(".pick").click()
    expect(page.locator("#piece")).to_be_visible()
    expect(page.locator("#piece-info")).to_contain_text("2 picks")  # the melody, then its accompaniment
    expect(page.locator("#notice")).to_contain_text("Your melody is accompanied")
    expect(cards).to_have_count(0)
    accompanied = piece_midi()
    table = read_midi(accompanied)
    assert melody <= exact_notes(table) and len(table) > len(melody)  # the melody note for note, and more
    added = table.select(np.flatnonzero(np.isin(table.family, [FAMILIES.index("piano"), FAMILIES.index("strings")])))
    bar_chord = np.array([[0, 4, 7], [7, 11, 2], [9, 0, 4], [5, 9, 0]])[(added.onset // 4).astype(int) % 4]
    assert len(added) and (bar_chord == (added.pitch % 12)[:, None]).any(axis=1).mean() > 0.9

    page.locator("#rewrite-from").fill("3")
    page.locator("#rewrite-to").fill("2")
    page.click("#rewrite-go")
    expect(page.locator("#error")).to_have_text("give the span to rewrite: from must come before to")
    page.locator("#rewrite-from").fill("1")
    page.locator("#rewrite-to").fill("3")
    page.click("#rewrite-go")
    cards = four_candidates(page, "Rewrites of 1.0-3.0 s", artifacts / "co-composer-rewrites.png")
    expect(cards.first.locator(".pick")).to_have_text("Use this rewrite")
    cards.nth(0).locator(".pick").click()
    expect(page.locator("#piece-info")).to_contain_text("3 picks")
    expect(page.locator("#notice")).to_contain_text("The span is rewritten")
    onset = table.seconds(table.onset)
    outside = exact_notes(table, (onset < 1) | (onset >= 3))
    assert outside <= exact_notes(read_midi(piece_midi()))  # before and after the span: unchanged

    page.click("#undo")
    expect(page.locator("#piece-info")).to_contain_text("2 picks")
    assert piece_midi() == accompanied
    page.click("#undo")
    expect(page.locator("#piece-info")).to_contain_text("1 pick")
    expect(page.locator("#undo")).to_be_disabled()
    assert exact_notes(read_midi(piece_midi())) == melody  # the melody alone, as uploaded
