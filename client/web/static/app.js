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
import { resultCard } from "./cards.js";
import { createControls } from "./controls.js";
import { LANGUAGES, language, onLanguageChange, rich, setLanguage, t } from "./i18n.js";
import { getImage, newImageKey, putImage } from "./images.js";
import { installImageDrop, installKeyboard } from "./inputs.js";
import { createLibrary } from "./library.js";
import { createServices } from "./services.js";
import { active, emptyState, hasMin, minimumOf, readLocation, searchParams, urlFor } from "./state.js";
import { createViewer } from "./viewer.js";

const PAGE = 24;
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

// The search boxes and filters make new states; run() shows each state in them.
const controls = createControls(ui, { current: () => state, commit, searchImage });

// ---- URL state ---------------------------------------------------------------------------------------

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

function request(offset, signal, { min = state.min, top = PAGE } = {}) {
  const params = searchParams(state, offset, { min, top });
  if (state.image) {
    const image = getImage(state.image);
    const form = new FormData();
    form.append("image", image.blob, image.name);
    return api(`/api/search/image?${params}`, { method: "POST", body: form, signal });
  }
  return api(`/api/search?${params}`, { signal });
}

function run({ force = false } = {}) {
  controls.sync(state);
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
  return resultCard(ui.template, hit, {
    // A said search's scores are fused ranks, not similarities: the minimum score does not apply to them.
    hidden: !state.said && hasMin(state) && hit.score < state.min,
    open: (from, options = {}) => viewer.open(hits, hits.indexOf(hit), { from, ...options }),
    like: () => moreLike(hit),
  });
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

ui.chip.querySelector(".chip-clear").addEventListener("click", () => {
  commit({ ...state, like: "", image: "" });
  ui.q.focus();
});

ui.more.addEventListener("click", loadMore);
new IntersectionObserver((entries) => entries.some((e) => e.isIntersecting) && maybeLoadMore(), {
  rootMargin: "0px 0px 800px 0px",
}).observe(ui.sentinel);

window.addEventListener("popstate", () => {
  controls.cancelTyping();
  ({ state, missingImage } = readLocation());
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
  controls.sync(state);
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

({ state, missingImage } = readLocation());
ui.q.value = state.q;
ui.said.value = state.said;
services.refresh();
run();
if (!active(state) && window.matchMedia("(pointer: fine)").matches) ui.q.focus();
