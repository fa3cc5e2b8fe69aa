// A result card of the grid: its thumbnail, name and score, its moment or copies, what is said, and its actions.
import { altText, el, formatScore } from "./api.js";
import { t, translate } from "./i18n.js";
import { saidBlock } from "./said.js";

// The card of `hit`, from the page's <template>. open(from, options) shows the hit in the viewer (focusLabels:
// at the classifier's labels); like() searches for more like it.
export function resultCard(template, hit, { hidden, open, like }) {
  const node = template.content.firstElementChild.cloneNode(true);
  translate(node);
  node.dataset.id = hit.id;
  node.dataset.score = String(hit.score);
  const opener = node.querySelector(".card-open");
  opener.setAttribute("aria-label", t("card.open", { name: hit.name }));
  const img = node.querySelector(".thumb");
  img.alt = altText(hit);
  img.addEventListener("error", () => node.classList.add("broken"), { once: true });
  img.src = hit.thumbnail_url;
  if (hit.media === "video") {
    const badge = node.querySelector(".badge-time");
    badge.hidden = false;
    badge.querySelector("span").textContent = hit.time || "";
    if (hit.span) {
      // A moment: the frames of one shot that match, shown as one result at its best frame.
      const span = node.querySelector(".card-span");
      span.hidden = false;
      span.textContent =
        hit.said_lines?.length && hit.frames <= 1 ? hit.span : t("card.frames", { span: hit.span, count: hit.frames });
    }
    const said = saidBlock(hit);
    if (said) node.querySelector(".card-said").replaceWith(said);
  } else if (hit.duplicates?.length) {
    const copies = node.querySelector(".card-span");
    copies.hidden = false;
    copies.textContent = t("card.duplicates", { count: hit.duplicates.length });
    copies.title = hit.duplicates.map((d) => d.source || d.name).join("\n");
  }
  const name = node.querySelector(".card-name");
  name.textContent = hit.name;
  name.title = hit.source || hit.name;
  const score = node.querySelector(".card-score");
  score.replaceChildren(el("span", { class: "visually-hidden", text: t("card.scoreLabel") }), formatScore(hit.score));
  score.title = t("card.scoreTitle");
  node.hidden = hidden;
  opener.addEventListener("click", () => open(opener));
  node.querySelector(".card-like").addEventListener("click", () => like());
  node.querySelector(".card-what").addEventListener("click", () => open(opener, { focusLabels: true }));
  return node;
}
