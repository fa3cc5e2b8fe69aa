// What is said: the matched subtitle lines with their words highlighted, and the video's subtitle tracks.
import { api, el } from "./api.js";

const escapeRegExp = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

// `text` as text nodes and <mark> elements around each of `words` (inside longer words too, as a prefix or a
// Chinese word matches; case does not matter). Never parsed as HTML.
export function highlighted(text, words) {
  const wanted = (words || []).filter(Boolean).sort((a, b) => b.length - a.length);
  if (!wanted.length) return [String(text)];
  const pattern = new RegExp(`(${wanted.map(escapeRegExp).join("|")})`, "iu");
  // Split with a capturing group: the matches are the parts at odd positions.
  return String(text)
    .split(pattern)
    .flatMap((part, i) => (part === "" ? [] : i % 2 === 1 ? [el("mark", { text: part })] : [part]));
}

// The block a result card (or the viewer) shows for the lines that matched, or null when none did.
export function saidBlock(hit, className = "card-said") {
  const lines = hit.said_lines || [];
  if (!lines.length) return null;
  const block = el("p", { class: className, lang: lines[0].language || null });
  lines.forEach((line, i) => {
    if (i > 0) block.append(el("br"));
    block.append(...highlighted(line.text.replace(/\n/g, " "), hit.said_words));
  });
  return block;
}

// Where a video hit starts playing: its first matched line, else its frame.
export function startOf(hit) {
  const first = hit.said_lines?.[0];
  return first ? first.start_seconds : hit.timestamp_seconds || 0;
}

// Adds the video's stored subtitle tracks to `video` and shows one: the track of the matched line, else
// the first. Resolves once the tracks are added (none for a video without subtitles).
export async function attachSubtitles(video, hit) {
  let tracks = [];
  try {
    tracks = await api(`/media/${encodeURIComponent(hit.id)}/subtitles`);
  } catch {
    return;
  }
  if (!tracks.length || !video.isConnected) return;
  const chosen = Math.max(
    0,
    tracks.findIndex((t) => t.name === hit.said_lines?.[0]?.track),
  );
  const elements = tracks.map((t, i) => {
    const label = t.language ? `${t.name} (${t.language})` : t.name;
    return el("track", { kind: "subtitles", src: t.url, label, srclang: t.language || "und", default: i === chosen });
  });
  video.append(...elements);
  // The browser may turn on a track of the reader's language as each is added: one track shows, the chosen.
  const pick = () => {
    elements.forEach((element, i) => {
      const mode = i === chosen ? "showing" : "disabled";
      if (element.track.mode !== mode) element.track.mode = mode;
    });
  };
  pick();
  video.textTracks.addEventListener("addtrack", pick);
  video.addEventListener("loadedmetadata", pick, { once: true });
}
