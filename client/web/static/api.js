// Talks to clipsearch's JSON API and formats what it returns for people, in the page's language.

import { formatNumber, has, rich, t } from "./i18n.js";

// An error of the JSON API. `message` is the server's English sentence; text() says it in the page's language:
// the catalogue's message for the server's `reason` where it has one, else the server's own sentence.
export class ApiError extends Error {
  constructor(message, status, { reason = "", params = {}, key = "", keyParams = {} } = {}) {
    super(message);
    this.status = status;
    // What the server says the problem is, as a stable code ("model_mismatch", "service_unavailable").
    this.reason = reason;
    this.params = params;
    // A problem the page found itself: its catalogue key, rendered in the language of the moment.
    this.key = key;
    this.keyParams = keyParams;
  }

  // The search index holds vectors of another embedding model than the embedder's (HTTP 409).
  get modelMismatch() {
    return this.reason === "model_mismatch";
  }

  // The services behind the web server are down or unreachable (worth re-checking their status).
  get serviceProblem() {
    return this.status === 0 || this.status >= 502;
  }

  text() {
    if (this.key) return t(this.key, this.keyParams);
    return reasonText(this.reason, this.message, this.params);
  }
}

// The server's sentence `detail` in the page's language, by its reason (English: the sentence itself).
export function reasonText(reason, detail, params = {}) {
  const key = `reason.${reason}`;
  if (!reason || !has(key)) return detail;
  const service = params.service ? t(`service.${params.service}`) : "";
  return t(key, { ...params, service, detail });
}

// Where the page speaks another language than the server's English, the server's own words (names,
// addresses, models) as a detail line after the translation; nothing where they would repeat it.
export function originalDetail(error) {
  if (!(error instanceof ApiError) || error.key) return "";
  return error.text() === error.message ? "" : error.message;
}

export const errorMessage = (error) => (error instanceof ApiError ? error.text() : String(error.message));

// The message and, where it is translated, the server's sentence after it in brackets: for one-line notes.
export function errorLine(error) {
  const detail = originalDetail(error);
  return detail ? t("error.withDetail", { message: errorMessage(error), detail }) : errorMessage(error);
}

// fetch() for the JSON API: resolves to the parsed body, rejects with an ApiError whose message is one
// clear sentence (the server's own {"error": ...} where it sent one).
export async function api(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, ...init });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw offline();
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) throw errorOf(body, response);
  return body;
}

const offline = () => new ApiError(t("api.offline"), 0, { key: "api.offline" });

function errorOf(body, response) {
  const reason = body && typeof body.reason === "string" ? body.reason : "";
  const params = body?.params && typeof body.params === "object" ? body.params : {};
  const status = response.status;
  const sent =
    body && typeof body.error === "string" && body.error
      ? body.error
      : body && typeof body.detail === "string"
        ? body.detail
        : "";
  if (sent) return new ApiError(sentence(sent), status, { reason, params });
  const [key, keyParams] =
    status === 413
      ? ["api.tooLarge", {}]
      : status === 404
        ? ["api.notFound", {}]
        : status >= 500
          ? ["api.serverError", { status: String(status) }]
          : ["api.refused", { status: String(status) }];
  return new ApiError(t(key, keyParams), status, { reason, key, keyParams });
}

// The error of a media URL that failed to load (from its JSON body), or null where it loads.
export async function mediaProblem(url) {
  try {
    const response = await fetch(url, { headers: { Range: "bytes=0-0" } });
    if (response.ok) return null;
    const body = await response.json().catch(() => null);
    return errorOf(body, response);
  } catch {
    return offline();
  }
}

// "cannot reach x; do y" -> "Cannot reach x; do y."
export function sentence(text) {
  const trimmed = String(text).trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?…。！？]$/.test(capital) ? capital : `${capital}.`;
}

// Text with `commands` in backticks, as text nodes and <code> elements (never parsed as HTML).
export const richText = (text) => rich(text, { tags: false });

export const formatScore = (score) =>
  formatNumber(Number(score), { minimumFractionDigits: 2, maximumFractionDigits: 2 });

export const formatCount = (n) => formatNumber(Number(n));

export function formatBytes(bytes) {
  const mb = 1024 * 1024;
  if (bytes >= 1024 * mb) {
    return t("bytes.gb", { value: formatNumber(bytes / (1024 * mb), { maximumFractionDigits: 1 }) });
  }
  if (bytes >= mb) {
    const digits = bytes >= 10 * mb ? 0 : 1;
    return t("bytes.mb", {
      value: formatNumber(bytes / mb, { minimumFractionDigits: digits, maximumFractionDigits: digits }),
    });
  }
  if (bytes >= 1024) return t("bytes.kb", { value: Math.round(bytes / 1024) });
  return t("bytes.bytes", { count: bytes });
}

// What an image stands for, read aloud and shown when it cannot load: "name" or "name at hh:mm:ss".
export function altText(hit) {
  return hit.media === "video" && hit.time ? t("card.alt", { name: hit.name, time: hit.time }) : hit.name;
}

// Builds an element: el("p", {class: "x", text: "y"}, child...). Text is always set as text, never as HTML.
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}
