// Overview: is the 3-2-1 rule met, the last and next backup, each location's health, the current run.
import { get } from "../api.js";
import { h, replace, card, button, chip, facts } from "../dom.js";
import { bytes, placeName, relative, when, dateTime, locationKind } from "../format.js";
import { progressView } from "./progress.js";
import { runStateChip } from "./activity.js";

function verdictCard(verdict, ctx) {
  const none = !verdict.newest_slug;
  const tone = none ? "warn" : verdict.met && !verdict.stale ? "ok" : "bad";
  const title = none ? "No backup yet" : tone === "ok" ? "Your backups follow the 3-2-1 rule" : "Your backups are not fully safe yet";
  const counter = (value, goal, label) =>
    h("div", { class: `counter ${value >= goal ? "ok" : "bad"}`, title: `${goal} needed` },
      h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label), h("div", { class: "goal" }, `${goal} needed`));
  const body = [
    h("div", { class: "verdict" },
      h("div", { class: `verdict-icon ${tone}`, "aria-hidden": "true" }, tone === "ok" ? "✓" : "!"),
      h("div", {}, h("div", { class: "verdict-title", dataset: { verdict: tone } }, title),
        verdict.summary ? h("div", { class: "muted" }, verdict.summary) : null)),
    h("div", { class: "counters" },
      counter(verdict.copies, 3, "copies"), counter(verdict.media, 2, "kinds of storage"), counter(verdict.offsite, 1, "away from home")),
  ];
  if (verdict.missing?.length) body.push(h("ul", { class: "missing" }, verdict.missing.map((m) => h("li", {}, m))));
  if (verdict.last_offsite_proven_at) {
    body.push(h("p", { class: "muted" }, `Last proven restorable away from home: ${when(verdict.last_offsite_proven_at)}`));
  }
  return card("3-2-1 rule", body, { id: "verdict", actions: none ? button("Back up now", () => ctx.backupNow()) : null });
}

function backupsCard(data, ctx) {
  const run = data.last_run;
  const last = data.last_backup;
  return card("Backups", facts([
    ["Last backup", last ? h("span", {}, h("span", { class: "list-title" }, last.name), h("br"),
      h("span", { class: "muted" }, `${when(last.created_at)}${last.size_bytes ? ` · ${bytes(last.size_bytes)}` : ""}`)) : "None yet"],
    ["Last run", run ? h("span", {}, runStateChip(run.state), " ", h("span", { class: "muted" }, relative(run.started_at)),
      run.error ? h("div", { class: "error-box spaced" }, run.error) : null) : null],
    ["Next backup", data.next_backup ? `${relative(data.next_backup)} (${dateTime(data.next_backup)})` : "Not scheduled"],
  ]), {
    id: "backups-summary",
    actions: [button("See all backups", () => ctx.navigate("backups"), { kind: "text" }),
      button("Back up now", () => ctx.backupNow(), { dataset: { action: "backup-now" } })],
  });
}

function healthCard(locations) {
  const items = locations.map((loc) => h("li", { dataset: { location: loc.name } },
    h("div", { class: "list-row" },
      h("span", { class: "list-title grow" }, placeName(loc.name)),
      loc.offsite ? chip("away from home", "info") : null,
      loc.last_error ? chip("problem", "bad") : loc.last_success_at ? chip("working", "ok") : chip("no copy yet")),
    h("div", { class: "muted" }, `${locationKind(loc.kind, loc.name)}${loc.media ? ` · on ${loc.media}` : ""}`),
    h("div", { class: "muted" },
      `Last copy: ${loc.last_success_at ? relative(loc.last_success_at) : "never"} · Last proof: ${loc.last_proven_at ? relative(loc.last_proven_at) : "never"}`),
    loc.last_error ? h("div", { class: "error-box location-error" }, loc.last_error) : null));
  return card("Locations", items.length ? h("ul", { class: "list" }, items) : h("p", { class: "muted" }, "No locations yet."), { id: "health" });
}

export async function mount(root, ctx) {
  let runBody = null;

  async function refresh() {
    const data = await get("api/overview");
    ctx.setRunning(data.running);
    runBody = h("div", {}, progressView(data.progress ?? ctx.progress));
    const setupCard = data.setup.done ? null : card("Finish setting up",
      h("p", {}, data.setup.kit_confirmed
        ? "Choose how often to back up and where the copies go."
        : "Save your emergency kit: without it, your encrypted backups cannot be opened."),
      { id: "setup-reminder", actions: button("Continue setup", () => ctx.navigate("setup")) });
    replace(root, setupCard,
      h("div", { class: "grid two" },
        verdictCard(data.verdict, ctx),
        backupsCard(data, ctx),
        card("Current run", runBody, { id: "current-run" }),
        healthCard(data.locations)));
  }

  await refresh();
  const timer = setInterval(() => {
    if (runBody && ctx.progress) replace(runBody, progressView(ctx.progress));
  }, 1000);
  return {
    refresh: () => refresh().catch(() => {}),
    onProgress(progress) {
      if (runBody) replace(runBody, progressView(progress));
    },
    unmount() {
      clearInterval(timer);
    },
  };
}
