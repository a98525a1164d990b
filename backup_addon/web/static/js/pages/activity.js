// Activity: recent runs with their stages, how long they took, throughput and errors.
import { get, query } from "../api.js";
import { h, replace, card, chip } from "../dom.js";
import { bytes, dateTime, duration, humanize, placeName, rate, relative, runKind, stageName, triggerName } from "../format.js";

const STATES = {
  succeeded: ["Succeeded", "ok"], partial: ["Partly failed", "warn"], failed: ["Failed", "bad"], running: ["Running", "info"],
};

export function runStateChip(state) {
  const [label, tone] = STATES[state] ?? [humanize(state), ""];
  return chip(label, tone);
}

function detailLines(details) {
  const lines = [];
  if (!details || typeof details !== "object") return lines;
  const durations = details.durations ?? details.stage_seconds;
  if (durations && typeof durations === "object") {
    const parts = Object.entries(durations).map(([stage, seconds]) => `${stageName(stage)}: ${duration(seconds)}`);
    if (parts.length) lines.push(`Stages: ${parts.join(" · ")}`);
  }
  const throughput = details.throughput ?? details.bytes_per_second;
  if (throughput && typeof throughput === "object") {
    const parts = Object.entries(throughput).map(([name, value]) => `${placeName(name)} ${rate(value)}`);
    if (parts.length) lines.push(`Speed: ${parts.join(" · ")}`);
  } else if (typeof throughput === "number") {
    lines.push(`Speed: ${rate(throughput)}`);
  }
  if (typeof details.size_bytes === "number") lines.push(`Size: ${bytes(details.size_bytes)}`);
  if (Array.isArray(details.deleted) && details.deleted.length) {
    lines.push(`Removed: ${details.deleted.map((d) => `${d.name ?? d.slug} from ${placeName(d.location)}`).join("; ")}`);
  }
  if (Array.isArray(details.warnings) && details.warnings.length) lines.push(`Warnings: ${details.warnings.join("; ")}`);
  return lines;
}

function runItem(run) {
  const lines = detailLines(run.details);
  return h("li", { dataset: { runId: String(run.id), kind: run.kind, state: run.state } },
    h("div", { class: "list-row" },
      h("span", { class: "list-title grow" }, `${runKind(run.kind)}${run.backup_name ? `: ${run.backup_name}` : ""}`),
      runStateChip(run.state)),
    h("div", { class: "muted" },
      `${relative(run.started_at)} (${dateTime(run.started_at)}) · ${triggerName(run.trigger)}`,
      run.duration_seconds !== null ? ` · took ${duration(run.duration_seconds)}` : "",
      run.state === "running" && run.stage ? ` · ${stageName(run.stage)}` : "",
      run.state !== "running" && run.state !== "succeeded" && run.stage ? ` · stopped while: ${stageName(run.stage).toLowerCase()}` : ""),
    lines.map((line) => h("div", { class: "muted" }, line)),
    run.error ? h("div", { class: "error-box run-error" }, run.error) : null);
}

export async function mount(root, ctx) {
  const kind = h("select", { "aria-label": "Kind of run", onchange: () => refresh() },
    h("option", { value: "" }, "All activity"),
    ["backup", "verify", "drill", "prune", "restore", "mirror"].map((k) => h("option", { value: k }, runKind(k))));
  const list = h("ul", { class: "list", id: "runs" });
  replace(root, card("Activity", [h("div", { class: "toolbar" }, kind), list], { id: "activity" }));

  async function refresh() {
    const data = await get(`api/runs${query({ kind: kind.value, limit: 100 })}`);
    replace(list, data.runs.length ? data.runs.map(runItem) : h("li", { class: "muted" }, "Nothing has happened yet."));
  }

  await refresh();
  return { refresh: () => refresh().catch((err) => ctx.toast(err.message, true)) };
}
