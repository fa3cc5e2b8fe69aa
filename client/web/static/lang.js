// Run in <head> before the page is drawn (a classic script, not a module): picks the page's language, sets it
// on <html lang> and keeps the page hidden until i18n.js has put its words in that language, so a Chinese
// reader never sees the English of the template first. Should i18n.js not run, the page shows anyway: at
// DOMContentLoaded (the page's module scripts ran or failed by then), or after PENDING_MAX_MS at the latest.
(() => {
  const STORAGE_KEY = "clipsearch.lang"; // written by i18n.js when the reader picks a language
  const LANGUAGES = ["en", "zh-CN"];
  const TEMPLATE_LANGUAGE = "en";
  const PENDING = "i18n-pending"; // app.css hides the body while <html> has this class
  const PENDING_MAX_MS = 2500;

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

  // The remembered choice, else the browser's first language the page speaks, else English.
  function chosen() {
    try {
      const value = localStorage.getItem(STORAGE_KEY);
      if (LANGUAGES.includes(value)) return value;
    } catch {
      // Storage refused (a private window, say): the browser's language decides.
    }
    for (const tag of navigator.languages || [navigator.language]) {
      const found = supported(tag);
      if (found) return found;
    }
    return TEMPLATE_LANGUAGE;
  }

  const root = document.documentElement;
  const lang = chosen();
  root.dataset.language = lang; // the choice i18n.js applies
  if (lang === TEMPLATE_LANGUAGE) return;
  root.lang = lang;
  root.classList.add(PENDING);
  // i18n.js has not run by then: the page shows as the template has it, in English, and says so.
  const show = () => {
    if (!root.classList.contains(PENDING)) return;
    root.classList.remove(PENDING);
    root.lang = TEMPLATE_LANGUAGE;
  };
  document.addEventListener("DOMContentLoaded", show, { once: true });
  setTimeout(show, PENDING_MAX_MS);
})();
