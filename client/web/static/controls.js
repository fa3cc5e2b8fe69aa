// The search boxes and filters: what they show for a state, and the new states the reader's input makes.
import { el, formatScore } from "./api.js";
import { t } from "./i18n.js";
import { minimumOf, SCORE_FLOOR } from "./state.js";

const TYPING_DELAY_MS = 300;
const SLIDER_DELAY_MS = 250;

// Wires the controls of `ui` to commit(nextState, options); current() is the state they start from, and
// searchImage(file) searches by a picture chosen with the file input.
export function createControls(ui, { current, commit, searchImage }) {
  let typingTimer = 0;
  let sliderTimer = 0;

  function showMinimum(min) {
    ui.min.value = String(min ?? SCORE_FLOOR);
    ui.minValue.textContent = min === null ? t("filter.none") : formatScore(min);
    ui.min.setAttribute("aria-valuetext", min === null ? t("filter.noMinimum") : formatScore(min));
  }

  function sync(state) {
    showMinimum(state.min);
    if (state.collection && ![...ui.collection.options].some((o) => o.value === state.collection)) {
      ui.collection.append(el("option", { value: state.collection, text: state.collection }));
    }
    ui.collection.value = state.collection;
    for (const radio of ui.media) radio.checked = radio.value === state.media;
    ui.dups.checked = state.dups;
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typingTimer);
    const state = current();
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
      const state = current();
      const q = ui.q.value.trim();
      if (q === state.q && !state.like && !state.image) return;
      if (!q && !state.q) return;
      commit({ ...state, q, like: q ? "" : state.like, image: q ? "" : state.image }, { typing: true });
    }, TYPING_DELAY_MS);
  });

  ui.saidForm.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(typingTimer);
    const state = current();
    const said = ui.said.value.trim();
    if (said !== state.said) commit({ ...state, said, like: "", image: "" });
  });

  ui.said.addEventListener("input", () => {
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => {
      const state = current();
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
      node.hidden = !current().said && min !== null && Number(node.dataset.score) < min;
    }
    clearTimeout(sliderTimer);
    sliderTimer = setTimeout(() => commit({ ...current(), min }, { replace: true }), SLIDER_DELAY_MS);
  });

  ui.collection.addEventListener("change", () => commit({ ...current(), collection: ui.collection.value }));
  for (const radio of ui.media) {
    radio.addEventListener("change", () => radio.checked && commit({ ...current(), media: radio.value }));
  }

  ui.dups.addEventListener("change", () => commit({ ...current(), dups: ui.dups.checked }));

  return { sync, cancelTyping: () => clearTimeout(typingTimer) };
}
