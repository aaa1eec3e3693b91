// featuregen search page: plain JS over the JSON API; every text from the server is set with
// textContent (never parsed as HTML), and nothing is inline in the HTML, so the page runs
// under a Content-Security-Policy without 'unsafe-inline'. The search lives in the URL (q, mode,
// category, like, image, and k: hits per page); an uploaded query image is kept in the history
// entry's state, so reload and back redo the search.
import { arrowKeys, focusHit, listenForImages } from "./input.js";
import { element, fillDetail, renderHit } from "./render.js";

// What the page offers when the server has no /api/info (an older server).
const FALLBACK_MODES = [
  { name: "caption", label: "Captions", searches: "what the images' captions say (semantic)" },
  {
    name: "image",
    label: "Image vectors",
    searches: "what the pixels show (text encoder over DINOv2)",
  },
  { name: "keyword", label: "Keywords", searches: "the words of prompts and captions (full text)" },
  { name: "hybrid", label: "Hybrid", searches: "every list above, fused by rank" },
];
const MAX_SAVED_IMAGE = 8_000_000; // characters of a data URL kept in a history entry
const PAGE = Math.min(
  1000,
  Math.max(1, Number.parseInt(new URLSearchParams(location.search).get("k"), 10) || 40),
);
const $ = (selector) => document.querySelector(selector);
const box = $("#q");
const results = $("#results");
const facetsNav = $("#facets");
const summary = $("#summary");
const message = $("#message");
const detail = $("#detail");
const queryImage = $("#query-image");

let info = {
  modes: FALLBACK_MODES,
  default_mode: "hybrid",
  default_reason: "",
  examples: [],
  categories: {},
  total_images: null,
};
let state = blank();
let lostImage = false; // the URL names an image search whose image this history entry lacks
let nextCursor = null;
let loading = false;
let generation = 0; // answers of an older query are dropped
let broken = 0;
let lastAnswer = null;
let hits = []; // the hits shown, in order (the detail view steps through them)
let openIndex = -1;

function blank(mode = null) {
  return {
    q: "",
    mode: mode || info.default_mode,
    category: null,
    like: null,
    image: null,
    imageData: null,
  };
}

// ---- modes, from /api/info ----

async function loadInfo() {
  try {
    const response = await fetch("/api/info");
    if (response.ok) {
      const body = await response.json();
      info = { ...info, ...body, modes: body.modes?.length ? body.modes : FALLBACK_MODES };
    }
  } catch {
    // keep the static list
  }
  if (!info.modes.some((m) => m.name === info.default_mode)) info.default_mode = info.modes[0].name;
  renderModes();
}

function modeNamed(name) {
  if (name === "text" && !modeInfo("text") && modeInfo("image")) return "image"; // old links
  return modeInfo(name) ? name : info.default_mode;
}

function modeInfo(name) {
  return info.modes.find((m) => m.name === name);
}

function renderModes() {
  const legend = $("#modes legend");
  const labels = info.modes.map((mode) => {
    const label = element("label");
    label.title = `searches ${mode.searches}`;
    const radio = element("input");
    radio.type = "radio";
    radio.name = "mode";
    radio.value = mode.name;
    radio.addEventListener("change", () => {
      state.mode = radio.value;
      showModeHelp();
      if (state.q && !state.like && !state.image) {
        writeUrl();
        run();
      }
    });
    label.append(radio, ` ${mode.label || mode.name}`);
    return label;
  });
  $("#modes").replaceChildren(legend, ...labels);
}

function showMode() {
  const radio = document.querySelector(`input[name=mode][value="${CSS.escape(state.mode)}"]`);
  if (radio) radio.checked = true;
  showModeHelp();
}

function showModeHelp() {
  const help = $("#mode-help");
  if (state.image || state.like) {
    help.textContent = "Image search: the stored images nearest the query image's DINOv2 vector.";
    return;
  }
  const mode = modeInfo(state.mode);
  if (!mode) return;
  const chosen = mode.name === info.default_mode && info.default_reason;
  help.textContent =
    `${mode.label || mode.name} searches ${mode.searches}.` +
    (mode.name === "hybrid" ? weightsSaid() : "") +
    (chosen ? ` The default: ${info.default_reason}` : "");
}

// Hybrid's weights as /api/info gives them: which lists it reads, and what chose them.
function weightsSaid() {
  const weights = Object.entries(info.hybrid_weights || {});
  if (!weights.length) return "";
  const label = (name) => modeInfo(name)?.label || name;
  const read = weights.filter(([, w]) => w > 0).map(([name, w]) => `${label(name)} ${w}`);
  const unread = weights.filter(([, w]) => !(w > 0)).map(([name]) => label(name));
  return (
    ` Weights: ${read.join(", ")}` +
    (unread.length ? ` (${unread.join(", ")} not read)` : "") +
    (info.hybrid_weights_reason ? `, ${info.hybrid_weights_reason}.` : ".")
  );
}

// ---- the URL and the history entry's state ----

function readUrl() {
  const params = new URLSearchParams(location.search);
  const saved = history.state?.image;
  const image = params.has("image") && saved?.data ? fileFrom(saved) : null;
  state = {
    q: params.get("q") || "",
    mode: modeNamed(params.get("mode")),
    category: params.get("category") || null,
    like: params.get("like") || null,
    image,
    imageData: image ? saved.data : null,
  };
  lostImage = params.has("image") && !image;
  box.value = state.q;
  showMode();
}

function fileFrom(saved) {
  const bytes = Uint8Array.from(atob(saved.data.split(",")[1] || ""), (c) => c.charCodeAt(0));
  return new File([bytes], saved.name, { type: saved.type });
}

function writeUrl() {
  const params = new URLSearchParams();
  if (state.image) params.set("image", state.image.name || "pasted image");
  else if (state.like) params.set("like", state.like);
  else if (state.q) {
    params.set("q", state.q);
    params.set("mode", state.mode);
  }
  if (state.category) params.set("category", state.category);
  if (PAGE !== 40) params.set("k", String(PAGE));
  const url = location.pathname + (params.size ? `?${params}` : "");
  const kept = state.image && state.imageData.length <= MAX_SAVED_IMAGE;
  const entry = kept
    ? { image: { name: state.image.name, type: state.image.type, data: state.imageData } }
    : null;
  if (state.image || url !== location.pathname + location.search) history.pushState(entry, "", url);
  lostImage = false;
}

// ---- searching ----

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
    broken = 0;
    hits = [];
    lastAnswer = null;
    results.replaceChildren();
    hideMessage();
    showQueryImage();
    showModeHelp();
    $("#start").hidden = hasQuery() || lostImage;
    if (!hasQuery()) {
      facetsNav.replaceChildren();
      summary.textContent = "";
      if (lostImage)
        showMessage("This page's query image is not kept here: drop or paste it again.", false);
      else renderStart();
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
    if (!append) renderFacets(body.facets || {});
    body.hits.forEach((hit) => {
      hits.push(hit);
      results.append(
        renderHit(hit, hits.length - 1, {
          scoreKind: body.score_kind,
          onOpen: openDetail,
          onLike: searchLike,
          onBroken: () => {
            if (mine !== generation) return; // a thumbnail of a list already replaced
            broken += 1;
            renderSummary();
          },
        }),
      );
    });
    if (!hits.length) showMessage(noResultsText(), false);
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
  const total = Number.isInteger(lastAnswer?.total) ? lastAnswer.total : null;
  const count = total ?? hits.length;
  const more = total === null && nextCursor ? "+" : "";
  const mode = modeInfo(lastAnswer?.mode || state.mode);
  const what = state.image
    ? `like ${state.image.name || "the pasted image"}`
    : state.like
      ? "like the chosen image"
      : `· ${mode?.label || state.mode}`;
  const where = state.category ? ` in ${state.category}` : "";
  const parts = [
    `${count.toLocaleString("en")}${more} result${count === 1 ? "" : "s"}${where} ${what}`,
  ];
  if (lastAnswer?.timing_ms) parts.push(`${lastAnswer.timing_ms.total.toFixed(0)} ms`);
  if (broken)
    parts.push(`${broken} thumbnail${broken === 1 ? "" : "s"} could not be loaded (hidden)`);
  summary.textContent = parts.join(" · ");
  const models = Object.entries(lastAnswer?.model || {}).filter(([, v]) => v);
  summary.title = models.map(([k, v]) => `${k}: ${v}`).join("\n");
}

// ---- the start page, the query image, category chips ----

function renderStart() {
  const examples = (info.examples || []).map((text) => {
    const button = element("button", "chip example", text);
    button.type = "button";
    button.addEventListener("click", () => {
      state = { ...blank(state.mode), q: text, category: state.category };
      box.value = text;
      writeUrl();
      run();
    });
    return button;
  });
  $("#examples").replaceChildren(...examples);
  $("#examples").previousElementSibling.hidden = !examples.length;
  const categories = Object.entries(info.categories || {}).map(([name, count]) =>
    chip(name, name, count, renderStart),
  );
  $("#categories").replaceChildren(...categories);
  $("#categories").previousElementSibling.hidden = !categories.length;
  const size = info.total_images;
  $("#store-size").textContent =
    size === 0
      ? "Nothing is stored yet: run `featuregen demo` (the offline demo) or `featuregen run --category C` (your own links), then reload."
      : Number.isInteger(size)
        ? `${size.toLocaleString("en")} images in the store. Type a description, or drop or paste an image.`
        : "Type a description, or drop or paste an image.";
}

function showQueryImage() {
  const img = queryImage.querySelector("img");
  const text = queryImage.querySelector("figcaption");
  queryImage.hidden = !(state.image || state.like);
  if (state.image) {
    img.src = state.imageData;
    text.textContent = `Searching with ${state.image.name || "the pasted image"}`;
  } else if (state.like) {
    img.src = `/thumbs/${encodeURIComponent(state.like)}`;
    text.textContent = "Searching for images like this one";
  } else {
    img.removeAttribute("src");
  }
}

function renderFacets(facets) {
  const chips = [chip(null, "all", null, run)];
  const names = Object.keys(facets);
  if (state.category && !names.includes(state.category)) names.push(state.category);
  names.forEach((name) => chips.push(chip(name, name, facets[name] || 0, run)));
  facetsNav.replaceChildren(...chips);
}

function chip(category, label, count, then) {
  const button = element("button", "chip");
  button.type = "button";
  button.dataset.category = category || "";
  button.setAttribute("aria-pressed", String(state.category === category));
  button.append(label);
  if (count !== null) button.append(element("span", "count", count.toLocaleString("en")));
  button.addEventListener("click", () => {
    state.category = state.category === category ? null : category;
    writeUrl();
    then();
  });
  return button;
}

function searchLike(imageId) {
  if (detail.open) detail.close();
  state = { ...blank(state.mode), like: imageId };
  box.value = "";
  writeUrl();
  run();
  window.scrollTo(0, 0);
}

// ---- the detail view ----

function openDetail(index) {
  const hit = hits[index];
  if (!hit) return;
  openIndex = index;
  fillDetail(detail, hit, {
    scoreKind: lastAnswer?.score_kind,
    mode: lastAnswer?.mode || state.mode,
  });
  detail.querySelector(".prev").disabled = index === 0;
  detail.querySelector(".next").disabled = index === hits.length - 1 && !nextCursor;
  if (!detail.open) detail.showModal();
  focusHit(results.querySelector(`li.hit[data-index="${index}"]`), false);
}

async function stepDetail(by) {
  const to = openIndex + by;
  if (to >= hits.length && nextCursor) await run(true);
  if (to >= 0 && to < hits.length) openDetail(to);
}

detail.querySelector(".close").addEventListener("click", () => detail.close());
detail.querySelector(".prev").addEventListener("click", () => stepDetail(-1));
detail.querySelector(".next").addEventListener("click", () => stepDetail(1));
detail.querySelector(".like").addEventListener("click", () => searchLike(hits[openIndex].image_id));
detail.addEventListener("click", (event) => {
  if (event.target === detail) detail.close(); // a click on the backdrop
});
detail.addEventListener("keydown", (event) => {
  if (event.key === "ArrowLeft" || event.key === "ArrowRight") {
    event.preventDefault();
    stepDetail(event.key === "ArrowLeft" ? -1 : 1);
  }
});
detail.addEventListener("close", () =>
  focusHit(results.querySelector(`li.hit[data-index="${openIndex}"]`)),
);

// ---- messages, image queries, the rest of the page ----

function showMessage(text, isError) {
  message.textContent = text;
  message.classList.toggle("error", isError);
  message.hidden = false;
}

function hideMessage() {
  message.hidden = true;
  message.textContent = "";
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(reader.result));
    reader.addEventListener("error", () => reject(reader.error));
    reader.readAsDataURL(file);
  });
}

async function searchImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    showMessage("That is not an image file.", true);
    return;
  }
  const imageData = await readAsDataUrl(file);
  state = { ...blank(state.mode), category: state.category, image: file, imageData };
  box.value = "";
  writeUrl();
  run();
}

function fillViewport() {
  // Keep loading pages while the sentinel is on screen (a tall window shows more than a page).
  const sentinel = $("#more").getBoundingClientRect();
  if (nextCursor && sentinel.top < window.innerHeight + 200) run(true);
}

$("#search").addEventListener("submit", (event) => {
  event.preventDefault();
  state = { ...blank(state.mode), q: box.value, category: state.category };
  writeUrl();
  run();
});

queryImage.querySelector(".clear").addEventListener("click", () => {
  state = { ...blank(state.mode), category: state.category };
  writeUrl();
  run();
  box.focus();
});

$("#file").addEventListener("change", (event) => {
  searchImage(event.target.files[0]);
  event.target.value = "";
});

listenForImages(searchImage, $("#drop"));

document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  if (
    event.key === "/" &&
    !typing &&
    !detail.open &&
    !event.ctrlKey &&
    !event.metaKey &&
    !event.altKey
  ) {
    event.preventDefault();
    box.focus();
    box.select();
  }
});

arrowKeys(results, box);

new IntersectionObserver((entries) => {
  if (entries.some((entry) => entry.isIntersecting)) run(true);
}).observe($("#more"));

window.addEventListener("popstate", () => {
  if (detail.open) detail.close();
  readUrl();
  run();
});

loadInfo().then(() => {
  readUrl();
  run();
});
