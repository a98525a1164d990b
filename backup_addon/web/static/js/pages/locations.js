// Locations: kind, free space, last copy and proof, "test connection", and the retention preview.
import { get, post, segment } from "../api.js";
import { h, replace, card, button, chip, facts, progressBar } from "../dom.js";
import { bytes, placeName, relative, dateTime, locationKind } from "../format.js";

function usageView(usage) {
  if (!usage || !usage.total_bytes) return h("span", { class: "muted" }, "Unknown");
  const used = usage.total_bytes - usage.free_bytes;
  return h("div", { class: "usage" },
    h("span", {}, `${bytes(usage.free_bytes)} free of ${bytes(usage.total_bytes)}`),
    progressBar(used / usage.total_bytes));
}

export function probeView(report) {
  return h("div", { class: "probe", dataset: { ok: String(report.ok) } },
    h("p", {}, report.ok ? chip("Connection works", "ok") : chip("Connection failed", "bad")),
    report.steps?.length ? h("ol", { class: "probe-steps" }, report.steps.map((s) => h("li", {}, s))) : null,
    report.error ? h("div", { class: "error-box" }, report.error) : null);
}

function locationCard(loc) {
  const result = h("div", { class: "probe-result" });
  const space = h("span", { class: "muted space" }, "Checking…");
  // Free space arrives on its own: a location that is down must not hold up the page.
  get(`api/locations/${segment(loc.name)}/usage`)
    .then((answer) => { space.className = "space"; replace(space, usageView(answer.usage)); })
    .catch(() => replace(space, "Unknown"));
  const test = loc.supervisor ? null : button("Test connection", async () => {
    test.disabled = true;
    replace(result, h("p", { class: "muted" }, "Testing: writing, reading back and deleting a small file…"));
    try {
      replace(result, probeView(await post(`api/locations/${segment(loc.name)}/test`)));
    } catch (err) {
      replace(result, h("div", { class: "error-box" }, err.message));
    } finally {
      test.disabled = false;
    }
  }, { kind: "text", dataset: { action: "test" } });
  const body = [
    facts([
      ["Kind", locationKind(loc.kind, loc.name)],
      ["Stored on", loc.media],
      ["Where", loc.offsite ? "Away from home" : "At home"],
      ["Space", space],
      ["Last copy", loc.last_success_at ? h("span", { title: dateTime(loc.last_success_at) }, relative(loc.last_success_at)) : "Never"],
      ["Last proof", loc.last_proven_at ? h("span", { title: dateTime(loc.last_proven_at) }, relative(loc.last_proven_at)) : "Never"],
    ]),
    loc.last_error ? h("div", { class: "error-box location-error" }, loc.last_error) : null,
    loc.supervisor ? h("p", { class: "muted" }, "Managed by Home Assistant (Settings > System > Storage).") : null,
    result,
  ];
  const status = loc.last_error ? chip("Problem", "bad") : loc.last_success_at ? chip("Working", "ok") : chip("No copy yet");
  const el = card(placeName(loc.name), body, { actions: test, extra: status });
  el.dataset.location = loc.name;
  return el;
}

function retentionCard(plan) {
  const body = [h("p", { class: "muted" }, "A preview: nothing is deleted until the next backup succeeds.")];
  if (plan.held) body.push(h("p", { class: "warn-box", id: "retention-held" }, `Nothing would be deleted: ${plan.held}`));
  if (!plan.locations.length) body.push(h("p", { class: "muted" }, "There are no backups to decide about yet."));
  for (const place of plan.locations) {
    const hidden = place.kept - place.decisions.filter((d) => !d.delete).length;
    body.push(h("h3", { class: "section-title" }, `${placeName(place.location)}: keeps ${place.kept}, deletes ${place.deleted}`),
      h("ul", { class: "list", dataset: { location: place.location } },
        place.decisions.map((d) => h("li", { dataset: { slug: d.slug, delete: String(d.delete) } },
          h("div", { class: "list-row" }, h("span", { class: "grow" }, d.name), d.delete ? chip("Delete", "bad") : chip("Keep", "ok")),
          d.reasons.length ? h("div", { class: "muted" }, d.reasons.join("; ")) : null)),
        hidden > 0 ? h("li", { class: "muted" }, `…and ${hidden} older backups kept`) : null));
  }
  return card("What retention would do now", body, { id: "retention" });
}

export async function mount(root) {
  async function refresh() {
    const [data, plan] = await Promise.all([get("api/locations"), get("api/retention").catch((err) => ({ error: err.message }))]);
    replace(root,
      h("div", { class: "grid", id: "location-cards" }, data.locations.map((loc) => locationCard(loc))),
      plan.error ? card("What retention would do now", h("p", { class: "error-box" }, plan.error), { id: "retention" }) : retentionCard(plan));
  }
  await refresh();
  return { refresh: () => refresh().catch(() => {}) };
}
