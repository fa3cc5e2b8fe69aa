// The page's language: message catalogues, t(key, params), numbers and plurals per locale, and the switch.
import en from "./locales/en.js";
import zhCN from "./locales/zh-CN.js";

export const CATALOGUES = { en, "zh-CN": zhCN };
export const LANGUAGES = Object.keys(CATALOGUES);
const STORAGE_KEY = "clipsearch.lang";
const listeners = new Set();
let current = "en";

// "zh", "zh-CN", "zh-Hans" (and Simplified Chinese by script or region: zh-Hans-HK, zh-SG) -> "zh-CN";
// any other Chinese (zh-TW, zh-Hant) and every other language -> null, so English is the fallback.
function supported(tag) {
  const parts = String(tag).toLowerCase().split(/[-_]/);
  if (parts[0] === "en") return "en";
  if (parts[0] !== "zh") return null;
  const rest = parts.slice(1);
  if (rest.includes("hant")) return null;
  if (rest.length === 0 || rest.includes("hans") || rest.includes("cn") || rest.includes("sg")) return "zh-CN";
  return null;
}

// The browser's first language the page speaks; English where it speaks none of them.
export function detectLanguage(languages = navigator.languages || [navigator.language]) {
  for (const tag of languages) {
    const found = supported(tag);
    if (found) return found;
  }
  return "en";
}

function stored() {
  try {
    const value = localStorage.getItem(STORAGE_KEY);
    return LANGUAGES.includes(value) ? value : null;
  } catch {
    return null;
  }
}

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

setLanguage(stored() || detectLanguage());
