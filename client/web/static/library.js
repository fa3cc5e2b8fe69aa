// The library panel: folders kept indexed, their indexer's progress (polled while open), add, rescan, remove and
// uploads into a folder (picked or dropped), each file sent as the request's body with its progress.
import { ApiError, api, el, errorLine, formatBytes, formatCount, sentence } from "./api.js";
import { onLanguageChange, t, translate } from "./i18n.js";

const POLL_MS = 1000;
const JSON_POST = { method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" } };

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("time.s", { value: formatCount(s) });
  if (s < 3600) return t("time.min", { value: formatCount(Math.round(s / 60)) });
  return t("time.h", { value: (s / 3600).toFixed(1) });
}

// What the indexer is doing with a library, in words, and how far it is (0 to 1, or null).
export function describeState(lib) {
  switch (lib.state) {
    case "watching":
      return { text: t("library.state.watching"), progress: null, tone: "ok" };
    case "indexing": {
      const counts = { done: formatCount(lib.files_done), count: lib.files_total };
      let text = t("library.state.indexing", counts);
      if (lib.eta_seconds !== null && lib.eta_seconds !== undefined) {
        text = t("library.state.eta", { state: text, time: duration(lib.eta_seconds) });
      }
      return { text, progress: lib.files_total ? lib.files_done / lib.files_total : 0, tone: "busy" };
    }
    case "scanning": {
      const found = lib.files_total;
      const text = found ? t("library.state.scanningCount", { count: found }) : t("library.state.scanning");
      return { text, progress: null, tone: "busy" };
    }
    case "error": {
      const text = lib.message ? t("library.state.errorWhy", { message: lib.message }) : t("library.state.error");
      return { text, progress: null, tone: "bad" };
    }
    case "idle":
      return { text: t("library.state.idle"), progress: null, tone: "bad" };
    default:
      return { text: t("library.state.pending"), progress: null, tone: "busy" };
  }
}

// Sends one file to a library's folder; resolves to the server's answer, reports progress (0 to 1).
function sendFile(library, file, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const target = `/api/libraries/${encodeURIComponent(library)}/upload?name=${encodeURIComponent(file.name)}`;
    xhr.open("POST", target);
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.responseType = "json";
    xhr.upload.addEventListener(
      "progress",
      (event) => event.lengthComputable && onProgress(event.loaded / event.total),
    );
    xhr.addEventListener("load", () => {
      if (xhr.status === 201) resolve(xhr.response);
      else {
        const body = xhr.response;
        if (body && typeof body.error === "string") {
          const reason = typeof body.reason === "string" ? body.reason : "";
          reject(new ApiError(sentence(body.error), xhr.status, { reason, params: body.params || {} }));
        } else {
          const keyParams = { status: xhr.status };
          reject(new ApiError("", xhr.status, { key: "upload.refused", keyParams }));
        }
      }
    });
    xhr.addEventListener("error", () => reject(new ApiError("", 0, { key: "upload.cutOff" })));
    xhr.send(file);
  });
}

export function createLibrary({ onChange }) {
  const panel = document.getElementById("library-panel");
  const opener = document.getElementById("library-open");
  const form = document.getElementById("library-add");
  const path = document.getElementById("library-path");
  const collection = document.getElementById("library-collection");
  const roots = document.getElementById("library-roots");
  const addMessage = panel.querySelector(".library-add-message");
  const empty = panel.querySelector(".library-empty");
  const problem = panel.querySelector(".library-problem");
  const status = panel.querySelector(".library-status");
  const list = panel.querySelector(".library-list");
  const template = document.getElementById("library-template");
  const rows = new Map();
  let limits = { photo: 0, video: 0 };
  let timer = 0;
  let lastItems = null;

  opener.addEventListener("click", () => open());
  panel.querySelector(".library-close").addEventListener("click", () => panel.close());
  panel.addEventListener("click", (event) => {
    if (event.target === panel) panel.close();
  });
  panel.addEventListener("close", () => {
    clearTimeout(timer);
    opener.focus();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    addMessage.hidden = true;
    status.textContent = "";
    button.disabled = true;
    try {
      const body = { path: path.value.trim(), collection: collection.value.trim() || null };
      const lib = await api("/api/libraries", { ...JSON_POST, body: JSON.stringify(body) });
      path.value = "";
      collection.value = "";
      status.textContent = t("library.added", { name: lib.name, collection: lib.collection });
      await refresh();
      rows.get(lib.name)?.node.scrollIntoView({ block: "nearest" });
    } catch (error) {
      addMessage.textContent = errorLine(error);
      addMessage.hidden = false;
      path.focus();
    } finally {
      button.disabled = false;
    }
  });

  // Another language: the rows' own words again; the roots' line with the next refresh.
  onLanguageChange(() => {
    for (const row of rows.values()) {
      translate(row.node);
      if (row.lib) updateRow(row, row.lib);
    }
    if (panel.open) refresh();
  });

  function open() {
    if (!panel.open) panel.showModal();
    refresh();
    path.focus();
  }

  async function refresh() {
    clearTimeout(timer);
    try {
      const body = await api("/api/libraries");
      problem.hidden = true;
      limits = { photo: body.max_upload_photo_bytes, video: body.max_upload_video_bytes };
      roots.textContent = t("library.roots", {
        roots: body.roots.join(", "),
        photo: formatBytes(limits.photo),
        video: formatBytes(limits.video),
      });
      if (body.roots.length) path.placeholder = t("library.pathExample", { root: body.roots[0].replace(/\/$/, "") });
      render(body.libraries);
    } catch (error) {
      problem.textContent = errorLine(error);
      problem.hidden = false;
    } finally {
      if (panel.open) timer = setTimeout(refresh, POLL_MS);
    }
  }

  function render(libraries) {
    const names = new Set(libraries.map((lib) => lib.name));
    for (const [name, row] of rows) {
      if (!names.has(name)) {
        row.node.remove();
        rows.delete(name);
      }
    }
    libraries.forEach((lib, i) => {
      let row = rows.get(lib.name);
      if (!row) {
        row = createRow(lib.name);
        rows.set(lib.name, row);
      }
      if (list.children[i] !== row.node) list.insertBefore(row.node, list.children[i] || null);
      updateRow(row, lib);
    });
    empty.hidden = libraries.length > 0;
    const items = libraries.reduce((sum, lib) => sum + lib.items, 0);
    if (lastItems !== null && items !== lastItems) onChange();
    lastItems = items;
  }

  function createRow(name) {
    const node = template.content.firstElementChild.cloneNode(true);
    translate(node);
    node.setAttribute("aria-label", name);
    const row = { node, name, lib: null };
    const input = node.querySelector(".lib-upload>input");
    input.addEventListener("change", () => {
      upload(row, [...input.files]);
      input.value = "";
    });
    node.querySelector(".lib-rescan").addEventListener("click", () => rescan(row));
    const confirm = node.querySelector(".lib-confirm");
    const removeButton = node.querySelector(".lib-remove");
    removeButton.addEventListener("click", () => {
      confirm.querySelector("p").textContent = t("library.confirmRemove", { name, count: row.lib?.items ?? 0 });
      confirm.hidden = false;
      confirm.querySelector(".lib-confirm-no").focus();
    });
    confirm.querySelector(".lib-confirm-no").addEventListener("click", () => {
      confirm.hidden = true;
      removeButton.focus();
    });
    confirm.querySelector(".lib-confirm-yes").addEventListener("click", () => remove(row));
    const zone = node.querySelector(".lib-drop");
    const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
    zone.addEventListener("dragover", (event) => {
      if (!carriesFiles(event) || !row.lib?.uploads) return;
      event.preventDefault();
      event.stopPropagation();
      event.dataTransfer.dropEffect = "copy";
      zone.classList.add("over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("over"));
    zone.addEventListener("drop", (event) => {
      if (!carriesFiles(event) || !row.lib?.uploads) return;
      event.preventDefault();
      event.stopPropagation();
      zone.classList.remove("over");
      upload(row, [...event.dataTransfer.files]);
    });
    return row;
  }

  function updateRow(row, lib) {
    row.lib = lib;
    const { node } = row;
    const state = describeState(lib);
    node.querySelector(".lib-name").textContent = lib.name;
    const badge = node.querySelector(".lib-state");
    badge.textContent = state.text;
    badge.className = `lib-state ${state.tone}`;
    node.querySelector(".lib-path").textContent = lib.path;
    node.querySelector(".lib-facts").textContent = t("library.facts", { collection: lib.collection, count: lib.items });
    const progress = node.querySelector(".lib-progress");
    progress.hidden = state.progress === null;
    if (state.progress !== null) {
      progress.value = state.progress;
      progress.setAttribute("aria-label", t("library.progress", { name: lib.name }));
    }
    const failures = node.querySelector(".lib-failures");
    failures.hidden = !lib.failed_files;
    if (lib.failed_files) {
      failures.querySelector("summary").textContent = t("library.failures", { count: lib.failed_files });
      failures.querySelector("ul").replaceChildren(
        ...lib.failures.map((f) => {
          // Inside the folder, the path from it is enough; its full form stays in the tooltip.
          const inside = f.path.startsWith(`${lib.path.replace(/\/$/, "")}/`);
          const shown = inside ? f.path.slice(lib.path.replace(/\/$/, "").length + 1) : f.path;
          return el("li", {}, el("span", { class: "lib-failed-path", text: shown, title: f.path }), ` — ${f.reason}`);
        }),
      );
    }
    node.querySelector(".lib-upload").hidden = !lib.uploads;
    node.querySelector(".lib-drop-hint").hidden = !lib.uploads;
  }

  function note(row, text) {
    const p = row.node.querySelector(".lib-note");
    p.textContent = text;
    p.hidden = !text;
  }

  async function rescan(row) {
    note(row, "");
    try {
      updateRow(row, await api(`/api/libraries/${encodeURIComponent(row.name)}/rescan`, { ...JSON_POST, body: "{}" }));
      note(row, t("library.rescanned"));
    } catch (error) {
      note(row, errorLine(error));
    }
  }

  async function remove(row) {
    row.node.querySelector(".lib-confirm").hidden = true;
    try {
      const done = await api(`/api/libraries/${encodeURIComponent(row.name)}/remove`, { ...JSON_POST, body: "{}" });
      row.node.remove();
      rows.delete(row.name);
      empty.hidden = rows.size > 0;
      status.textContent = t("library.removed", { name: done.name, count: done.removed_items });
      onChange();
    } catch (error) {
      note(row, errorLine(error));
    }
  }

  // Uploads the files one after another, each with a line saying how far it got or why it was refused.
  async function upload(row, files) {
    const listNode = row.node.querySelector(".lib-uploads");
    listNode.hidden = false;
    for (const file of files) {
      const line = el(
        "li",
        {},
        el("span", { class: "up-name", text: file.name }),
        el("span", { class: "up-state", text: t("upload.waiting") }),
      );
      listNode.append(line);
      const stateNode = line.querySelector(".up-state");
      // The server checks the content; the type the browser guesses from the name only warns early here.
      const limit = file.type.startsWith("image/") ? limits.photo : limits.video;
      if (file.size === 0) {
        fail(line, stateNode, t("upload.empty"));
        continue;
      }
      if (limit && file.size > limit) {
        fail(line, stateNode, t("upload.tooLarge", { size: formatBytes(file.size), limit: formatBytes(limit) }));
        continue;
      }
      try {
        const saved = await sendFile(row.name, file, (part) => {
          stateNode.textContent = t("upload.progress", { percent: Math.round(part * 100) });
        });
        stateNode.textContent =
          saved.name === file.name ? t("upload.added") : t("upload.addedAs", { name: saved.name });
        line.classList.add("done");
      } catch (error) {
        fail(line, stateNode, errorLine(error));
      }
    }
    refresh();
  }

  function fail(line, stateNode, text) {
    stateNode.textContent = text;
    line.classList.add("failed");
  }

  return {
    open,
    get isOpen() {
      return panel.open;
    },
  };
}
