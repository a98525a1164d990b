// The run in progress: its stage, how long it has run and the bytes each location received.
import { h, progressBar } from "../dom.js";
import { bytes, duration, placeName, runKind, stageName } from "../format.js";

export function progressView(progress) {
  if (!progress) return h("p", { class: "muted", dataset: { idle: "" } }, "Nothing is running.");
  const elapsed = (Date.now() - new Date(progress.started_at).getTime()) / 1000;
  const rows = Object.entries(progress.bytes_by_location ?? {}).map(([name, sent]) => {
    const fraction = progress.expected_bytes ? sent / progress.expected_bytes : null;
    const of = progress.expected_bytes ? ` of ${bytes(progress.expected_bytes)}` : "";
    return h("div", { class: "progress-row", dataset: { location: name } },
      h("div", { class: "progress-label" }, h("span", {}, placeName(name)), h("span", { class: "muted" }, `${bytes(sent)}${of}`)),
      progressBar(fraction));
  });
  return h("div", { dataset: { runId: String(progress.run_id) } },
    h("p", {}, h("strong", {}, `${runKind(progress.kind)}: `),
      h("span", { class: "run-stage", dataset: { stage: progress.stage } }, stageName(progress.stage)),
      h("span", { class: "muted" }, ` · running for ${duration(Math.max(0, elapsed))}`)),
    rows.length ? rows : progressBar(null));
}
