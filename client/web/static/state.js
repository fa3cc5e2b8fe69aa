// A search as the page's state: read from and written to the page's URL, and sent as the search API's parameters.
import { getImage, isImageKey } from "./images.js";

export function emptyState() {
  return { q: "", said: "", like: "", image: "", min: null, collection: "", media: "", frames: false, dups: false };
}

export const active = (s) => Boolean(s.q || s.said || s.like || s.image);

// The slider spans the model's cosine range; its left end means no minimum (null), so nothing is cut.
export const SCORE_FLOOR = -1;
export const minimumOf = (value) => {
  const min = Math.round(Number(value) * 100) / 100;
  return Number.isFinite(min) && min > SCORE_FLOOR ? Math.min(1, min) : null;
};
export const hasMin = (s) => s.min !== null;

// The state the URL holds, and the key of an image search in it whose picture this tab no longer has ("": none).
export function readLocation() {
  const params = new URLSearchParams(location.search);
  const s = emptyState();
  s.q = (params.get("q") || "").trim();
  // said: words of the subtitles, alone or with q (what is seen).
  s.said = (params.get("said") || "").trim();
  s.like = s.q || s.said ? "" : (params.get("like") || "").trim();
  const image = (params.get("image") || "").trim();
  let missingImage = "";
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
  return { state: s, missingImage };
}

export function urlFor(s) {
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

// The search API's parameters for `top` results of `s` from `offset`, with `min` as the minimum score.
export function searchParams(s, offset, { min, top }) {
  const params = new URLSearchParams();
  if (s.q) params.set("q", s.q);
  else if (s.like) params.set("like", s.like);
  if (s.said) params.set("said", s.said);
  params.set("top", String(top));
  params.set("offset", String(offset));
  if (min !== null) params.set("min_score", min.toFixed(2));
  if (s.collection) params.set("collection", s.collection);
  if (s.media) params.set("media", s.media);
  if (s.frames) params.set("frames", "1");
  if (s.dups) params.set("collapse_duplicates", "true");
  return params;
}
