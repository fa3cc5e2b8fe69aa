// Pictures searched by in this tab: in memory by key, and in sessionStorage where small enough, so that the
// page's URL (?image=KEY) repeats the search after a reload or on returning to it.
const PREFIX = "clipsearch.image.";
// sessionStorage holds about 5 MB per site; a data URL is 4/3 of the file.
const STORE_MAX_BYTES = 2 * 1024 * 1024;
const KEY = /^[a-z0-9]{4,32}$/;
const memory = new Map();

export const isImageKey = (key) => KEY.test(key);

export function newImageKey() {
  return Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
}

export function putImage(key, blob, name) {
  const image = { blob, name, url: URL.createObjectURL(blob) };
  memory.set(key, image);
  if (blob.size <= STORE_MAX_BYTES) {
    const reader = new FileReader();
    reader.addEventListener("load", () => store(key, name, reader.result));
    reader.readAsDataURL(blob);
  }
  return image;
}

// The picture searched as `key`, or null where this tab no longer has it.
export function getImage(key) {
  if (memory.has(key)) return memory.get(key);
  let saved = null;
  try {
    saved = JSON.parse(sessionStorage.getItem(PREFIX + key) || "null");
  } catch {
    saved = null;
  }
  if (!saved || typeof saved.data !== "string") return null;
  const comma = saved.data.indexOf(",");
  const type = /^data:([^;,]*)/.exec(saved.data)?.[1] || "application/octet-stream";
  const binary = atob(saved.data.slice(comma + 1));
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  const blob = new Blob([bytes], { type });
  const image = { blob, name: String(saved.name || "image"), url: URL.createObjectURL(blob) };
  memory.set(key, image);
  return image;
}

function store(key, name, data) {
  const value = JSON.stringify({ name, data, at: Date.now() });
  // When the storage is full, the pictures searched longest ago make room.
  for (let tries = 0; tries < 16; tries += 1) {
    try {
      sessionStorage.setItem(PREFIX + key, value);
      return;
    } catch {
      if (!dropOldest(key)) return;
    }
  }
}

function dropOldest(except) {
  let oldest = null;
  let oldestAt = Number.POSITIVE_INFINITY;
  for (let i = 0; i < sessionStorage.length; i += 1) {
    const name = sessionStorage.key(i);
    if (!name || !name.startsWith(PREFIX) || name === PREFIX + except) continue;
    let at = 0;
    try {
      at = Number(JSON.parse(sessionStorage.getItem(name) || "{}").at) || 0;
    } catch {
      at = 0;
    }
    if (at < oldestAt) {
      oldestAt = at;
      oldest = name;
    }
  }
  if (oldest) sessionStorage.removeItem(oldest);
  return oldest !== null;
}
