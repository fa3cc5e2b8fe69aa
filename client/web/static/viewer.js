// The viewer dialog: the full image, or the video playing from the frame's moment, and "What is this?".
import { altText, api, el, errorLine, formatScore, mediaProblem } from "./api.js";
import { formatNumber, onLanguageChange, t } from "./i18n.js";
import { attachSubtitles, saidBlock, startOf } from "./said.js";

const LABELS_KEY = "clipsearch.labels";
// Labels may be separated by ASCII or full-width commas, the ideographic comma, or new lines.
const LABEL_SEPARATORS = /[,，、;\n]/;

export function createViewer({ onLike }) {
  const dialog = document.getElementById("viewer");
  const stage = dialog.querySelector(".viewer-stage");
  const note = dialog.querySelector(".viewer-note");
  const title = dialog.querySelector("#viewer-title");
  const meta = dialog.querySelector(".viewer-meta");
  let said = dialog.querySelector(".viewer-said");
  const original = dialog.querySelector(".viewer-original");
  const labels = dialog.querySelector("#labels");
  const classifyForm = dialog.querySelector(".classify-form");
  const classifyMessage = dialog.querySelector(".classify-message");
  const classifyResults = dialog.querySelector(".classify-results");
  const prev = dialog.querySelector(".viewer-prev");
  const next = dialog.querySelector(".viewer-next");
  let list = [];
  let index = -1;
  let returnFocus = null;
  let classifySeq = 0;
  // What the note and the classification message say, to say it again in another language.
  let noteText = () => "";
  let classifyText = () => "";
  let lastLabels = null;

  labels.value = localStorage.getItem(LABELS_KEY) || "";

  dialog.querySelector(".viewer-close").addEventListener("click", () => dialog.close());
  dialog.querySelector(".viewer-like").addEventListener("click", () => {
    const hit = list[index];
    dialog.close();
    if (hit) onLike(hit);
  });
  // A click on the backdrop (the dialog element itself, outside its content) closes it.
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close();
  });
  dialog.addEventListener("close", () => {
    stopMedia();
    // The close event comes a task after the dialog closed: by then focus may have moved on (the browser
    // restores it, the user presses a key), and taking it back would undo that.
    const active = document.activeElement;
    const focusLost = !active || active === document.body || dialog.contains(active);
    if (focusLost && returnFocus && document.contains(returnFocus)) returnFocus.focus();
  });
  dialog.addEventListener("keydown", (event) => {
    const tag = event.target.tagName;
    if (tag === "INPUT" || tag === "VIDEO" || tag === "TEXTAREA") return;
    if (event.key === "ArrowLeft" && index > 0) {
      event.preventDefault();
      show(index - 1, { autoplay: true });
    } else if (event.key === "ArrowRight" && index < list.length - 1) {
      event.preventDefault();
      show(index + 1, { autoplay: true });
    }
  });
  prev.addEventListener("click", () => index > 0 && show(index - 1, { autoplay: true }));
  next.addEventListener("click", () => index < list.length - 1 && show(index + 1, { autoplay: true }));
  classifyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    classify();
  });

  function stopMedia() {
    for (const video of stage.querySelectorAll("video")) {
      video.pause();
      video.removeAttribute("src");
      video.load();
    }
  }

  // The note under the picture; `text` is a function, called again when the language changes.
  function showNote(text) {
    noteText = text;
    note.textContent = text();
    note.hidden = !note.textContent;
  }

  function setClassifyMessage(text) {
    classifyText = text;
    classifyMessage.textContent = text();
    classifyMessage.hidden = !classifyMessage.textContent;
  }

  function showFrame(hit, message) {
    stage.replaceChildren(el("img", { class: "viewer-img", src: hit.thumbnail_url, alt: altText(hit) }));
    showNote(message);
  }

  function showImage(hit) {
    if (!hit.playable) {
      // HEIC, TIFF and the like: browsers do not show them, so the preview stands in for the file.
      showFrame(hit, () => t("viewer.preview", { format: hit.mime || t("viewer.unknownFormat") }));
      return;
    }
    const img = el("img", { class: "viewer-img", alt: altText(hit), decoding: "async" });
    img.style.backgroundImage = `url("${hit.thumbnail_url}")`;
    img.addEventListener("load", () => img.style.removeProperty("background-image"), { once: true });
    img.addEventListener(
      "error",
      async () => {
        const problem = await mediaProblem(hit.media_url);
        showFrame(hit, () => (problem ? errorLine(problem) : t("viewer.cannotShow")));
      },
      { once: true },
    );
    img.src = hit.media_url;
    stage.replaceChildren(img);
  }

  // Every video is tried (browsers play more than its container suggests, H.264 in Matroska included); only a
  // media error shows the frame instead.
  function showVideo(hit, autoplay) {
    const start = startOf(hit);
    const video = el("video", {
      class: "viewer-video",
      controls: true,
      playsInline: true,
      preload: "auto",
      poster: hit.thumbnail_url,
      "aria-label": t("viewer.videoLabel", { name: altText(hit) }),
    });
    video.addEventListener(
      "loadedmetadata",
      () => {
        if (Math.abs(video.currentTime - start) > 0.05) video.currentTime = start;
        if (autoplay) {
          // Without a user gesture browsers may refuse sound; playing muted is better than not playing.
          video.play().catch(() => {
            video.muted = true;
            return video.play().catch(() => {});
          });
        }
      },
      { once: true },
    );
    video.addEventListener("error", async () => {
      if (!video.getAttribute("src")) return;
      const problem =
        video.error?.code === MediaError.MEDIA_ERR_SRC_NOT_SUPPORTED ? null : await mediaProblem(hit.media_url);
      if (list[index] !== hit) return;
      const known = hit.mime && hit.mime !== "application/octet-stream";
      showFrame(hit, () => {
        if (problem) return errorLine(problem);
        if (known) return t("viewer.cannotPlayFormat", { format: hit.mime, time: hit.time });
        return t("viewer.cannotPlay", { time: hit.time });
      });
    });
    // The media fragment starts the download at the right moment; loadedmetadata makes sure of it.
    video.src = `${hit.media_url}#t=${start.toFixed(3)}`;
    stage.replaceChildren(video);
    attachSubtitles(video, hit);
  }

  function renderMeta(hit) {
    const rows = [];
    if (typeof hit.score === "number" && hit.score > 0) rows.push(["viewer.score", formatScore(hit.score)]);
    if (hit.media === "video") rows.push(["viewer.moment", hit.time || "00:00:00"]);
    if (hit.span) {
      // A said moment groups lines, not frames: its span alone.
      const alone = hit.said_lines?.length && hit.frames <= 1;
      rows.push(["viewer.span", alone ? hit.span : t("card.frames", { span: hit.span, count: hit.frames })]);
    }
    rows.push(["viewer.collection", hit.collection || t("viewer.defaultCollection")]);
    rows.push(["viewer.file", hit.source || hit.name]);
    meta.replaceChildren(...rows.flatMap(([key, value]) => [el("dt", { text: t(key) }), el("dd", { text: value })]));
  }

  function show(i, { autoplay = true, focusLabels = false } = {}) {
    stopMedia();
    index = i;
    const hit = list[i];
    title.textContent = hit.name;
    title.title = hit.source || hit.name;
    renderMeta(hit);
    const block = saidBlock(hit, "viewer-said") || el("p", { class: "viewer-said", hidden: true });
    said.replaceWith(block);
    said = block;
    showNote(() => "");
    original.href = hit.media_url;
    original.textContent = t(hit.media === "video" ? "viewer.openVideo" : "viewer.openOriginal");
    classifyResults.replaceChildren();
    lastLabels = null;
    setClassifyMessage(() => "");
    classifySeq += 1;
    prev.disabled = i <= 0;
    next.disabled = i >= list.length - 1;
    if (hit.media === "video") showVideo(hit, autoplay);
    else showImage(hit);
    if (focusLabels) labels.focus();
  }

  // Opens the viewer on hits[i]; focus returns to `from` when it closes.
  function open(hits, i, { from = null, focusLabels = false } = {}) {
    list = hits;
    returnFocus = from;
    if (!dialog.open) dialog.showModal();
    show(i, { autoplay: !focusLabels, focusLabels });
    if (!focusLabels) dialog.querySelector(".viewer-close").focus();
  }

  async function classify() {
    const hit = list[index];
    const typed = labels.value
      .split(LABEL_SEPARATORS)
      .map((label) => label.trim())
      .filter(Boolean);
    const unique = [...new Set(typed)];
    classifyResults.replaceChildren();
    lastLabels = null;
    if (unique.length < 2) {
      setClassifyMessage(() => t("classify.needTwo"));
      return;
    }
    localStorage.setItem(LABELS_KEY, labels.value);
    setClassifyMessage(() => t("classify.working"));
    const seq = ++classifySeq;
    try {
      const body = await api("/api/classify", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ id: hit.id, labels: unique, template: "" }),
      });
      if (seq !== classifySeq) return;
      setClassifyMessage(() => "");
      lastLabels = body.labels;
      renderLabels();
    } catch (error) {
      if (seq !== classifySeq) return;
      setClassifyMessage(() => errorLine(error));
    }
  }

  function renderLabels() {
    classifyResults.replaceChildren(
      ...(lastLabels || []).map(({ label, probability }) => {
        const percent = Math.round(probability * 1000) / 10;
        const bar = el("span", { class: "bar", "aria-hidden": "true" });
        bar.style.setProperty("--p", `${Math.max(percent, 0.5)}%`);
        const shown = formatNumber(percent / 100, {
          style: "percent",
          minimumFractionDigits: 1,
          maximumFractionDigits: 1,
        });
        return el(
          "li",
          {},
          el("span", { class: "label-name", text: label }),
          el("span", { class: "label-p", text: shown }),
          bar,
        );
      }),
    );
  }

  // Another language: the parts drawn here are drawn again (the template's are translated by i18n.js).
  onLanguageChange(() => {
    if (!dialog.open || !list[index]) return;
    const hit = list[index];
    renderMeta(hit);
    original.textContent = t(hit.media === "video" ? "viewer.openVideo" : "viewer.openOriginal");
    note.textContent = noteText();
    classifyMessage.textContent = classifyText();
    renderLabels();
    const media = stage.querySelector("video, img");
    if (media?.tagName === "VIDEO") media.setAttribute("aria-label", t("viewer.videoLabel", { name: altText(hit) }));
    else if (media) media.alt = altText(hit);
  });

  return {
    open,
    get isOpen() {
      return dialog.open;
    },
    // Keeps the viewer's list current when more results arrive behind it.
    update(hits) {
      const found = dialog.open && list[index] ? hits.findIndex((hit) => hit.id === list[index].id) : -1;
      if (found >= 0) {
        list = hits;
        index = found;
        next.disabled = index >= list.length - 1;
      }
    },
  };
}
