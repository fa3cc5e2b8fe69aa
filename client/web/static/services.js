// Library stats and the services' health: the footer, the collection list and the banner when one is down.
import { api, el, plural, richText, sentence } from "./api.js";

const NAMES = { embedder: "Embedder service", search: "Search service" };
const WHAT_FOR = {
  embedder: "Searching by text or by image and “What is this?” need it",
  search: "Every search and the library's stats need it",
};
const POLL_MS = 15000;

export function createServices({ onStats }) {
  const banner = document.getElementById("banner");
  const bannerText = banner.querySelector(".banner-text");
  const library = document.getElementById("library");
  const services = document.getElementById("services");
  let timer = 0;
  let inFlight = null;
  let last = null;

  banner.querySelector(".banner-retry").addEventListener("click", () => refresh());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });

  function showBanner(lines) {
    bannerText.replaceChildren(...lines.map((line) => el("p", {}, ...richText(line))));
    banner.hidden = lines.length === 0;
  }

  function render(stats) {
    const down = [];
    services.replaceChildren();
    for (const key of ["embedder", "search"]) {
      const service = stats.services?.[key] ?? { up: false, address: "", message: "No status was reported." };
      const name = NAMES[key];
      const detail = service.up ? (key === "embedder" && service.model ? `up · ${service.model}` : "up") : "down";
      services.append(
        el(
          "li",
          { class: service.up ? "svc up" : "svc down", title: service.address || "" },
          el("span", { class: "dot", "aria-hidden": "true" }),
          el("span", { text: `${name}: ${detail}` }),
        ),
      );
      if (!service.up) {
        const message =
          service.message ||
          `It does not answer${service.address ? ` at ${service.address}` : ""}; start it, then press “Check again”.`;
        const where = service.address && !message.includes(service.address) ? ` (${service.address})` : "";
        down.push(`${name}${where} is down: ${sentence(message)} ${WHAT_FOR[key]}.`);
      }
    }
    showBanner(down);
    const collections = Object.keys(stats.collections || {});
    if (stats.services?.search?.up === false) {
      library.textContent = "Library: unknown while the search service is down";
    } else {
      library.textContent = `Library: ${plural(stats.items ?? 0, "item")} in ${plural(collections.length, "collection")}`;
    }
  }

  function renderOffline(error) {
    services.replaceChildren();
    library.textContent = "Library: unknown";
    showBanner([sentence(error.message)]);
  }

  // Fetches /api/stats now (one request at a time) and schedules the next check.
  function refresh() {
    if (inFlight) return inFlight;
    clearTimeout(timer);
    inFlight = api("/api/stats")
      .then((stats) => {
        last = stats;
        render(stats);
        onStats(stats);
        return stats;
      })
      .catch((error) => {
        renderOffline(error);
        return null;
      })
      .finally(() => {
        inFlight = null;
        timer = setTimeout(refresh, POLL_MS);
      });
    return inFlight;
  }

  return {
    refresh,
    get last() {
      return last;
    },
  };
}
