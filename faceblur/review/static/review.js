// face-blur review page: plain JavaScript over the server's JSON API (faceblur/review/app.py).
"use strict";

const $ = (id) => document.getElementById(id);
const initial = JSON.parse($("initial").textContent);
const size = { width: initial.summary.width, height: initial.summary.height, frames: initial.summary.frames };
let current = 1;
let mode = "rendered";
let keyframes = []; // [{frame, box: [x1, y1, x2, y2]}] in source pixels
let drag = null;
let polling = null;

function status(text, error) {
  const s = $("status");
  s.textContent = text;
  s.className = error ? "error" : "";
}

async function post(url, body) {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" },
                               body: JSON.stringify(body || {}) });
  const data = await r.json().catch(() => ({ error: r.statusText }));
  if (!r.ok) throw new Error(data.error || r.statusText);
  return data;
}

// ------------------------------------------------------------------ frame viewer

function show(n) {
  n = Math.max(1, Math.min(size.frames, Math.round(n) || 1));
  current = n;
  $("scrub").value = n;
  $("frameno").value = n;
  $("frame").src = `/frame/${n}.jpg?mode=${mode}&w=1280&t=${Date.now()}`;
  paint();
}

let scrubTimer = null;
$("scrub").addEventListener("input", () => {
  clearTimeout(scrubTimer);
  scrubTimer = setTimeout(() => show(+$("scrub").value), 60);
});
$("frameno").addEventListener("change", () => show(+$("frameno").value));
$("prev").addEventListener("click", () => show(current - 1));
$("next").addEventListener("click", () => show(current + 1));
document.addEventListener("keydown", (e) => {
  if (e.target.tagName === "INPUT" && e.target.type !== "range" && e.target.type !== "radio") return;
  if (e.key === "ArrowLeft") { show(current - 1); e.preventDefault(); }
  if (e.key === "ArrowRight") { show(current + 1); e.preventDefault(); }
});
document.querySelectorAll("input[name=mode]").forEach((radio) =>
  radio.addEventListener("change", () => { mode = radio.value; show(current); }));
$("frame").addEventListener("load", paint);
$("frame").addEventListener("error", () => status(`frame ${current} could not be read`, true));

// ------------------------------------------------------------------ drawing a missed face

function scale() {
  const img = $("frame");
  return img.clientWidth ? size.width / img.clientWidth : 1;
}

function paint() {
  const img = $("frame"), canvas = $("draw");
  canvas.width = img.clientWidth;
  canvas.height = img.clientHeight;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const k = scale();
  ctx.lineWidth = 2;
  ctx.strokeStyle = "#00e5ff";
  ctx.setLineDash([6, 4]);
  for (const key of keyframes) {
    if (key.frame !== current) continue;
    const [x1, y1, x2, y2] = key.box;
    ctx.strokeRect(x1 / k, y1 / k, (x2 - x1) / k, (y2 - y1) / k);
  }
  if (drag) {
    ctx.strokeStyle = "#ffffff";
    ctx.strokeRect(drag.x0, drag.y0, drag.x1 - drag.x0, drag.y1 - drag.y0);
  }
}

function point(e) {
  const r = $("draw").getBoundingClientRect();
  return [Math.max(0, Math.min(r.width, e.clientX - r.left)), Math.max(0, Math.min(r.height, e.clientY - r.top))];
}

$("draw").addEventListener("mousedown", (e) => {
  const [x, y] = point(e);
  drag = { x0: x, y0: y, x1: x, y1: y };
  e.preventDefault();
});
window.addEventListener("mousemove", (e) => {
  if (!drag) return;
  [drag.x1, drag.y1] = point(e);
  paint();
});
window.addEventListener("mouseup", () => {
  if (!drag) return;
  const k = scale();
  const box = [Math.min(drag.x0, drag.x1) * k, Math.min(drag.y0, drag.y1) * k,
               Math.max(drag.x0, drag.x1) * k, Math.max(drag.y0, drag.y1) * k].map((v) => Math.round(v * 10) / 10);
  drag = null;
  if (box[2] - box[0] >= 4 && box[3] - box[1] >= 4) {
    keyframes = keyframes.filter((key) => key.frame !== current);
    keyframes.push({ frame: current, box });
    keyframes.sort((a, b) => a.frame - b.frame);
    const frames = keyframes.map((key) => key.frame);
    $("first").value = Math.min(...frames);
    $("last").value = Math.max(...frames);
  }
  listKeyframes();
  paint();
});

function listKeyframes() {
  $("keyframes").textContent = keyframes.length ? keyframes.map((key) => key.frame).join(", ") : "none";
  $("add").disabled = keyframes.length === 0;
}

$("clear").addEventListener("click", () => { keyframes = []; listKeyframes(); paint(); });

$("add").addEventListener("click", async () => {
  try {
    const data = await post("/api/faces", { keyframes, first: +$("first").value, last: +$("last").value });
    keyframes = [];
    listKeyframes();
    await refresh(data);
    status(`added sequence ${data.sequence}, blurred over frames ${$("first").value}–${$("last").value}`);
  } catch (err) { status(err.message, true); }
});

// ------------------------------------------------------------------ cards

async function refresh(state) {
  const r = await fetch("/cards");
  $("cards").innerHTML = await r.text();
  if (state) summary(state);
  show(current);
}

function summary(state) {
  const s = state.summary;
  const d = s.decisions;
  $("counts").textContent = `${s.cards} people: ${d.blur} blurred, ${d.keep} kept clear` +
    (d.drop ? `, ${d.drop} not blurred` : "") + (s.dirty ? " · unsaved changes" : s.saved ? " · saved" : "");
}

$("cards").addEventListener("click", async (e) => {
  const toggle = e.target.closest("button.toggle");
  const remove = e.target.closest("button.remove");
  const seek = e.target.closest("[data-frame]");
  try {
    if (toggle) {
      const data = await post("/api/decision", { card: toggle.dataset.card, toggle: true });
      await refresh(data);
      status(`${toggle.dataset.card}: ${data.decision}`);
    } else if (remove) {
      await refresh(await post("/api/faces/remove", { sequence: +remove.dataset.sequence }));
    } else if (seek && seek.dataset.frame) {
      show(+seek.dataset.frame);
    }
  } catch (err) { status(err.message, true); }
});

// ------------------------------------------------------------------ save and render

$("save").addEventListener("click", async () => {
  try {
    const data = await post("/api/save");
    summary(data);
    status(`saved ${data.saved}`);
  } catch (err) { status(err.message, true); }
});

function follow(state) {
  const r = state.render;
  const bar = $("progress");
  if (r.state === "idle") return;
  bar.hidden = false;
  bar.max = Math.max(1, r.total);
  bar.value = r.done;
  $("render").disabled = r.state === "running";
  if (r.state === "running") {
    status(`rendering ${r.done} / ${r.total} frames`);
    clearTimeout(polling);
    polling = setTimeout(async () => follow(await (await fetch("/api/state")).json()), 400);
  } else if (r.state === "done") {
    status(`rendered from ${r.plan}`);
    const link = $("output");
    link.hidden = false;
    if (state.output_url) {
      link.href = state.output_url;
      link.textContent = `open ${r.output.split("/").pop()}`;
    } else {
      link.removeAttribute("href");
      link.textContent = r.output;
    }
  } else {
    status(`render failed: ${r.error}`, true);
  }
}

$("render").addEventListener("click", async () => {
  try {
    $("output").hidden = true;
    const data = await post("/api/render");
    summary(data);
    follow(data);
  } catch (err) { status(err.message, true); }
});

summary(initial);
follow(initial);
listKeyframes();
window.addEventListener("resize", paint);
