// The co-composer page: settings -> a compose job (polled, cancellable) -> candidates -> pick -> more.
// Accompanying an uploaded melody and rewriting a span of the piece are jobs with candidates too.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { piece: null, job: null, upload: null, melody: null, audio: true, busy: false };

// ---- talking to the server ----------------------------------------------------------------

function describe(detail) {
  if (Array.isArray(detail)) {  // a 422 from request validation: field and reason
    return detail.map((d) => `${(d.loc || []).filter((p) => p !== "body").join(".")}: ${d.msg}`).join("; ");
  }
  return String(detail);
}

async function api(method, url, body) {
  const options = { method, headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(url, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    let message = data.detail !== undefined ? describe(data.detail) : `${response.status} ${response.statusText}`;
    const retry = response.headers.get("Retry-After");
    if (response.status === 503 && retry) message += ` (the server suggests ${retry} s)`;
    throw new Error(message);
  }
  return data;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function showNotice(message) {
  $("notice").textContent = message;
  $("notice").hidden = !message;
}

function setBusy(busy) {
  state.busy = busy;
  for (const id of ["generate", "new-piece", "accompany-go", "rewrite-go"]) $(id).disabled = busy;
  $("undo").disabled = busy || !state.piece || state.piece.versions < 2;
  for (const button of document.querySelectorAll(".pick")) button.disabled = busy;
  $("status").hidden = !busy;
}

// ---- settings ------------------------------------------------------------------------------

async function loadSettings() {
  const [info, styles, instruments, intros] = await Promise.all([
    api("GET", "/api/info"), api("GET", "/api/styles"), api("GET", "/api/instruments"), api("GET", "/api/intros"),
  ]);
  state.audio = info.audio;
  if (!info.audio) {
    $("audio-note").textContent = `No audio on this server (${info.audio_error}); MIDI and piano rolls still work.`;
    $("audio-note").hidden = false;
  }
  const named = styles.find((style) => style.name !== "unknown");
  for (const select of [$("style"), $("accompany-style")]) {
    for (const style of styles) select.add(new Option(`${style.name}: ${style.description}`, style.name));
    if (named) select.value = named.name;  // a real style by default; "unknown" stays a choice
  }
  $("instruments").append(toggles(instruments, "instrument", ["piano"]));
  $("add-families").append(toggles(instruments, "family", ["piano", "bass", "drums"]));
  for (const intro of intros) {
    const option = new Option(`${intro.title} (${intro.composer})`, intro.id);
    option.dataset.style = intro.style;
    $("intro-list").append(option);
  }
}

function toggles(instruments, className, pressed) {
  const box = document.createElement("div");
  box.className = "toggles";
  for (const family of instruments) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = className;
    button.textContent = family.name;
    button.dataset.family = family.name;
    button.style.setProperty("--family", family.color);
    button.setAttribute("aria-pressed", pressed.includes(family.name) ? "true" : "false");
    button.addEventListener("click", () => {
      const on = button.getAttribute("aria-pressed") === "true";
      button.setAttribute("aria-pressed", on ? "false" : "true");
    });
    box.append(button);
  }
  return box;
}

function chosenInstruments(className = "instrument") {
  return [...document.querySelectorAll(`.${className}[aria-pressed=true]`)].map((b) => b.dataset.family);
}

function onIntroChange() {
  const selected = $("intro").selectedOptions[0];
  $("upload-field").hidden = $("intro").value !== "upload";
  if (selected && selected.dataset.style) $("style").value = selected.dataset.style;  // a good default
}

function readFile(input, key) {  // the chosen file as base64, into state[key]
  state[key] = null;
  const file = $(input).files[0];
  if (!file) return;
  if (file.size > 1024 * 1024) {
    showError(`${file.name} is ${Math.round(file.size / 1024)} KB; the limit is 1 MB`);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => { state[key] = String(reader.result).split(",", 2)[1]; showError(""); };
  reader.readAsDataURL(file);
}

function request() {
  const body = {
    style: $("style").value || null,
    seconds: Number($("seconds").value),
    temperature: Number($("temperature").value),
    candidates: 4,
  };
  const instruments = chosenInstruments();
  if (instruments.length) body.instruments = instruments;
  const chords = $("compose-chords").value.trim();
  if (chords) body.chords = chords;
  if (state.piece) {
    body.piece_id = state.piece.id;
  } else if ($("intro").value === "upload") {
    if (!state.upload) throw new Error("choose a MIDI file to start from, or another intro");
    body.prompt_midi = state.upload;
  } else if ($("intro").value) {
    body.intro = $("intro").value;
  }
  return body;
}

function accompanyRequest() {
  if (!state.melody) throw new Error("choose a MIDI file to accompany");
  const add = chosenInstruments("family");
  if (!add.length) throw new Error("choose at least one family to add");
  const body = {
    melody_midi: state.melody, add, style: $("accompany-style").value || null,
    temperature: Number($("temperature").value), candidates: 4,
  };
  const keep = $("keep").value.split(",").map((part) => part.trim()).filter(Boolean);
  if (keep.length) body.keep = keep;  // else all of it
  const chords = $("chords").value.trim();
  if (chords) body.chords = chords;  // else the chords the harmoniser hears
  return body;
}

function rewriteRequest() {
  if (!state.piece) throw new Error("start a piece first");
  const start = Number($("rewrite-from").value);
  const stop = Number($("rewrite-to").value);
  if (!$("rewrite-from").value || !$("rewrite-to").value || !(start < stop)) {
    throw new Error("give the span to rewrite: from must come before to");
  }
  const body = { piece_id: state.piece.id, start, stop, temperature: Number($("temperature").value), candidates: 4 };
  const chords = $("compose-chords").value.trim();
  if (chords) body.chords = chords;  // the settings' chords: over the span too
  return body;
}

// ---- composing -----------------------------------------------------------------------------

const compose = () => run("/api/jobs", request);
const accompany = () => run("/api/accompany", accompanyRequest);
const rewrite = () => run("/api/rewrite", rewriteRequest);

async function run(url, makeBody) {  // start a job, follow it, show its candidates
  if (state.busy) return;
  showError("");
  showNotice("");
  let body;
  try {
    body = makeBody();
  } catch (err) {
    showError(err.message);
    return;
  }
  setBusy(true);
  $("progress").value = 0;
  $("stage").textContent = "sending";
  try {
    state.job = await api("POST", url, body);
    const job = await follow(state.job);
    if (job.status === "done") showCandidates(job.result.candidates);
    else if (job.status === "cancelled") showNotice("Cancelled: nothing was added.");
    else showError(job.error || "composing failed");
  } catch (err) {
    showError(err.message);
  } finally {
    state.job = null;
    setBusy(false);
  }
}

async function follow(job) {
  while (job.status === "queued" || job.status === "running") {
    $("progress").value = job.progress;
    $("stage").textContent = job.status === "queued"
      ? `waiting for the composer (${job.queue_position} ahead)`
      : `${job.stage}: ${Math.round(job.progress * 100)}%`;
    await new Promise((resolve) => setTimeout(resolve, 250));
    job = await api("GET", job.url);
  }
  $("progress").value = 1;
  return job;
}

async function cancel() {
  if (!state.job) return;
  $("stage").textContent = "cancelling";
  try {
    await api("DELETE", state.job.url);
  } catch (err) {
    showError(err.message);
  }
}

const NAMES = { continue: "Idea", accompany: "Accompaniment", rewrite: "Rewrite" };

function describeCandidate(candidate) {
  const families = candidate.families.join(", ") || "silence";
  if (candidate.task === "rewrite") {
    const span = `${candidate.prompt_seconds.toFixed(1)}-${candidate.stop_seconds.toFixed(1)} s`;
    return `${span} rewritten, ${candidate.notes} notes in all: ${families}`;
  }
  if (candidate.task === "accompany") return `${candidate.seconds.toFixed(1)} s, ${candidate.notes} notes: ${families}`;
  const added = candidate.seconds - candidate.prompt_seconds;
  const critic = candidate.critic == null ? "" : ` (critic: ${Math.round(candidate.critic * 100)}% real)`;
  return `${added.toFixed(1)} s new, ${candidate.notes} notes: ${families}${critic}`;
}

function pickLabel(task) {
  if (task === "rewrite") return "Use this rewrite";
  if (task === "accompany") return state.piece ? "Start a new piece with this" : "Start the piece with this";
  return state.piece ? "Add this to the piece" : "Start the piece with this";
}

function candidatesTitle(first) {
  if (!first || first.task === "continue") {
    return state.piece ? "Ideas for what comes next" : "Ideas for the opening";
  }
  if (first.task === "accompany") return "Accompaniments for your melody";
  return `Rewrites of ${first.prompt_seconds.toFixed(1)}-${first.stop_seconds.toFixed(1)} s`;
}

function showCandidates(candidates) {
  const grid = $("candidates");
  grid.replaceChildren();
  candidates.forEach((candidate, index) => {
    const card = document.createElement("article");
    card.className = "candidate panel";
    const name = `${NAMES[candidate.task] || "Idea"} ${index + 1}`;
    const title = document.createElement("h3");
    title.textContent = name;
    const roll = new Image();
    roll.src = candidate.pianoroll_url;
    roll.alt = `piano roll of ${name.toLowerCase()}`;
    const about = document.createElement("p");
    about.textContent = describeCandidate(candidate);
    card.append(title, roll);
    if (candidate.audio_url) {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "none";
      audio.src = candidate.audio_url;
      // Start a little before the new music, so it is heard in context.
      audio.addEventListener("play", () => {
        if (audio.currentTime === 0 && candidate.prompt_seconds > 3) audio.currentTime = candidate.prompt_seconds - 3;
      }, { once: true });
      card.append(audio);
    }
    const pick = document.createElement("button");
    pick.type = "button";
    pick.className = "pick primary";
    pick.textContent = pickLabel(candidate.task);
    pick.addEventListener("click", () => choose(candidate));
    card.append(about, pick);
    grid.append(card);
  });
  $("candidates-title").textContent = candidatesTitle(candidates[0]);
  $("candidates-section").hidden = false;
}

async function choose(candidate) {
  if (state.busy) return;
  showError("");
  try {
    showPiece(await api("POST", `/api/candidates/${candidate.id}/pick`));
  } catch (err) {
    showError(err.message);
    return;
  }
  if (candidate.task === "continue") {
    await compose();  // offer what could come next
  } else {
    hideCandidates();
    showNotice(candidate.task === "rewrite" ? "The span is rewritten; undo takes it back."
      : "Your melody is accompanied; undo takes the accompaniment back.");
  }
}

// ---- the piece -----------------------------------------------------------------------------

function showPiece(piece) {
  state.piece = piece;
  $("piece").hidden = !piece;
  $("generate").textContent = piece ? "Generate more ideas" : "Generate";
  $("intro").disabled = Boolean(piece);  // the piece so far is the opening now
  $("upload").disabled = Boolean(piece);
  if (!piece) return;
  $("piece-info").textContent =
    `${piece.seconds.toFixed(1)} s, ${piece.notes} notes, ${piece.versions} pick${piece.versions === 1 ? "" : "s"}`;
  $("piece-roll").src = piece.pianoroll_url;
  $("download-midi").href = piece.midi_url;
  $("download-wav").hidden = !piece.audio_url;
  $("piece-audio").hidden = !piece.audio_url;
  if (piece.audio_url) {
    $("download-wav").href = piece.audio_url;
    $("piece-audio").src = piece.audio_url;
  }
  $("undo").disabled = state.busy || piece.versions < 2;
  // the span to rewrite stays inside the piece
  $("rewrite-from").max = $("rewrite-to").max = piece.seconds.toFixed(1);
  if (Number($("rewrite-from").value) >= piece.seconds) $("rewrite-from").value = 0;
  if (Number($("rewrite-to").value) > piece.seconds + 0.05) $("rewrite-to").value = piece.seconds.toFixed(1);
}

function hideCandidates() {
  $("candidates").replaceChildren();
  $("candidates-section").hidden = true;
}

async function undo() {
  if (!state.piece || state.busy) return;
  showError("");
  try {
    showPiece(await api("POST", `/api/pieces/${state.piece.id}/undo`));
    hideCandidates();
  } catch (err) {
    showError(err.message);
  }
}

function newPiece() {
  showPiece(null);
  hideCandidates();
}

// ---- wiring --------------------------------------------------------------------------------

function bindRange(id, format) {
  const update = () => { $(`${id}-out`).textContent = format(Number($(id).value)); };
  $(id).addEventListener("input", update);
  update();
}

document.addEventListener("DOMContentLoaded", async () => {
  bindRange("seconds", (v) => `${v} s`);
  bindRange("temperature", (v) => v.toFixed(2));
  $("intro").addEventListener("change", onIntroChange);
  $("upload").addEventListener("change", () => readFile("upload", "upload"));
  $("melody").addEventListener("change", () => readFile("melody", "melody"));
  $("generate").addEventListener("click", compose);
  $("accompany-go").addEventListener("click", accompany);
  $("rewrite-go").addEventListener("click", rewrite);
  $("cancel").addEventListener("click", cancel);
  $("undo").addEventListener("click", undo);
  $("new-piece").addEventListener("click", newPiece);
  try {
    await loadSettings();
    document.body.dataset.ready = "true";
  } catch (err) {
    showError(`cannot reach the server: ${err.message}`);
  }
});
