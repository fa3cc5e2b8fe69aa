// The clipsearch page: search by text or by image, the results grid, filters, URL state and the keyboard.
import {
  ApiError,
  altText,
  api,
  el,
  errorMessage,
  formatBytes,
  formatCount,
  formatScore,
  originalDetail,
  richText,
} from "./api.js";
import { LANGUAGES, language, onLanguageChange, rich, setLanguage, t, translate } from "./i18n.js";
import { getImage, isImageKey, newImageKey, putImage } from "./images.js";
import { installImageDrop, installKeyboard } from "./inputs.js";
import { createLibrary } from "./library.js";
import { saidBlock } from "./said.js";
import { createServices } from "./services.js";
import { createViewer } from "./viewer.js";

const PAGE = 24;
const TYPING_DELAY_MS = 300;
const SLIDER_DELAY_MS = 250;
const MAX_UPLOAD = Number.parseInt(document.body.dataset.maxUpload, 10) || 20 * 1024 * 1024;

const $ = (id) => document.getElementById(id);
const ui = {
  q: $("q"),
  form: $("search-form"),
  said: $("said"),
  saidForm: $("said-form"),
  imageInput: $("image-input"),
  min: $("min-score"),
  minValue: $("min-score-value"),
  collection: $("collection"),
  media: [...document.querySelectorAll('input[name="media"]')],
  dups: $("collapse-duplicates"),
  chip: $("query-chip"),
  status: $("status"),
  welcome: $("welcome"),
  welcomeStats: $("welcome-stats"),
  message: $("message"),
  results: $("results"),
  more: $("more"),
  sentinel: $("sentinel"),
  drop: $("drop"),
  template: $("card-template"),
  language: $("language"),
};

// Items whose "More like this" ran, for the name shown beside the query.
const known = new Map();
// The key of an image search in the URL whose picture this tab no longer has.
let missingImage = "";
let state = emptyState();
let hits = [];
let hasMore = false;
let partial = null; // while the library is still loading after a restart: the percentage indexed
let loading = false;
let seq = 0;
let controller = null;
let typingTimer = 0;
let sliderTimer = 0;
let lastKey = "";
let failedOnService = false;
// Off after a page failed to load, so that scrolling does not retry it in a loop; the button still does.
let autoLoad = true;
let collectionsShown = "";
// Draws the message box again (in another language): set by showMessage's callers.
let redrawMessage = null;
let lastMs;

const viewer = createViewer({ onLike: moreLike });
const services = createServices({ onStats });
// Files added, indexed or removed change the library's counts and collections.
const library = createLibrary({ onChange: () => services.refresh() });
// The keyboard's shortcuts wait while a dialog is open.
const dialogs = {
  get isOpen() {
    return viewer.isOpen || library.isOpen;
  },
};

function emptyState() {
  return { q: "", said: "", like: "", image: "", min: null, collection: "", media: "", frames: false, dups: false };
}

const active = (s) => Boolean(s.q || s.said || s.like || s.image);

// The slider spans the model's cosine range; its left end means no minimum (null), so nothing is cut.
const SCORE_FLOOR = -1;
const minimumOf = (value) => {
  const min = Math.round(Number(value) * 100) / 100;
  return Number.isFinite(min) && min > SCORE_FLOOR ? Math.min(1, min) : null;
};
const hasMin = (s) => s.min !== null;

// ---- URL state ---------------------------------------------------------------------------------------

function stateFromLocation() {
  const params = new URLSearchParams(location.search);
  const s = emptyState();
  s.q = (params.get("q") || "").trim();
  // said: words of the subtitles, alone or with q (what is seen).
  s.said = (params.get("said") || "").trim();
  s.like = s.q || s.said ? "" : (params.get("like") || "").trim();
  const image = (params.get("image") || "").trim();
  missingImage = "";
  if (!s.q && !s.said && !s.like && isImageKey(image)) {
    if (getImage(image)) s.image = image;
    else missingImage = image;
  }
  s.min = params.has("min") ? minimumOf(params.get("min")) : null;
  s.collection = params.get("collection") || "";
  const media = params.get("media") || "";
  s.media = media === "image" || media === "video" ? media : "";
  // frames=1: every video frame its own result rather than one result per moment.
  s.frames = params.get("frames") === "1";
  // dups=1: near-duplicate photos (resized or re-encoded copies) as one result listing its copies.
  s.dups = params.get("dups") === "1";
  return s;
}

function urlFor(s) {
  const params = new URLSearchParams();
  if (s.q) params.set("q", s.q);
  else if (s.like) params.set("like", s.like);
  else if (s.image) params.set("image", s.image);
  if (s.said) params.set("said", s.said);
  if (hasMin(s)) params.set("min", s.min.toFixed(2));
  if (s.collection) params.set("collection", s.collection);
  if (s.media) params.set("media", s.media);
  if (s.frames) params.set("frames", "1");
  if (s.dups) params.set("dups", "1");
  const query = params.toString();
  return query ? `${location.pathname}?${query}` : location.pathname;
}

// Makes `next` the current state: a new history entry, or the same one while typing or sliding.
function commit(next, { typing = false, replace = false, force = false } = {}) {
  state = next;
  missingImage = "";
  const url = urlFor(state);
  const entry = { image: state.image || null, typing };
  const same = url === location.pathname + location.search && (history.state?.image || null) === entry.image;
  if (replace || same || (typing && history.state?.typing)) history.replaceState(entry, "", url);
  else history.pushState(entry, "", url);
  run({ force });
}

// ---- searching -----------------------------------------------------------------------------------------

function searchParams(offset, { min = state.min, top = PAGE } = {}) {
  const params = new URLSearchParams();
  if (state.q) params.set("q", state.q);
  else if (state.like) params.set("like", state.like);
  if (state.said) params.set("said", state.said);
  params.set("top", String(top));
  params.set("offset", String(offset));
  if (min !== null) params.set("min_score", min.toFixed(2));
  if (state.collection) params.set("collection", state.collection);
  if (state.media) params.set("media", state.media);
  if (state.frames) params.set("frames", "1");
  if (state.dups) params.set("collapse_duplicates", "true");
  return params;
}

function request(offset, signal, options) {
  const params = searchParams(offset, options);
  if (state.image) {
    const image = getImage(state.image);
    const form = new FormData();
    form.append("image", image.blob, image.name);
    return api(`/api/search/image?${params}`, { method: "POST", body: form, signal });
  }
  return api(`/api/search?${params}`, { signal });
}

function run({ force = false } = {}) {
  syncControls();
  renderChip();
  const key = JSON.stringify(state);
  if (!force && key === lastKey) return;
  lastKey = key;
  if (!active(state)) {
    controller?.abort();
    seq += 1;
    hits = [];
    hasMore = false;
    loading = false;
    showWelcome();
    if (missingImage) {
      redrawMessage = () => showMessage(t("image.missingTitle"), t("image.missingText"));
      redrawMessage();
    }
    return;
  }
  fetchPage(0);
}

async function fetchPage(offset) {
  controller?.abort();
  controller = new AbortController();
  const mine = ++seq;
  loading = true;
  updateMore();
  if (offset === 0) {
    ui.welcome.hidden = true;
    setStatus(t("status.searching"));
    ui.results.classList.add("stale");
  }
  ui.results.setAttribute("aria-busy", "true");
  const started = performance.now();
  try {
    const body = await request(offset, controller.signal);
    if (mine !== seq) return;
    failedOnService = false;
    autoLoad = true;
    const ms = performance.now() - started;
    if (offset === 0) {
      hits = body.hits;
      renderAll();
    } else {
      const seen = new Set(hits.map((hit) => hit.id));
      const fresh = body.hits.filter((hit) => !seen.has(hit.id));
      hits = hits.concat(fresh);
      ui.results.append(...fresh.map(card));
    }
    hasMore = Boolean(body.has_more) && body.hits.length > 0;
    partial = body.partial ? body.percent_indexed : null;
    viewer.update(hits);
    if (hits.length === 0) await renderEmpty(mine);
    else renderStatus(ms);
  } catch (error) {
    if (error.name === "AbortError" || mine !== seq) return;
    if (offset > 0) {
      // The results so far stay; "Show more results" tries the next page again.
      autoLoad = false;
      setStatus(t("status.failedPage", { results: resultCount(), error: errorMessage(error) }));
    } else {
      lastKey = "";
      hasMore = false;
      showError(error);
    }
    if (error.serviceProblem) {
      failedOnService = true;
      services.refresh();
    }
  } finally {
    if (mine === seq) {
      loading = false;
      ui.results.removeAttribute("aria-busy");
      ui.results.classList.remove("stale");
      updateMore();
      requestAnimationFrame(maybeLoadMore);
    }
  }
}

function loadMore() {
  if (hasMore && !loading && active(state)) fetchPage(hits.length);
}

// Loads the next page while the end of the grid is on screen (or nearly).
function maybeLoadMore() {
  if (!hasMore || loading || !autoLoad) return;
  if (ui.sentinel.getBoundingClientRect().top < window.innerHeight + 800) loadMore();
}

function moreLike(hit) {
  known.set(hit.id, hit);
  ui.q.value = "";
  commit({ ...state, q: "", like: hit.id, image: "" });
  window.scrollTo({ top: 0 });
}

function searchImage(file) {
  if (!file) return;
  const name = file.name || t("image.pasted");
  let problem = null;
  if (file.type && !file.type.startsWith("image/")) {
    problem = ["image.notImage", { name }];
  } else if (file.size === 0) {
    problem = ["image.empty", { name }];
  } else if (file.size > MAX_UPLOAD) {
    problem = ["image.tooLarge", { name, size: formatBytes(file.size), limit: formatBytes(MAX_UPLOAD) }];
  }
  if (problem) {
    lastKey = "";
    const [key, keyParams] = problem;
    showError(new ApiError(t(key, keyParams), 400, { key, keyParams }));
    return;
  }
  const key = newImageKey();
  putImage(key, file, name);
  ui.q.value = "";
  commit({ ...state, q: "", like: "", image: key });
  window.scrollTo({ top: 0 });
}

// ---- rendering -------------------------------------------------------------------------------------------

function setStatus(text) {
  ui.status.textContent = text;
}

const resultCount = () => t("status.results", { count: hits.length });

function renderStatus(ms) {
  lastMs = ms;
  let text = resultCount();
  if (hasMin(state)) text = t("status.scoring", { results: text, min: formatScore(state.min) });
  if (hasMore) text = t("status.moreBelow", { status: text });
  if (ms !== undefined) {
    const took = ms < 1000 ? t("time.ms", { value: Math.round(ms) }) : t("time.s", { value: (ms / 1000).toFixed(1) });
    text = t("status.took", { status: text, time: took });
  }
  if (partial !== null) text = t("status.partial", { status: text, percent: Math.min(99, Math.floor(partial)) });
  setStatus(text);
}

function card(hit) {
  const node = ui.template.content.firstElementChild.cloneNode(true);
  translate(node);
  node.dataset.id = hit.id;
  node.dataset.score = String(hit.score);
  const open = node.querySelector(".card-open");
  open.setAttribute("aria-label", t("card.open", { name: hit.name }));
  const img = node.querySelector(".thumb");
  img.alt = altText(hit);
  img.addEventListener("error", () => node.classList.add("broken"), { once: true });
  img.src = hit.thumbnail_url;
  if (hit.media === "video") {
    const badge = node.querySelector(".badge-time");
    badge.hidden = false;
    badge.querySelector("span").textContent = hit.time || "";
    if (hit.span) {
      // A moment: the frames of one shot that match, shown as one result at its best frame.
      const span = node.querySelector(".card-span");
      span.hidden = false;
      span.textContent =
        hit.said_lines?.length && hit.frames <= 1 ? hit.span : t("card.frames", { span: hit.span, count: hit.frames });
    }
    const said = saidBlock(hit);
    if (said) node.querySelector(".card-said").replaceWith(said);
  } else if (hit.duplicates?.length) {
    const copies = node.querySelector(".card-span");
    copies.hidden = false;
    copies.textContent = t("card.duplicates", { count: hit.duplicates.length });
    copies.title = hit.duplicates.map((d) => d.source || d.name).join("\n");
  }
  const name = node.querySelector(".card-name");
  name.textContent = hit.name;
  name.title = hit.source || hit.name;
  const score = node.querySelector(".card-score");
  score.replaceChildren(el("span", { class: "visually-hidden", text: t("card.scoreLabel") }), formatScore(hit.score));
  score.title = t("card.scoreTitle");
  // A said search's scores are fused ranks, not similarities: the minimum score does not apply to them.
  node.hidden = !state.said && hasMin(state) && hit.score < state.min;
  open.addEventListener("click", () => viewer.open(hits, hits.indexOf(hit), { from: open }));
  node.querySelector(".card-like").addEventListener("click", () => moreLike(hit));
  node
    .querySelector(".card-what")
    .addEventListener("click", () => viewer.open(hits, hits.indexOf(hit), { from: open, focusLabels: true }));
  return node;
}

function renderAll() {
  ui.welcome.hidden = true;
  ui.message.hidden = true;
  ui.results.replaceChildren(...hits.map(card));
}

function showWelcome() {
  ui.results.replaceChildren();
  ui.message.hidden = true;
  redrawMessage = null;
  ui.welcome.hidden = false;
  setStatus("");
  updateMore();
}

function showMessage(title, text, { alert = false, action = null, detail = "" } = {}) {
  const box = el("div", { class: alert ? "message-box error" : "message-box", role: alert ? "alert" : null });
  box.append(el("h2", { text: title }));
  if (text) box.append(el("p", {}, ...rich(text)));
  // The server's own sentence, in English, under its translation: it names models, addresses and paths.
  if (detail) box.append(el("p", { class: "message-detail", lang: "en" }, ...richText(detail)));
  if (action) box.append(el("button", { type: "button", class: "btn", text: action.label, onclick: action.run }));
  ui.message.replaceChildren(box);
  ui.message.hidden = false;
  ui.welcome.hidden = true;
}

function showError(error) {
  ui.results.replaceChildren();
  hits = [];
  setStatus("");
  redrawMessage = () => {
    const detail = originalDetail(error);
    if (error.modelMismatch) {
      // Both services answer, so no banner: the library must be embedded again with the embedder's model.
      showMessage(t("error.mismatchTitle"), errorMessage(error), { alert: true, detail });
    } else {
      // A service that is down gets the banner (the alert); here the search only says what went wrong.
      showMessage(t("error.searchFailed"), errorMessage(error), { alert: !error.serviceProblem, detail });
    }
  };
  redrawMessage();
  updateMore();
}

async function renderEmpty(mine) {
  ui.results.replaceChildren();
  if (hasMin(state)) {
    const min = formatScore(state.min);
    setStatus(t("status.noneScoring", { min }));
    let best = null;
    try {
      best = (await request(0, controller.signal, { min: null, top: 1 })).hits[0]?.score ?? null;
    } catch {
      best = null;
    }
    if (mine !== seq) return;
    const floor = best === null ? null : minimumOf(Math.floor(best * 100) / 100);
    redrawMessage = () => {
      const text =
        best === null
          ? t("empty.noneAbove", { min: formatScore(state.min) })
          : t("empty.bestBelow", { best: formatScore(best), min: formatScore(state.min) });
      showMessage(t("empty.belowTitle"), text, {
        action: {
          label: floor === null ? t("empty.showAll") : t("empty.lower", { min: formatScore(floor) }),
          run: () => commit({ ...state, min: floor }),
        },
      });
    };
    redrawMessage();
    return;
  }
  setStatus(resultCount());
  if (state.collection || state.media) {
    redrawMessage = () =>
      showMessage(t("empty.filtersTitle"), t("empty.filtersText"), {
        action: { label: t("empty.clearFilters"), run: () => commit({ ...state, collection: "", media: "" }) },
      });
  } else if (services.last && services.last.items === 0 && !services.last.loading) {
    redrawMessage = () => showMessage(t("empty.libraryTitle"), t("empty.libraryText"));
  } else {
    redrawMessage = () => showMessage(t("empty.noMatchesTitle"), t("empty.noMatchesText"));
  }
  redrawMessage();
}

function renderChip() {
  const thumb = ui.chip.querySelector(".chip-thumb");
  const text = ui.chip.querySelector(".chip-text");
  const clear = ui.chip.querySelector(".chip-clear");
  if (state.image) {
    const image = getImage(state.image);
    // A picture the browser cannot show (HEIC, for one) leaves the chip without a broken image.
    thumb.hidden = false;
    thumb.onerror = () => {
      thumb.hidden = true;
    };
    thumb.src = image.url;
    text.textContent = t("chip.picturesLike", { name: image.name });
    clear.setAttribute("aria-label", t("chip.clearImage"));
  } else if (state.like) {
    thumb.hidden = false;
    thumb.onerror = null;
    thumb.src = `/media/${encodeURIComponent(state.like)}/thumb`;
    const hit = known.get(state.like);
    text.textContent = hit ? t("chip.moreLike", { name: altText(hit) }) : t("chip.moreLikeThis");
    if (!hit) {
      const id = state.like;
      api(`/api/items/${encodeURIComponent(id)}`)
        .then((item) => {
          known.set(id, item);
          if (state.like === id) text.textContent = t("chip.moreLike", { name: altText(item) });
        })
        .catch(() => {});
    }
    clear.setAttribute("aria-label", t("chip.clearLike"));
  }
  ui.chip.hidden = !(state.image || state.like);
  document.title =
    state.q || state.said
      ? t("title.query", { query: [state.q, state.said].filter(Boolean).join(" · ") })
      : state.image || state.like
        ? t("title.similar")
        : "clipsearch";
}

function updateMore() {
  ui.more.hidden = !hasMore;
  ui.more.disabled = loading;
}

function syncControls() {
  showMinimum(state.min);
  if (state.collection && ![...ui.collection.options].some((o) => o.value === state.collection)) {
    ui.collection.append(el("option", { value: state.collection, text: state.collection }));
  }
  ui.collection.value = state.collection;
  for (const radio of ui.media) radio.checked = radio.value === state.media;
  ui.dups.checked = state.dups;
}

function showMinimum(min) {
  ui.min.value = String(min ?? SCORE_FLOOR);
  ui.minValue.textContent = min === null ? t("filter.none") : formatScore(min);
  ui.min.setAttribute("aria-valuetext", min === null ? t("filter.noMinimum") : formatScore(min));
}

function onStats(stats) {
  const collections = stats.collections || {};
  const names = Object.keys(collections).sort((a, b) => a.localeCompare(b));
  const signature = JSON.stringify([names.map((n) => [n, collections[n]]), state.collection, language()]);
  if (signature !== collectionsShown) {
    collectionsShown = signature;
    if (state.collection && !names.includes(state.collection)) names.push(state.collection);
    ui.collection.replaceChildren(
      el("option", { value: "", text: t("filter.allCollections") }),
      ...names.map((n) =>
        el("option", {
          value: n,
          text: n in collections ? t("filter.collectionOption", { name: n, count: formatCount(collections[n]) }) : n,
        }),
      ),
    );
    ui.collection.value = state.collection;
  }
  const searchUp = stats.services?.search?.up !== false;
  if (searchUp && stats.loading && stats.items === 0) {
    ui.welcomeStats.textContent = ""; // the banner says how far the library is
  } else if (searchUp && stats.items === 0) {
    ui.welcomeStats.replaceChildren(...rich(t("welcome.empty")));
  } else if (searchUp) {
    const counted = t("count.collections", { count: names.length });
    ui.welcomeStats.textContent = t("welcome.stats", { count: stats.items, items: stats.items, collections: counted });
  } else {
    ui.welcomeStats.textContent = "";
  }
  const allUp = searchUp && stats.services?.embedder?.up !== false;
  if (allUp && failedOnService && active(state)) run({ force: true });
}

// ---- input -------------------------------------------------------------------------------------------

ui.form.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(typingTimer);
  const q = ui.q.value.trim();
  if (!q) {
    if (state.q) commit({ ...state, q: "" });
    return;
  }
  // Enter searches again even for the same words: the library may have changed since.
  commit({ ...state, q, like: "", image: "" }, { typing: false, force: true });
});

ui.q.addEventListener("input", () => {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    const q = ui.q.value.trim();
    if (q === state.q && !state.like && !state.image) return;
    if (!q && !state.q) return;
    commit({ ...state, q, like: q ? "" : state.like, image: q ? "" : state.image }, { typing: true });
  }, TYPING_DELAY_MS);
});

ui.saidForm.addEventListener("submit", (event) => {
  event.preventDefault();
  clearTimeout(typingTimer);
  const said = ui.said.value.trim();
  if (said !== state.said) commit({ ...state, said, like: "", image: "" });
});

ui.said.addEventListener("input", () => {
  clearTimeout(typingTimer);
  typingTimer = setTimeout(() => {
    const said = ui.said.value.trim();
    if (said === state.said) return;
    commit({ ...state, said, like: said ? "" : state.like, image: said ? "" : state.image }, { typing: true });
  }, TYPING_DELAY_MS);
});

ui.imageInput.addEventListener("change", () => {
  const file = ui.imageInput.files?.[0];
  searchImage(file);
  ui.imageInput.value = "";
});

ui.min.addEventListener("input", () => {
  const min = minimumOf(ui.min.value);
  showMinimum(min);
  // Hide weaker matches at once; the search below brings in what the server finds above the new cut-off.
  for (const node of ui.results.children) {
    node.hidden = !state.said && min !== null && Number(node.dataset.score) < min;
  }
  clearTimeout(sliderTimer);
  sliderTimer = setTimeout(() => commit({ ...state, min }, { replace: true }), SLIDER_DELAY_MS);
});

ui.collection.addEventListener("change", () => commit({ ...state, collection: ui.collection.value }));
for (const radio of ui.media) {
  radio.addEventListener("change", () => radio.checked && commit({ ...state, media: radio.value }));
}

ui.dups.addEventListener("change", () => commit({ ...state, dups: ui.dups.checked }));

ui.chip.querySelector(".chip-clear").addEventListener("click", () => {
  commit({ ...state, like: "", image: "" });
  ui.q.focus();
});

ui.more.addEventListener("click", loadMore);
new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && maybeLoadMore(), {
  rootMargin: "0px 0px 800px 0px",
}).observe(ui.sentinel);

window.addEventListener("popstate", () => {
  clearTimeout(typingTimer);
  state = stateFromLocation();
  ui.q.value = state.q;
  ui.said.value = state.said;
  run();
});

// ---- language ----------------------------------------------------------------------------------------

// The switch overrides the browser's language and is remembered; the page is drawn again in place.
ui.language.value = language();
ui.language.addEventListener("change", () => {
  if (LANGUAGES.includes(ui.language.value)) setLanguage(ui.language.value, { remember: true });
});

onLanguageChange(() => {
  ui.language.value = language();
  syncControls();
  renderChip();
  if (services.last) onStats(services.last);
  if (hits.length) {
    ui.results.replaceChildren(...hits.map(card));
    renderStatus(lastMs);
  } else if (!ui.message.hidden && redrawMessage) {
    redrawMessage();
    if (ui.status.textContent)
      setStatus(hasMin(state) ? t("status.noneScoring", { min: formatScore(state.min) }) : resultCount());
  }
});

// ---- start -------------------------------------------------------------------------------------------

installKeyboard({ searchBox: ui.q, grid: ui.results, viewer: dialogs, nearEnd: maybeLoadMore });
installImageDrop({ overlay: ui.drop, viewer, search: searchImage, blocked: () => library.isOpen });

state = stateFromLocation();
ui.q.value = state.q;
ui.said.value = state.said;
services.refresh();
run();
if (!active(state) && window.matchMedia("(pointer: fine)").matches) ui.q.focus();
