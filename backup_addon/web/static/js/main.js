// The panel's shell: tabs, live events, the "back up now" button and the first-run setup.
import { get } from "./api.js";
import { h, replace, progressBar } from "./dom.js";
import { bytes, stageName, runKind } from "./format.js";
import { openBackupNow } from "./backup-now.js";
import * as overview from "./pages/overview.js";
import * as backups from "./pages/backups.js";
import * as locations from "./pages/locations.js";
import * as activity from "./pages/activity.js";
import * as setup from "./pages/setup.js";

const PAGES = { overview, backups, locations, activity, setup };
const state = { name: null, view: null, visit: 0, progress: null, running: false, refreshTimer: null, toastTimer: null };

const ctx = {
  get progress() {
    return state.progress;
  },
  get running() {
    return state.running;
  },
  navigate(name) {
    if (location.hash === `#${name}`) show(name);
    else location.hash = name;
  },
  toast(message, bad = false) {
    const toast = document.getElementById("toast");
    toast.textContent = message;
    toast.className = bad ? "toast bad" : "toast";
    toast.hidden = false;
    clearTimeout(state.toastTimer);
    state.toastTimer = setTimeout(() => { toast.hidden = true; }, bad ? 8000 : 4000);
  },
  backupNow() {
    openBackupNow(ctx);
  },
  setRunning(running) {
    state.running = running;
    document.getElementById("backup-now").disabled = running;
    renderBanner();
  },
};

function pageFromHash() {
  const name = location.hash.replace(/^#\/?/, "");
  return PAGES[name] ? name : "overview";
}

async function show(name) {
  state.view?.unmount?.();
  state.view = null;
  state.name = name;
  for (const tab of document.querySelectorAll("#tabs a")) {
    if (tab.dataset.page === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  const root = document.getElementById("page");
  root.dataset.page = name;
  replace(root, h("p", { class: "muted" }, "Loading…"));
  // Each visit renders into its own slot: a page still loading (or refreshing) after the user
  // moved on writes into a slot nobody shows, never over the page now open.
  const visit = (state.visit = (state.visit ?? 0) + 1);
  const slot = h("div", { class: "page-slot" });
  try {
    const view = await PAGES[name].mount(slot, ctx);
    if (state.visit !== visit) {
      view?.unmount?.();
      return;
    }
    state.view = view;
    replace(root, slot);
  } catch (err) {
    if (state.visit !== visit) return;
    replace(root, h("section", { class: "card" }, h("div", { class: "card-content" },
      h("p", { class: "error-box" }, err.message ?? String(err)),
      h("button", { class: "button", type: "button", onclick: () => show(name) }, "Try again"))));
  }
  renderBanner();
}

function renderBanner() {
  const banner = document.getElementById("run-banner");
  const progress = state.progress;
  if (!progress || state.name === "overview" || state.name === "setup") {
    banner.hidden = true;
    return;
  }
  const sent = Object.values(progress.bytes_by_location ?? {});
  const most = sent.length ? Math.max(...sent) : 0;
  const fraction = progress.expected_bytes && most ? most / progress.expected_bytes : null;
  replace(banner,
    h("span", { class: "grow" }, `${runKind(progress.kind)} running: ${stageName(progress.stage)}`,
      most ? ` · ${bytes(most)}` : ""),
    h("a", { href: "#overview" }, "Details"),
    h("div", { class: "banner-bar" }, progressBar(fraction)));
  banner.hidden = false;
}

function scheduleRefresh() {
  clearTimeout(state.refreshTimer);
  state.refreshTimer = setTimeout(async () => {
    try {
      const status = await get("api/overview");
      state.progress = status.progress;
      ctx.setRunning(status.running);
    } catch {
      // The next event or page load tries again.
    }
    state.view?.refresh?.();
  }, 250);
}

function handle(event) {
  if (event.type === "progress") {
    state.progress = event;
    ctx.setRunning(true);
    state.view?.onProgress?.(event);
  } else if (event.type === "idle") {
    state.progress = null;
    renderBanner();
  } else {
    // "changed" or "run_finished": the catalog moved on; fetch what the page shows again.
    if (event.type === "run_finished") state.progress = null;
    scheduleRefresh();
  }
}

function connect() {
  const source = new EventSource("api/events");
  source.addEventListener("message", (message) => {
    try {
      handle(JSON.parse(message.data));
    } catch {
      // An event the page does not understand is skipped.
    }
  });
  // The browser reconnects by itself; afterwards the page may have missed changes.
  source.addEventListener("open", () => scheduleRefresh());
}

async function start() {
  document.getElementById("backup-now").addEventListener("click", () => ctx.backupNow());
  window.addEventListener("hashchange", () => show(pageFromHash()));
  let first = pageFromHash();
  try {
    const status = await get("api/setup");
    // The setup opens by itself until it is done; the overview links back to it.
    if (!status.done && (location.hash === "" || location.hash === "#overview")) first = "setup";
  } catch {
    // Shown by the page itself when it fails to load.
  }
  connect();
  await show(first);
}

start();
