// labelwise demo page: POST /predict with the text, draw one bar per label. No external resources.
"use strict";

const $ = (id) => document.getElementById(id);
let thresholds = {};

function row(label, probability, threshold) {
  const li = document.createElement("li");
  li.className = "label-row";
  const name = document.createElement("span");
  name.className = "label-name";
  name.textContent = label;
  const track = document.createElement("div");
  track.className = "track";
  track.title = threshold === undefined ? "" : `threshold ${threshold.toFixed(2)}`;
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${Math.max(1, Math.round(probability * 100))}%`;
  track.appendChild(fill);
  if (threshold !== undefined) {
    const tick = document.createElement("div");
    tick.className = "tick";
    tick.style.left = `${Math.round(threshold * 100)}%`;
    track.appendChild(tick);
  }
  const score = document.createElement("span");
  score.className = "label-score";
  score.textContent = probability.toFixed(3);
  li.append(name, track, score);
  return li;
}

function show(prediction) {
  const chosen = $("chosen"), others = $("others");
  chosen.replaceChildren(...prediction.labels.map((l, i) => row(l, prediction.scores[i], thresholds[l])));
  const rest = Object.entries(prediction.probabilities)
    .filter(([label]) => !prediction.labels.includes(label))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 5);
  others.replaceChildren(...rest.map(([l, p]) => row(l, p, thresholds[l])));
  $("none").hidden = prediction.labels.length > 0;
  $("results").hidden = false;
}

async function classify(event) {
  event.preventDefault();
  const text = $("text").value;
  const status = $("status");
  status.classList.remove("error");
  if (!text.trim()) {
    status.textContent = "Type or paste a text first.";
    return;
  }
  $("classify").disabled = true;
  status.textContent = "classifying…";
  try {
    const response = await fetch("/predict", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ texts: [text], top_k_min: $("at-least-one").checked ? 1 : 0 }),
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    show(body.predictions[0]);
    status.textContent = `done in ${body.ms} ms`;
  } catch (err) {
    status.textContent = `Error: ${err.message}`;
    status.classList.add("error");
  } finally {
    $("classify").disabled = false;
  }
}

async function loadInfo() {
  try {
    const [labels, health] = await Promise.all([fetch("/labels"), fetch("/health")].map((p) => p.then((r) => r.json())));
    labels.labels.forEach((label, i) => { thresholds[label] = labels.thresholds[i]; });
    $("model-info").textContent =
      `${labels.labels.length} labels · ${health.backend} ${health.precision} · max ${health.max_seq_length} tokens`;
  } catch (err) {
    $("model-info").textContent = "model information unavailable";
  }
}

$("form").addEventListener("submit", classify);
$("text").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit();
});
loadInfo();
