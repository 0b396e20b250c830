// scream review: the list of saved clips, one clip's picture and audio, and the label buttons.
// No framework: the page talks to the device's JSON API (edge/review.py) and draws on a canvas.
"use strict";

const state = { events: [], selected: -1 };
const $ = (id) => document.getElementById(id);
const LABEL_TEXT = { scream: "scream", non_scream: "not a scream", unsure: "unsure", "": "" };

function say(text, isError) {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "error" : "";
  box.hidden = !text;
}

async function api(path, options) {
  const reply = await fetch(path, Object.assign({ credentials: "same-origin" }, options || {}));
  let body = null;
  try { body = await reply.json(); } catch (e) { body = null; }
  if (!reply.ok) {
    const reason = body && body.error ? body.error : `${reply.status} ${reply.statusText}`;
    const error = new Error(reason);
    error.status = reply.status;
    throw error;
  }
  return body;
}

function filtersFromUrl() {
  const q = new URLSearchParams(location.search);
  $("f-label").value = q.get("label") || "unlabelled";
  $("f-score").value = q.get("min_score") || "0";
  return q.get("day") || "";
}

function filterQuery() {
  const q = new URLSearchParams();
  q.set("label", $("f-label").value);
  const day = $("f-day").value || $("f-day").dataset.initial;
  if (day) q.set("day", day);
  if (Number($("f-score").value) > 0) q.set("min_score", $("f-score").value);
  return q;
}

async function load(keepClip) {
  const q = filterQuery();
  history.replaceState(null, "", "?" + q.toString());
  let data;
  try {
    data = await api("/api/events?" + q.toString());
  } catch (e) {
    say("could not load the clips: " + e.message, true);
    return;
  }
  $("title").textContent = data.title;
  const day = $("f-day");
  const chosen = day.value || day.dataset.initial || "";
  day.replaceChildren(new Option("every day", ""), ...data.days.map((d) => new Option(d, d)));
  day.value = data.days.includes(chosen) ? chosen : "";
  day.dataset.initial = "";
  const c = data.counts;
  $("counts").textContent = `${c.all} clips: ${c.unlabelled} unlabelled, ${c.scream} scream, ` +
    `${c.non_scream} not a scream, ${c.unsure} unsure`;
  if (data.problems.length) say("the event log has problems: " + data.problems.slice(0, 3).join("; "), true);
  state.events = data.events;
  renderList();
  const again = state.events.findIndex((e) => e.clip === keepClip);
  select(again >= 0 ? again : (state.events.length ? 0 : -1));
}

function renderList() {
  const body = $("events").tBodies[0];
  body.replaceChildren(...state.events.map((e, i) => {
    const row = document.createElement("tr");
    row.dataset.clip = e.clip;
    if (!e.exists) row.classList.add("missing");
    const cells = [e.start_text.replace("T", " ").slice(0, 19) || e.clip, e.site,
      (e.peak_score == null ? "" : e.peak_score.toFixed(2)) + (e.vetoed ? " (vetoed)" : "")];
    for (const text of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      row.append(td);
    }
    const td = document.createElement("td");
    if (e.label) {
      const badge = document.createElement("span");
      badge.className = "badge " + e.label;
      badge.textContent = LABEL_TEXT[e.label];
      td.append(badge);
    }
    row.append(td);
    row.addEventListener("click", () => select(i));
    return row;
  }));
  $("empty").hidden = state.events.length > 0;
}

function select(i) {
  state.selected = i;
  for (const row of $("events").tBodies[0].rows) row.classList.toggle("selected", row.rowIndex - 1 === i);
  const detail = $("detail");
  if (i < 0) { detail.hidden = true; return; }
  const e = state.events[i];
  detail.hidden = false;
  detail.dataset.clip = e.clip;
  $("d-time").textContent = (e.start_text || e.clip).replace("T", " ");
  const verdict = e.verify_score != null && `verifier ${e.verify_score.toFixed(3)}`;
  const parts = [e.vetoed && "vetoed by the verifier: no alarm fired", e.site && `site ${e.site}`, e.location,
    e.peak_score != null && `peak score ${e.peak_score.toFixed(3)}`, verdict,
    e.duration_s != null && `event ${e.duration_s.toFixed(1)} s`, e.schedule && `schedule ${e.schedule}`,
    e.model_sha256 && `model ${e.model_sha256.slice(0, 12)}`, e.clip];
  $("d-meta").textContent = parts.filter(Boolean).join(" · ");
  $("d-note").value = e.note || "";
  showLabel(e);
  const audio = $("d-audio");
  const canvas = $("d-picture");
  canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  if (!e.exists) {
    audio.removeAttribute("src");
    audio.load();
    $("d-picture-note").textContent = "";
    say(`clip ${e.clip} is no longer on the device (retention deleted it, or someone removed it)`, true);
    return;
  }
  audio.src = "/clips/" + encodeURIComponent(e.clip);
  drawTimeline(e.clip);
}

function showLabel(e) {
  $("d-label").textContent = e.label ? `labelled ${LABEL_TEXT[e.label]} at ${e.labelled.replace("T", " ")}` +
    (e.exported ? `, fetched ${e.exported.replace("T", " ")}` : "") : "not labelled yet";
  for (const b of document.querySelectorAll("#buttons button")) b.classList.toggle("current", b.dataset.label === e.label);
}

async function drawTimeline(clip) {
  const note = $("d-picture-note");
  note.textContent = "analysing...";
  let t;
  try {
    t = await api("/api/timeline/" + encodeURIComponent(clip));
  } catch (err) {
    note.textContent = "";
    if (err.status === 410) {
      markMissing(clip);
      say(err.message, true);
    } else {
      note.textContent = "no picture: " + err.message;
    }
    return;
  }
  if ($("detail").dataset.clip !== clip) return; // another clip was chosen meanwhile
  const canvas = $("d-picture");
  const g = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, specH = Math.round(H * 0.55), scoreTop = specH + 6;
  const { frames, bands, levels } = t.logmel;
  if (frames && bands) {
    const raw = atob(levels);
    const image = g.createImageData(frames, bands);
    for (let f = 0; f < frames; f++) {
      for (let b = 0; b < bands; b++) {
        const v = raw.charCodeAt(f * bands + b);
        const p = ((bands - 1 - b) * frames + f) * 4; // low bands at the bottom
        image.data[p] = Math.min(255, v * 1.6);
        image.data[p + 1] = Math.max(0, v * 1.4 - 110);
        image.data[p + 2] = Math.max(0, 120 - Math.abs(v - 90));
        image.data[p + 3] = 255;
      }
    }
    const off = document.createElement("canvas");
    off.width = frames; off.height = bands;
    off.getContext("2d").putImageData(image, 0, 0);
    g.imageSmoothingEnabled = false;
    g.drawImage(off, 0, 0, W, specH);
  }
  const x = (s) => (s / Math.max(t.duration_s, 1e-6)) * W;
  const y = (v) => scoreTop + (1 - v) * (H - scoreTop - 2);
  g.fillStyle = "#111"; g.fillRect(0, specH, W, H - specH);
  for (const ev of t.events) {
    g.fillStyle = "rgba(229, 57, 53, 0.35)";
    g.fillRect(x(ev.start_s), 0, Math.max(2, x(ev.end_s) - x(ev.start_s)), H);
  }
  const line = (key, colour, width) => {
    g.strokeStyle = colour; g.lineWidth = width; g.beginPath();
    t.windows.forEach((w, i) => (i ? g.lineTo(x(w.end_s), y(w[key])) : g.moveTo(x(w.end_s), y(w[key]))));
    g.stroke();
  };
  if (t.windows.length) {
    line("on", "#ef5350", 1); line("off", "#ffa726", 1); line("decision_score", "#ce93d8", 1.5); line("score", "#42a5f5", 2);
  }
  note.textContent = `${t.windows.length} windows, ${t.events.length} event(s) with today's model; ` +
    `blue: score, purple: what met the thresholds, red/orange: on ${t.on.toFixed(2)} / off ${t.off.toFixed(2)}`;
}

function markMissing(clip) {
  const i = state.events.findIndex((e) => e.clip === clip);
  if (i >= 0) state.events[i].exists = false;
  const row = document.querySelector(`tr[data-clip="${CSS.escape(clip)}"]`);
  if (row) row.classList.add("missing");
}

async function label(value) {
  const e = state.events[state.selected];
  if (!e) return;
  try {
    const saved = await api("/api/labels", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ clip: e.clip, label: value, note: $("d-note").value }),
    });
    Object.assign(e, { label: saved.label, labelled: saved.time, note: saved.note, exported: "" });
    say(`${e.clip}: ${LABEL_TEXT[saved.label]}`, false);
    renderList();
    const next = Math.min(state.selected + 1, state.events.length - 1);
    select(next === state.selected ? state.selected : next);
  } catch (err) {
    if (err.status === 410) markMissing(e.clip);
    say("not saved: " + err.message, true);
  }
}

function onKey(ev) {
  if (ev.target.tagName === "INPUT" || ev.target.tagName === "SELECT" || ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const keys = { s: "scream", n: "non_scream", u: "unsure" };
  if (keys[ev.key]) { label(keys[ev.key]); ev.preventDefault(); }
  else if (ev.key === "j" || ev.key === "ArrowDown") { select(Math.min(state.selected + 1, state.events.length - 1)); ev.preventDefault(); }
  else if (ev.key === "k" || ev.key === "ArrowUp") { select(Math.max(state.selected - 1, 0)); ev.preventDefault(); }
  else if (ev.key === " ") { const a = $("d-audio"); if (a.src) { a.paused ? a.play() : a.pause(); } ev.preventDefault(); }
}

document.addEventListener("DOMContentLoaded", () => {
  $("f-day").dataset.initial = filtersFromUrl();
  for (const b of document.querySelectorAll("#buttons button")) b.addEventListener("click", () => label(b.dataset.label));
  for (const id of ["f-label", "f-day", "f-score"]) $(id).addEventListener("change", () => load());
  $("filters").addEventListener("submit", (ev) => ev.preventDefault());
  $("d-audio").addEventListener("error", () => {
    const e = state.events[state.selected];
    if (e && e.exists && $("d-audio").getAttribute("src")) {
      api("/clips/" + encodeURIComponent(e.clip), { method: "HEAD" }).catch((err) => {
        if (err.status === 410) { markMissing(e.clip); say(gone(e.clip), true); }
      });
    }
  });
  document.addEventListener("keydown", onKey);
  load();
});

function gone(clip) {
  return `clip ${clip} is no longer on the device (retention deleted it, or someone removed it)`;
}
