// featuregen search page: plain JS over the JSON API; every text from the server is set with
// textContent (never parsed as HTML). The query state lives in the URL (q, mode, category, like,
// and k: hits per page).
"use strict";

const params0 = new URLSearchParams(location.search);
const PAGE = Math.min(1000, Math.max(1, Number.parseInt(params0.get("k"), 10) || 40));
const $ = (selector) => document.querySelector(selector);
const box = $("#q");
const results = $("#results");
const facetsNav = $("#facets");
const summary = $("#summary");
const message = $("#message");

let state = { q: "", mode: "text", category: null, like: null, image: null };
let nextCursor = null;
let loading = false;
let generation = 0; // answers of an older query are dropped
let shown = 0;
let broken = 0;
let lastAnswer = null;

function readUrl() {
  const params = new URLSearchParams(location.search);
  state = {
    q: params.get("q") || "",
    mode: ["text", "keyword", "hybrid"].includes(params.get("mode")) ? params.get("mode") : "text",
    category: params.get("category") || null,
    like: params.get("like") || null,
    image: null,
  };
  box.value = state.q;
  document.querySelector(`input[name=mode][value=${state.mode}]`).checked = true;
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.like) params.set("like", state.like);
  else if (state.q) params.set("q", state.q);
  if (state.q && !state.like) params.set("mode", state.mode);
  if (state.category) params.set("category", state.category);
  if (PAGE !== 40) params.set("k", String(PAGE));
  const url = params.toString() ? `?${params}` : location.pathname;
  if (url !== location.search) history.pushState(null, "", url);
}

function request(cursor) {
  if (state.image) {
    const form = new FormData();
    form.append("file", state.image);
    form.append("k", String(PAGE));
    if (state.category) form.append("category", state.category);
    if (cursor) form.append("cursor", cursor);
    return fetch("/api/search/image", { method: "POST", body: form });
  }
  const params = new URLSearchParams({ k: String(PAGE) });
  if (state.like) params.set("like", state.like);
  else {
    params.set("q", state.q);
    params.set("mode", state.mode);
  }
  if (state.category) params.set("category", state.category);
  if (cursor) params.set("cursor", cursor);
  return fetch(`/api/search?${params}`);
}

function hasQuery() {
  return Boolean(state.image || state.like || state.q.trim());
}

async function run(append = false) {
  if (!append) {
    generation += 1;
    nextCursor = null;
    shown = 0;
    broken = 0;
    results.replaceChildren();
    hideMessage();
    if (!hasQuery()) {
      facetsNav.replaceChildren();
      summary.textContent = "";
      return;
    }
  } else if (!nextCursor || loading) {
    return;
  }
  const mine = generation;
  loading = true;
  try {
    const response = await request(append ? nextCursor : null);
    const body = await response.json().catch(() => ({}));
    if (mine !== generation) return;
    if (!response.ok) {
      showMessage(body.detail || `The server answered ${response.status}.`, true);
      summary.textContent = "";
      return;
    }
    lastAnswer = body;
    nextCursor = body.next_cursor;
    if (!append) renderFacets(body.facets);
    body.hits.forEach((hit) => results.append(renderHit(hit, body.score_kind)));
    shown += body.hits.length;
    if (!shown) showMessage(noResultsText(), false);
    renderSummary();
  } catch (error) {
    if (mine === generation) showMessage(`Search failed: ${error.message}`, true);
  } finally {
    if (mine === generation) loading = false;
  }
  if (nextCursor) fillViewport();
}

function noResultsText() {
  const where = state.category ? ` in ${state.category}` : "";
  if (state.image) return `No images${where} like the uploaded image.`;
  if (state.like) return `No images${where} like this one.`;
  return `No results for “${state.q}”${where}.`;
}

function renderSummary() {
  const what = state.image
    ? `like ${state.image.name || "the pasted image"}`
    : state.like
      ? "like the chosen image"
      : `${state.mode} search`;
  const parts = [`${shown} result${shown === 1 ? "" : "s"} ${what}`];
  if (lastAnswer) parts.push(`${lastAnswer.timing_ms.total.toFixed(0)} ms`);
  if (broken) parts.push(`${broken} thumbnail${broken === 1 ? "" : "s"} could not be loaded (hidden)`);
  summary.textContent = parts.join(" · ");
}

function renderFacets(facets) {
  const chips = [chip(null, "all", null)];
  const names = Object.keys(facets);
  if (state.category && !names.includes(state.category)) names.push(state.category);
  names.forEach((name) => chips.push(chip(name, name, facets[name] || 0)));
  facetsNav.replaceChildren(...chips);
}

function chip(category, label, count) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "chip";
  button.dataset.category = category || "";
  button.setAttribute("aria-pressed", String(state.category === category));
  button.append(label);
  if (count !== null) {
    const badge = document.createElement("span");
    badge.className = "count";
    badge.textContent = String(count);
    button.append(badge);
  }
  button.addEventListener("click", () => {
    state.category = state.category === category ? null : category;
    writeUrl();
    run();
  });
  return button;
}

function renderHit(hit, scoreKind) {
  const item = document.createElement("li");
  item.className = "hit";
  item.dataset.id = hit.image_id;

  const link = document.createElement("a");
  link.className = "thumb";
  link.href = hit.image_url;
  link.target = "_blank";
  link.rel = "noopener";
  const image = document.createElement("img");
  image.loading = "lazy";
  image.alt = hit.prompt || hit.caption || hit.category;
  image.addEventListener("error", () => {
    item.hidden = true;
    broken += 1;
    renderSummary();
  });
  image.src = hit.thumb_url;
  link.append(image);

  const prompt = document.createElement("p");
  prompt.className = "prompt";
  prompt.textContent = [hit.prompt, hit.caption].filter(Boolean).join(" — ") || "(no prompt)";
  link.title = prompt.textContent;

  const meta = document.createElement("div");
  meta.className = "meta";
  const score = document.createElement("span");
  score.className = "score";
  const cosine = hit.cosine !== null;
  score.textContent = (cosine ? hit.cosine : hit.score).toFixed(3);
  score.title = cosine
    ? "cosine similarity (−1…1)"
    : `${scoreKind === "keyword" ? "keyword rank (0…1)" : scoreKind}`;
  const category = document.createElement("span");
  category.className = "category";
  category.textContent = `#${hit.rank} ${hit.category}`;
  const like = document.createElement("button");
  like.type = "button";
  like.className = "like";
  like.textContent = "more like this";
  like.addEventListener("click", () => {
    state = { q: "", mode: state.mode, category: null, like: hit.image_id, image: null };
    box.value = "";
    writeUrl();
    run();
    window.scrollTo(0, 0);
  });
  meta.append(score, category, like);
  item.append(link, prompt, meta);
  return item;
}

function showMessage(text, isError) {
  message.textContent = text;
  message.classList.toggle("error", isError);
  message.hidden = false;
}

function hideMessage() {
  message.hidden = true;
  message.textContent = "";
}

function searchImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    showMessage("That is not an image file.", true);
    return;
  }
  state = { q: "", mode: state.mode, category: state.category, like: null, image: file };
  box.value = "";
  writeUrl(); // an uploaded image cannot be put in a link: the URL keeps the category only
  run();
}

function fillViewport() {
  // Keep loading pages while the sentinel is on screen (a tall window shows more than a page).
  const sentinel = $("#more").getBoundingClientRect();
  if (nextCursor && sentinel.top < window.innerHeight + 200) run(true);
}

$("#search").addEventListener("submit", (event) => {
  event.preventDefault();
  state = { q: box.value, mode: state.mode, category: state.category, like: null, image: null };
  writeUrl();
  run();
});

document.querySelectorAll("input[name=mode]").forEach((radio) =>
  radio.addEventListener("change", () => {
    state.mode = radio.value;
    if (state.q && !state.like && !state.image) {
      writeUrl();
      run();
    }
  }),
);

$("#file").addEventListener("change", (event) => {
  searchImage(event.target.files[0]);
  event.target.value = "";
});

document.addEventListener("paste", (event) => {
  const items = [...(event.clipboardData?.items || [])];
  const item = items.find((i) => i.kind === "file" && i.type.startsWith("image/"));
  if (!item) return; // text pastes go into the box as usual
  event.preventDefault();
  searchImage(item.getAsFile());
});

const dropCover = $("#drop");
let dragDepth = 0;
window.addEventListener("dragenter", (event) => {
  if (![...event.dataTransfer.types].includes("Files")) return;
  dragDepth += 1;
  dropCover.hidden = false;
});
window.addEventListener("dragleave", () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (!dragDepth) dropCover.hidden = true;
});
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  dragDepth = 0;
  dropCover.hidden = true;
  searchImage(event.dataTransfer.files[0]);
});

document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    box.focus();
    box.select();
  }
});

new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting)) run(true);
}).observe($("#more"));

window.addEventListener("popstate", () => {
  readUrl();
  run();
});

readUrl();
run();
