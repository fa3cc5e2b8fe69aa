// Keyboard movement through the results, and images dropped on or pasted into the page.

const TEXT_INPUTS = new Set(["text", "search", "email", "number", "password", "url", "tel"]);
const ARROWS = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown"];

function isTextEntry(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  return target.tagName === "INPUT" && TEXT_INPUTS.has(target.type);
}

// How many cards the first row of the grid holds.
function columns(cards) {
  const top = cards[0]?.offsetTop;
  let n = 0;
  while (n < cards.length && cards[n].offsetTop === top) n += 1;
  return Math.max(1, n);
}

function focusCard(cards, i) {
  const target = cards[i]?.querySelector(".card-open");
  if (!target) return;
  target.focus({ preventScroll: true });
  target.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

// "/" focuses the search box; arrows move between result cards (Enter opens one: it is a button).
export function installKeyboard({ searchBox, grid, viewer, nearEnd }) {
  document.addEventListener("keydown", (event) => {
    if (viewer.isOpen || event.defaultPrevented || event.altKey || event.ctrlKey || event.metaKey) return;
    const target = event.target;
    if (event.key === "/" && !isTextEntry(target)) {
      event.preventDefault();
      searchBox.focus();
      searchBox.select();
      return;
    }
    const cards = [...grid.children].filter((node) => !node.hidden);
    if (target === searchBox && event.key === "ArrowDown" && cards.length) {
      event.preventDefault();
      focusCard(cards, 0);
      return;
    }
    const current = target instanceof HTMLElement ? target.closest(".card") : null;
    if (!current || !ARROWS.includes(event.key)) return;
    event.preventDefault();
    const i = cards.indexOf(current);
    const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns(cards), ArrowDown: columns(cards) }[event.key];
    const next = i + step;
    if (next < 0) {
      if (event.key === "ArrowUp") searchBox.focus();
      return;
    }
    if (next >= cards.length) {
      if (event.key === "ArrowDown" || event.key === "ArrowRight") nearEnd();
      focusCard(cards, cards.length - 1);
      return;
    }
    focusCard(cards, next);
  });
}

// Image files dragged onto the page (with an overlay while they hover) or pasted go to `search`.
export function installImageDrop({ overlay, viewer, search, blocked = () => false }) {
  let depth = 0;
  const carriesFiles = (event) => [...(event.dataTransfer?.types || [])].includes("Files");
  const firstImage = (files) => [...files].find((file) => file.type.startsWith("image/"));

  window.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event) || blocked()) return;
    event.preventDefault();
    depth += 1;
    overlay.hidden = false;
  });
  window.addEventListener("dragover", (event) => {
    if (!carriesFiles(event) || blocked()) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", (event) => {
    if (!carriesFiles(event)) return;
    depth = Math.max(0, depth - 1);
    if (depth === 0) overlay.hidden = true;
  });
  window.addEventListener("drop", (event) => {
    if (!carriesFiles(event) || blocked()) return;
    event.preventDefault();
    depth = 0;
    overlay.hidden = true;
    const files = event.dataTransfer.files;
    // A file that is no image still goes to `search`, which says why it cannot be searched by.
    search(firstImage(files) || files[0]);
  });
  document.addEventListener("paste", (event) => {
    if (viewer.isOpen || blocked()) return;
    const file = firstImage(event.clipboardData?.files || []);
    if (!file) return;
    event.preventDefault();
    search(file);
  });
}
