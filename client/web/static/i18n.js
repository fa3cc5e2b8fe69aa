// The page's language: message catalogues, t(key, params), numbers and plurals per locale, and the switch.
import en from "./locales/en.js";
import zhCN from "./locales/zh-CN.js";

export const CATALOGUES = { en, "zh-CN": zhCN };
export const LANGUAGES = Object.keys(CATALOGUES);
const STORAGE_KEY = "clipsearch.lang"; // read by lang.js, which picks the language before the page is drawn
const listeners = new Set();
let current = "en";

export const language = () => current;

export function has(key) {
  return key in CATALOGUES[current];
}

function plural(entry, count) {
  if (typeof entry === "string") return entry;
  const category = new Intl.PluralRules(current).select(Number(count));
  return entry[category] ?? entry.other;
}

// The message `key` in the current language, its {name} placeholders filled from `params`: numbers are
// formatted for the locale (pass strings for what must stay as it is: scores, times, ids); a message with
// plural forms ({one, other}) picks its form by params.count.
export function t(key, params = {}) {
  const entry = CATALOGUES[current][key] ?? CATALOGUES.en[key];
  if (entry === undefined) return key;
  return plural(entry, params.count ?? 0).replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in params)) return whole;
    const value = params[name];
    return typeof value === "number" ? formatNumber(value) : String(value);
  });
}

export function formatNumber(value, options = {}) {
  return new Intl.NumberFormat(current, options).format(value);
}

// A message as nodes: `backticks` and <code>…</code> as <code>, <kbd>…</kbd> as <kbd> (only `tags` where the
// text is the catalogue's), the rest as text; never parsed as HTML.
export function rich(text, { tags = true } = {}) {
  const nodes = [];
  for (const part of String(text).split(/(<(?:kbd|code)>[^<]*<\/(?:kbd|code)>|`[^`]+`)/)) {
    if (!part) continue;
    const tag = tags ? /^<(kbd|code)>([^<]*)<\/\1>$/.exec(part) : null;
    if (tag) nodes.push(element(tag[1], tag[2]));
    else if (part.length > 2 && part.startsWith("`") && part.endsWith("`"))
      nodes.push(element("code", part.slice(1, -1)));
    else nodes.push(part);
  }
  return nodes;
}

function element(tag, text) {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

const ATTRIBUTE_PREFIX = "data-i18n-";

// Fills the template's marked elements: data-i18n="key" sets the content, data-i18n-ATTR="key" the
// attribute ATTR (aria-label, placeholder, title, alt).
export function translate(root = document) {
  for (const node of root.querySelectorAll("[data-i18n]")) node.replaceChildren(...rich(t(node.dataset.i18n)));
  for (const node of root.querySelectorAll("*")) {
    for (const attribute of node.attributes) {
      if (attribute.name.startsWith(ATTRIBUTE_PREFIX)) {
        node.setAttribute(attribute.name.slice(ATTRIBUTE_PREFIX.length), t(attribute.value));
      }
    }
  }
}

// Switches the page to `lang` at once; `remember` keeps the choice for the next visits.
export function setLanguage(lang, { remember = false } = {}) {
  if (!LANGUAGES.includes(lang)) return;
  if (remember) {
    try {
      localStorage.setItem(STORAGE_KEY, lang);
    } catch {
      // Private windows may refuse storage: the switch still works for this page.
    }
  }
  const changed = lang !== current;
  current = lang;
  document.documentElement.lang = lang;
  translate();
  if (changed) for (const listener of listeners) listener(lang);
}

// Calls `listener(lang)` after each change of language, to render what the page drew itself again.
export function onLanguageChange(listener) {
  listeners.add(listener);
}

// Another tab of the page switched: this one follows (with its viewer open, too).
window.addEventListener("storage", (event) => {
  if (event.key === STORAGE_KEY && LANGUAGES.includes(event.newValue)) setLanguage(event.newValue);
});

// lang.js picked the reader's language (the remembered choice, else the browser's) and hid the page until it is
// in that language: it is, from here.
const chosen = document.documentElement.dataset.language;
setLanguage(LANGUAGES.includes(chosen) ? chosen : "en");
document.documentElement.classList.remove("i18n-pending");
