// First-run setup: save the emergency kit and prove it, pick the settings, add a location, save.
import { get, post } from "../api.js";
import { h, replace, card, button, chip } from "../dom.js";
import { placeName, locationKind } from "../format.js";
import { probeView } from "./locations.js";

const FIELDS = {
  folder: [
    { key: "path", label: "Folder", placeholder: "/media/usb-disk/backups", help: "A folder the add-on can see: a USB disk under /media or a network share under /share." },
  ],
  s3: [
    { key: "endpoint", label: "Endpoint (leave empty for Amazon S3)", placeholder: "https://s3.eu-central-003.backblazeb2.com", optional: true },
    { key: "region", label: "Region", placeholder: "us-east-1", optional: true },
    { key: "bucket", label: "Bucket" },
    { key: "prefix", label: "Folder in the bucket", optional: true },
    { key: "access_key_id", label: "Access key ID" },
    { key: "secret_access_key", label: "Secret access key", type: "password" },
  ],
  webdav: [
    { key: "url", label: "Address of the folder", placeholder: "https://cloud.example.com/remote.php/dav/files/alice/Backups" },
    { key: "username", label: "User name", optional: true },
    { key: "password", label: "Password", type: "password", optional: true },
  ],
  sftp: [
    { key: "host", label: "Server", placeholder: "nas.local" },
    { key: "port", label: "Port", type: "number", placeholder: "22", optional: true },
    { key: "username", label: "User name" },
    { key: "password", label: "Password", type: "password", optional: true },
    { key: "private_key", label: "Private key (instead of a password)", type: "textarea", optional: true },
    { key: "host_key", label: "Server's host key (recommended)", optional: true, placeholder: "ssh-ed25519 AAAA…" },
    { key: "folder", label: "Folder on the server", optional: true, placeholder: "backups/home-assistant" },
  ],
  smb: [
    { key: "server", label: "Server", placeholder: "nas.local" },
    { key: "share", label: "Share", placeholder: "backups" },
    { key: "folder", label: "Folder in the share", optional: true },
    { key: "username", label: "User name" },
    { key: "password", label: "Password", type: "password" },
    { key: "domain", label: "Domain", optional: true },
  ],
};

function stepper(current) {
  const names = ["Emergency kit", "Settings", "Save"];
  return h("div", { class: "steps" }, names.map((name, i) =>
    h("div", { class: `step ${i + 1 === current ? "current" : i + 1 < current ? "done" : ""}`.trim() },
      h("span", { class: "num" }, String(i + 1)), h("span", {}, name))));
}

function shortId(id) {
  return id.length > 24 ? `${id.slice(0, 12)}…${id.slice(-8)}` : id;
}

export async function mount(root, ctx) {
  const status = await get("api/setup");
  const wizard = { status, recommended: true, added: [] };
  const later = button("Set up later", () => ctx.navigate("overview"), { kind: "text" });

  function frame(step, title, body, actions) {
    replace(root, h("section", { class: "card", id: "setup", dataset: { step: String(step) } },
      h("div", { class: "card-header" }, h("h2", {}, title), later),
      h("div", { class: "card-content" }, stepper(step), body),
      h("div", { class: "card-actions" }, actions)));
  }

  function kitStep() {
    const input = h("input", { type: "text", class: "key-input", id: "kit-fragment", maxlength: "9", autocomplete: "off",
      spellcheck: "false", "aria-label": "Last 4 characters of the key" });
    const error = h("div", { class: "error-box", id: "kit-error", hidden: true });
    const confirm = button("Confirm", async () => {
      confirm.disabled = true;
      try {
        wizard.status = { ...wizard.status, ...(await post("api/kit/confirm", { fragment: input.value })) };
        settingsStep();
      } catch (err) {
        error.textContent = err.message;
        error.hidden = false;
        confirm.disabled = false;
        input.focus();
      }
    }, { dataset: { action: "confirm-kit" } });
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") confirm.click(); });
    frame(1, "Save your emergency kit", [
      h("p", {}, "Every backup is encrypted with your key. If this device breaks, the emergency kit is the only way to open your backups."),
      h("p", {}, "Save it somewhere other than this device: a password manager, a USB stick in a drawer, or a printout."),
      h("p", {}, "Key ID: ", h("span", { class: "mono", id: "key-id", title: status.key_id }, shortId(status.key_id))),
      h("p", {}, h("a", { class: "button", href: "api/kit", download: "", id: "kit-download" }, "Download the emergency kit")),
      h("label", { class: "field", for: "kit-fragment" },
        h("span", {}, "To confirm you saved it, open the kit and type the last 4 characters of your key (the group after the last dash):"),
        input),
      error,
    ], confirm);
  }

  function locationForm(onAdded) {
    const kind = h("select", { id: "new-location-kind", "aria-label": "Kind of location" },
      Object.keys(FIELDS).map((k) => h("option", { value: k }, locationKind(k))));
    const name = h("input", { type: "text", id: "new-location-name", placeholder: "USB disk", maxlength: "40" });
    const fields = h("div");
    const result = h("div", { id: "new-location-result" });
    let inputs = {};
    let tested = null;

    function drawFields() {
      inputs = {};
      tested = null;
      add.disabled = true;
      replace(result);
      replace(fields, FIELDS[kind.value].map((f) => {
        const input = f.type === "textarea"
          ? h("textarea", { id: `new-location-${f.key}`, placeholder: f.placeholder ?? null, spellcheck: "false" })
          : h("input", { type: f.type ?? "text", id: `new-location-${f.key}`, placeholder: f.placeholder ?? null,
            autocomplete: f.type === "password" ? "new-password" : "off", spellcheck: "false" });
        input.addEventListener("input", () => { tested = null; add.disabled = true; });
        inputs[f.key] = { input, field: f };
        return h("label", { class: "field", for: input.id }, h("span", {}, f.label), input, f.help ? f.help : null);
      }));
    }

    function values() {
      const location = { name: name.value.trim(), kind: kind.value };
      for (const [key, { input, field }] of Object.entries(inputs)) {
        const raw = input.value.trim();
        if (raw === "") continue;
        location[key] = field.type === "number" ? Number(raw) : raw;
      }
      return location;
    }

    const test = button("Test connection", async () => {
      test.disabled = true;
      replace(result, h("p", { class: "muted" }, "Testing: writing, reading back and deleting a small file…"));
      const location = values();
      try {
        const report = await post("api/setup/test-location", { location });
        replace(result, probeView(report));
        tested = report.ok ? location : null;
        add.disabled = !report.ok;
      } catch (err) {
        replace(result, h("div", { class: "error-box" }, err.message,
          err.problems?.length ? h("ul", {}, err.problems.map((p) => h("li", {}, p))) : null));
      } finally {
        test.disabled = false;
      }
    }, { kind: "text", dataset: { action: "test-new-location" } });
    const add = button("Add this location", () => {
      if (!tested) return;
      onAdded(tested);
      name.value = "";
      drawFields();
    }, { dataset: { action: "add-location" } });
    add.disabled = true;
    kind.addEventListener("change", drawFields);
    name.addEventListener("input", () => { tested = null; add.disabled = true; });
    drawFields();
    return h("div", { id: "new-location" },
      h("label", { class: "field", for: "new-location-kind" }, h("span", {}, "Kind"), kind),
      h("label", { class: "field", for: "new-location-name" }, h("span", {}, "Name"), name),
      fields,
      h("div", { class: "toolbar" }, test, add),
      result);
  }

  function settingsStep() {
    const choice = (value, title, lines) => h("label", { class: "choice" },
      h("input", { type: "radio", name: "settings", value, checked: wizard.recommended === (value === "recommended"),
        onchange: () => { wizard.recommended = value === "recommended"; } }),
      h("div", {}, h("strong", {}, title), h("ul", { class: "missing" }, lines.map((l) => h("li", {}, l)))));
    const current = [
      ...[".local", ...status.supervisor_locations].map((n) => ({ name: n, kind: n === ".local" ? "supervisor" : "network storage" })),
      ...status.locations,
    ];
    const addedList = h("ul", { class: "list", id: "added-locations" });
    const drawAdded = () => replace(addedList, wizard.added.map((loc, i) => h("li", { dataset: { location: loc.name } },
      h("div", { class: "list-row" }, h("span", { class: "grow list-title" }, loc.name), chip(locationKind(loc.kind), "info"),
        button("Remove", () => { wizard.added.splice(i, 1); drawAdded(); }, { kind: "text small" })))));
    drawAdded();
    frame(2, "Choose your settings", [
      choice("recommended", "Recommended", ["Back up everything every day", "Keep the last 3 backups in each location",
        "Copy every backup to every location", "Encrypt every copy"]),
      choice("current", "Keep my current settings", ["As set in the add-on's Configuration tab"]),
      h("h3", { class: "section-title" }, "Your locations"),
      h("ul", { class: "list" }, current.map((loc) => h("li", {},
        h("div", { class: "list-row" }, h("span", { class: "grow" }, placeName(loc.name)), h("span", { class: "muted" }, locationKind(loc.kind)))))),
      addedList,
      h("h3", { class: "section-title" }, "Add a location"),
      h("p", { class: "muted" }, "Three copies on two kinds of storage, one away from home: add a USB disk, a NAS or cloud storage."),
      locationForm((loc) => { wizard.added.push(loc); drawAdded(); }),
    ], [
      button("Back", kitStep, { kind: "text" }),
      button("Next", saveStep, { dataset: { action: "next" } }),
    ]);
  }

  function saveStep() {
    const changes = wizard.recommended || wizard.added.length;
    const error = h("div", { class: "error-box", id: "save-error", hidden: true });
    const save = button(changes ? "Save and restart the add-on" : "Finish", async () => {
      save.disabled = true;
      error.hidden = true;
      try {
        if (!changes) {
          await post("api/setup/skip");
          ctx.navigate("overview");
          return;
        }
        await post("api/setup/save", { recommended: wizard.recommended, add_locations: wizard.added });
        frame(3, "Settings saved", h("p", { id: "setup-saved" },
          "The add-on restarts with the new settings. This page reconnects by itself in a moment."), []);
        waitForRestart();
      } catch (err) {
        replace(error, err.message, err.problems?.length ? h("ul", {}, err.problems.map((p) => h("li", {}, p))) : null);
        error.hidden = false;
        save.disabled = false;
      }
    }, { dataset: { action: "save" } });
    const summary = [];
    if (wizard.recommended) summary.push("Use the recommended settings: every day, keep 3, every location, encrypted.");
    else summary.push("Keep the current settings.");
    for (const loc of wizard.added) summary.push(`Add the location "${loc.name}" (${locationKind(loc.kind)}).`);
    frame(3, "Save", [h("ul", { class: "missing" }, summary.map((s) => h("li", {}, s))), error],
      [button("Back", settingsStep, { kind: "text" }), save]);
  }

  function waitForRestart() {
    const started = Date.now();
    const poll = async () => {
      try {
        await get("api/setup");
        ctx.navigate("overview");
      } catch {
        if (Date.now() - started < 120000) setTimeout(poll, 2000);
        else ctx.toast("The add-on did not come back. Open its Log tab in Home Assistant.", true);
      }
    };
    setTimeout(poll, 3000);
  }

  if (status.kit_confirmed) settingsStep();
  else kitStep();
  return {};
}
