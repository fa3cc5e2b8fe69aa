// Library stats and the services' health: the footer, the collection list and the banner when one is down.
import { api, el, errorMessage, reasonText, richText, sentence } from "./api.js";
import { onLanguageChange, t } from "./i18n.js";

const POLL_MS = 15000;
const LOADING_POLL_MS = 3000; // while the library loads after a restart, its progress is shown as it goes

export function createServices({ onStats }) {
  const banner = document.getElementById("banner");
  const bannerText = banner.querySelector(".banner-text");
  const library = document.getElementById("library");
  const services = document.getElementById("services");
  let timer = 0;
  let inFlight = null;
  let last = null;
  let lastError = null;

  banner.querySelector(".banner-retry").addEventListener("click", () => refresh());
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") refresh();
  });
  onLanguageChange(() => {
    if (lastError) renderOffline(lastError);
    else if (last) render(last);
  });

  function showBanner(lines, { info = false } = {}) {
    bannerText.replaceChildren(...lines.map((line) => el("p", {}, ...richText(line))));
    banner.hidden = lines.length === 0;
    // A library loading is news, not an error: no alert, and no "Check again" (it updates by itself).
    banner.classList.toggle("banner-info", info);
    banner.setAttribute("role", info ? "status" : "alert");
    banner.querySelector(".banner-retry").hidden = info;
  }

  function render(stats) {
    const down = [];
    services.replaceChildren();
    for (const key of ["embedder", "search"]) {
      const service = stats.services?.[key] ?? { up: false, address: "", message: "", missing: true };
      const name = t(`service.${key}`);
      const detail = service.up
        ? key === "embedder" && service.model
          ? t("service.upModel", { name, model: service.model })
          : t("service.up", { name })
        : t("service.down", { name });
      services.append(
        el(
          "li",
          { class: service.up ? "svc up" : "svc down", title: service.address || "" },
          el("span", { class: "dot", "aria-hidden": "true" }),
          el("span", { text: detail }),
        ),
      );
      if (!service.up) down.push(downLine(key, name, service));
    }
    if (down.length === 0 && stats.loading) showBanner([stats.loading], { info: true });
    else showBanner(down);
    const collections = Object.keys(stats.collections || {});
    if (stats.services?.search?.up === false) {
      library.textContent = t("library.unknownDown");
    } else if (stats.loading && !stats.items) {
      library.textContent = t("library.loading");
    } else {
      const counted = t("count.collections", { count: collections.length });
      library.textContent = t("library.counts", { count: stats.items ?? 0, collections: counted });
    }
  }

  // "Search service (address) is down: what is wrong and what to do. What needs it."
  function downLine(key, name, service) {
    const address = service.address || "";
    let message = t("service.notAnswering");
    if (service.missing) message = t("service.noStatus");
    else if (service.message)
      message = reasonText(service.reason, sentence(service.message), { service: key, address });
    else if (address) message = t("service.notAnsweringAt", { address });
    message = sentence(message);
    const needs = t(`service.needs.${key}`);
    return address && !message.includes(address)
      ? t("service.isDownAt", { name, address, message, needs })
      : t("service.isDown", { name, message, needs });
  }

  function renderOffline(error) {
    services.replaceChildren();
    library.textContent = t("library.unknown");
    showBanner([sentence(errorMessage(error))]);
  }

  // Fetches /api/stats now (one request at a time) and schedules the next check.
  function refresh() {
    if (inFlight) return inFlight;
    clearTimeout(timer);
    inFlight = api("/api/stats")
      .then((stats) => {
        last = stats;
        lastError = null;
        render(stats);
        onStats(stats);
        return stats;
      })
      .catch((error) => {
        lastError = error;
        renderOffline(error);
        return null;
      })
      .finally(() => {
        inFlight = null;
        timer = setTimeout(refresh, last?.loading ? LOADING_POLL_MS : POLL_MS);
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
