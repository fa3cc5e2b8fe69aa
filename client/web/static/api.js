// Talks to clipsearch's JSON API and formats what it returns for people.

export class ApiError extends Error {
  constructor(message, status, reason = "") {
    super(message);
    this.status = status;
    // What the server says the problem is where the page explains it itself ("model_mismatch").
    this.reason = reason;
  }

  // The search index holds vectors of another embedding model than the embedder's (HTTP 409).
  get modelMismatch() {
    return this.reason === "model_mismatch";
  }

  // The services behind the web server are down or unreachable (worth re-checking their status).
  get serviceProblem() {
    return this.status === 0 || this.status >= 502;
  }
}

const OFFLINE =
  "The clipsearch web server is not answering. Check that `clipsearch web` (or `clipsearch serve`) still runs, then try again.";

// fetch() for the JSON API: resolves to the parsed body, rejects with an ApiError whose message is one
// clear sentence (the server's own {"error": ...} where it sent one).
export async function api(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" }, ...init });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(OFFLINE, 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    const reason = body && typeof body.reason === "string" ? body.reason : "";
    throw new ApiError(errorText(body, response), response.status, reason);
  }
  return body;
}

function errorText(body, response) {
  if (body && typeof body.error === "string" && body.error) return sentence(body.error);
  if (body && typeof body.detail === "string" && body.detail) return sentence(body.detail);
  if (response.status === 413) return "That image is larger than the server accepts.";
  if (response.status === 404) return "Not found.";
  if (response.status >= 500) return `The server could not answer (HTTP ${response.status}). Try again in a moment.`;
  return `The request was refused (HTTP ${response.status}).`;
}

// The error message of a media URL that failed to load (its JSON body), or null where it loads.
export async function mediaProblem(url) {
  try {
    const response = await fetch(url, { headers: { Range: "bytes=0-0" } });
    if (response.ok) return null;
    const body = await response.json().catch(() => null);
    return errorText(body, response);
  } catch {
    return OFFLINE;
  }
}

// "cannot reach x; do y" -> "Cannot reach x; do y."
export function sentence(text) {
  const trimmed = String(text).trim();
  const capital = trimmed.charAt(0).toUpperCase() + trimmed.slice(1);
  return /[.!?…]$/.test(capital) ? capital : `${capital}.`;
}

// Text with `commands` in backticks, as text nodes and <code> elements (never parsed as HTML).
export function richText(text) {
  return String(text)
    .split(/(`[^`]+`)/)
    .filter(Boolean)
    .map((part) =>
      part.length > 2 && part.startsWith("`") && part.endsWith("`") ? el("code", { text: part.slice(1, -1) }) : part,
    );
}

export const formatScore = (score) => Number(score).toFixed(2);

export const formatCount = (n) => Number(n).toLocaleString("en-US");

export function plural(n, one, many = `${one}s`) {
  return `${formatCount(n)} ${n === 1 ? one : many}`;
}

export function formatBytes(bytes) {
  if (bytes >= 1024 * 1024 * 1024) return `${+(bytes / (1024 * 1024 * 1024)).toFixed(1)} GB`;
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(bytes >= 10 * 1024 * 1024 ? 0 : 1)} MB`;
  if (bytes >= 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${bytes} bytes`;
}

// What an image stands for, read aloud and shown when it cannot load: "name" or "name at hh:mm:ss".
export function altText(hit) {
  return hit.media === "video" && hit.time ? `${hit.name} at ${hit.time}` : hit.name;
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
