// "Back up now": a full backup, or a partial one with chosen parts.
import { get, post } from "./api.js";
import { h, button } from "./dom.js";
import { openDialog } from "./dialog.js";

export async function openBackupNow(ctx) {
  let choices = { folders: [], addons: [], defaults: { homeassistant: true, addons: [], folders: [], exclude_database: false } };
  try {
    choices = await get("api/backup/choices");
  } catch {
    // The full backup needs no choices; the partial one falls back to what it can offer.
  }
  const full = h("input", { type: "radio", name: "backup-type", value: "full", checked: true });
  const partial = h("input", { type: "radio", name: "backup-type", value: "partial" });
  const name = h("input", { type: "text", id: "backup-name", maxlength: "100", placeholder: "Leave empty for the date and time" });
  const homeassistant = h("input", { type: "checkbox", checked: choices.defaults.homeassistant, id: "part-homeassistant" });
  const database = h("input", { type: "checkbox", checked: choices.defaults.exclude_database, id: "exclude-database" });
  const folderBoxes = choices.folders.map((f) => ({ id: f.id, box: h("input", { type: "checkbox", checked: choices.defaults.folders.includes(f.id) }), label: f.label }));
  const addonBoxes = choices.addons.map((a) => ({ id: a.slug, name: a.name, box: h("input", { type: "checkbox", checked: choices.defaults.addons.includes(a.slug) }) }));
  const otherAddons = h("input", { type: "text", id: "other-addons", placeholder: "e.g. core_mosquitto, a0d7b954_vscode" });
  const parts = h("fieldset", { hidden: true, id: "partial-parts" },
    h("legend", {}, "What to include"),
    h("label", { class: "check" }, homeassistant, "Home Assistant (settings, automations, history)"),
    folderBoxes.map((f) => h("label", { class: "check" }, f.box, f.label)),
    addonBoxes.map((a) => h("label", { class: "check" }, a.box, a.name === a.id ? `Add-on ${a.id}` : `${a.name} (${a.id})`)),
    h("label", { class: "field", for: "other-addons" }, h("span", {}, "Other add-ons (their slugs, separated by commas)"), otherAddons));
  const error = h("div", { class: "error-box", hidden: true, id: "backup-now-error" });
  const toggle = () => { parts.hidden = !partial.checked; };
  full.addEventListener("change", toggle);
  partial.addEventListener("change", toggle);

  const start = button("Start backup", async () => {
    start.disabled = true;
    error.hidden = true;
    const body = { type: partial.checked ? "partial" : "full", name: name.value.trim() || null, exclude_database: database.checked };
    if (partial.checked) {
      const others = otherAddons.value.split(",").map((s) => s.trim()).filter(Boolean);
      body.homeassistant = homeassistant.checked;
      body.folders = folderBoxes.filter((f) => f.box.checked).map((f) => f.id);
      body.addons = [...addonBoxes.filter((a) => a.box.checked).map((a) => a.id), ...others];
    }
    try {
      await post("api/backup", body);
      view.close();
      ctx.setRunning(true);
      ctx.toast("Backup started.");
      ctx.navigate("overview");
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
      start.disabled = false;
    }
  }, { dataset: { action: "start-backup" } });

  const view = openDialog({
    id: "backup-now-dialog",
    title: "Back up now",
    body: [
      h("fieldset", {}, h("legend", {}, "Kind of backup"),
        h("label", { class: "check" }, full, "Full: everything"),
        h("label", { class: "check" }, partial, "Partial: choose what to include")),
      parts,
      h("label", { class: "check" }, database, "Leave out Home Assistant's history database (smaller and faster)"),
      h("label", { class: "field", for: "backup-name" }, h("span", {}, "Name (optional)"), name),
      error,
    ],
    actions: [button("Cancel", () => view.close(), { kind: "text" }), start],
  });
}
