// Backups: every backup against every location (copy present, verified, proven restorable, failed),
// with the actions on one copy behind a click on its row.
import { get, post, del, query, segment } from "../api.js";
import { h, replace, card, button, chip, facts } from "../dom.js";
import { openDialog, confirmDialog } from "../dialog.js";
import { LOCAL, bytes, dateTime, placeName, relative, humanize, locationKind } from "../format.js";

const PAGE_SIZE = 50;
const ORIGINS = { addon: "Made by this add-on", homeassistant: "Home Assistant's own", other: "Other" };

export function copyStatus(copy) {
  if (!copy) return { label: "No copy", tone: "", when: null, state: "none" };
  switch (copy.state) {
    case "writing": return { label: "Writing…", tone: "info", when: null, state: copy.state };
    case "failed": return { label: "Failed", tone: "bad", when: null, state: copy.state };
    case "bad": return { label: "Damaged", tone: "bad", when: copy.checked_at, state: copy.state };
    case "deleted": return { label: "Deleted", tone: "", when: copy.checked_at, state: copy.state };
    default: break;
  }
  if (copy.level >= 3) return { label: "Restorable", tone: "ok", when: copy.drilled_at, state: copy.state, title: "Opened with the key and read to the end: proven restorable" };
  if (copy.level >= 2) return { label: "Verified", tone: "ok", when: copy.verified_at, state: copy.state, title: "Read back and decrypted: every byte matches" };
  if (copy.level >= 1) return { label: "Checked", tone: "ok", when: copy.checked_at ?? copy.committed_at, state: copy.state, title: "Size (and checksum, where the storage has one) match" };
  return { label: "Written", tone: "", when: copy.committed_at, state: copy.state, title: "Stored; not checked yet" };
}

function statusCell(copy) {
  const status = copyStatus(copy);
  if (status.state === "none") return h("span", { class: "muted" }, "—");
  return h("span", {},
    chip(status.label, status.tone, copy?.error ?? status.title ?? null),
    status.when ? h("span", { class: "cell-when", title: dateTime(status.when) }, relative(status.when)) : null,
    copy?.error && status.tone === "bad" ? h("span", { class: "cell-error", title: copy.error }, copy.error) : null);
}

function backupRow(backup, columns, onOpen) {
  const sub = [dateTime(backup.created_at), humanize(backup.type), bytes(backup.size_bytes)].filter(Boolean).join(" · ");
  return h("tr", { dataset: { slug: backup.slug }, tabindex: "0", onclick: () => onOpen(backup.slug),
    onkeydown: (e) => { if (e.key === "Enter") onOpen(backup.slug); } },
  h("td", { class: "backup-cell" },
    h("div", { class: "backup-name" }, backup.name),
    h("div", { class: "sub" }, sub, backup.pinned ? h("span", { class: "pin" }, " · Pinned") : null,
      backup.origin !== "addon" ? ` · ${ORIGINS[backup.origin] ?? backup.origin}` : "")),
  columns.map((col) => {
    const copy = backup.copies[col.name];
    return h("td", { "data-label": placeName(col.name), dataset: { location: col.name, state: copy?.state ?? "none", level: copy ? String(copy.level) : "" } },
      statusCell(copy));
  }));
}

function restoreMessage(backup, location) {
  const date = dateTime(backup.created_at);
  const lines = [
    h("p", {}, "Restore ", h("strong", {}, backup.name), ` from ${placeName(location)}?`),
  ];
  if (backup.type === "full") {
    lines.push(h("p", {}, `This replaces Home Assistant's settings and history, every add-on with its data, and your folders (share, media, certificates) with their state of ${date}.`));
  } else {
    lines.push(h("p", {}, `This is a partial backup: the parts it holds (Home Assistant, the add-ons and folders chosen when it was made) are replaced by their state of ${date}.`));
  }
  lines.push(h("p", { class: "warn-box" }, "Anything changed since then is lost. Home Assistant restarts during the restore and is unavailable for a few minutes."));
  return lines;
}

async function openBackup(slug, ctx, reloadPage) {
  const view = openDialog({ title: "Backup", body: h("p", { class: "muted" }, "Loading…"), id: "backup-dialog" });
  const close = button("Close", () => view.close(), { kind: "text" });
  replace(view.actions, close);

  async function act(label, work, success) {
    try {
      ctx.toast(`${label}…`);
      const result = await work();
      if (result && result.ok === false) ctx.toast(result.error ?? `${label} found a problem.`, true);
      else ctx.toast(success(result));
    } catch (err) {
      ctx.toast(err.message, true);
    }
    await render();
    reloadPage();
  }

  async function render() {
    let backup;
    try {
      backup = await get(`api/backups/${segment(slug)}`);
    } catch (err) {
      replace(view.body, h("p", { class: "error-box" }, err.message));
      return;
    }
    view.title.textContent = backup.name;
    const copies = Object.entries(backup.copies).filter(([, copy]) => copy.state !== "deleted");
    const good = copies.filter(([, copy]) => copy.state === "committed");
    const pin = button(backup.pinned ? "Unpin" : "Pin (keep for ever)", () => act(backup.pinned ? "Unpinning" : "Pinning",
      () => post(`api/backups/${segment(slug)}/pin`, { pinned: !backup.pinned }),
      () => (backup.pinned ? "Unpinned: retention may remove it again." : "Pinned: retention keeps it.")), { kind: "text", dataset: { action: "pin" } });
    const rows = copies.map(([location, copy]) => {
      const status = copyStatus(copy);
      const base = `api/backups/${segment(slug)}`;
      const actions = [];
      // Copies on network storage are read back by the Supervisor only, not by the add-on.
      const readable = !(copy.kind === "supervisor" && location !== LOCAL);
      if (readable && (copy.state === "committed" || copy.state === "bad")) {
        actions.push(
          button("Verify now", () => act("Checking", () => post(`${base}/verify`, { location, drill: false }),
            () => "The copy was read back and matches."), { kind: "text small", dataset: { action: "verify" } }),
          button("Test restore", () => act("Testing the restore", () => post(`${base}/verify`, { location, drill: true }),
            () => "Proven restorable: every part opened with your key."), { kind: "text small", dataset: { action: "drill" } }));
      }
      if (copy.state === "committed") {
        actions.push(
          h("a", { class: "button text small", href: `${base}/download${location ? `?location=${segment(location)}` : ""}`, download: "", dataset: { action: "download" } }, "Download"),
          button("Restore…", async () => {
            const yes = await confirmDialog({ title: "Restore this backup?", message: restoreMessage(backup, location), confirmLabel: "Restore", danger: true });
            if (yes) await act("Restoring", () => post(`${base}/restore`, { location }), () => "The restore has started. Home Assistant restarts when it is done.");
          }, { kind: "text small", dataset: { action: "restore" } }));
      }
      actions.push(button("Delete…", async () => {
        const last = good.length === 1 && good[0][0] === location;
        const message = [h("p", {}, "Delete the copy of ", h("strong", {}, backup.name), ` in ${placeName(location)}?`),
          last ? h("p", { class: "warn-box" }, "This is the only good copy of this backup: after this it is gone for good.")
            : h("p", {}, "The other copies are kept. This cannot be undone.")];
        const yes = await confirmDialog({ title: "Delete this copy?", message, confirmLabel: "Delete", danger: true });
        if (yes) await act("Deleting", () => del(`${base}/copies/${segment(location)}`), () => `Deleted from ${placeName(location)}.`);
      }, { kind: "text small danger", dataset: { action: "delete" } }));
      return h("div", { class: "copy-row", dataset: { location, state: copy.state } },
        h("div", { class: "list-row" }, h("strong", { class: "grow" }, placeName(location)), chip(status.label, status.tone)),
        facts([
          ["Stored", copy.committed_at ? dateTime(copy.committed_at) : null],
          ["Last checked", copy.checked_at ? dateTime(copy.checked_at) : null],
          ["Verified", copy.level >= 2 && copy.verified_at ? dateTime(copy.verified_at) : null],
          ["Proven restorable", copy.level >= 3 && copy.drilled_at ? dateTime(copy.drilled_at) : null],
        ]),
        copy.error ? h("div", { class: "error-box copy-error" }, copy.error) : null,
        h("div", { class: "copy-actions" }, actions));
    });
    replace(view.body,
      facts([
        ["Made", dateTime(backup.created_at)],
        ["Type", backup.type === "full" ? "Full" : "Partial"],
        ["Size", bytes(backup.size_bytes)],
        ["Made by", ORIGINS[backup.origin] ?? backup.origin],
        ["Kept", backup.pinned ? "Pinned: retention never removes it" : "By the retention rules"],
      ]),
      h("h3", { class: "section-title" }, "Copies"),
      rows.length ? rows : h("p", { class: "muted" }, "No copies are left."));
    replace(view.actions, pin, close);
  }

  await render();
}

export async function mount(root, ctx) {
  const search = h("input", { type: "search", placeholder: "Search by name", "aria-label": "Search backups" });
  const show = h("select", { "aria-label": "Which backups" },
    h("option", { value: "all" }, "All backups"),
    h("option", { value: "problems" }, "With a problem"),
    h("option", { value: "unproven" }, "Not yet verified"),
    h("option", { value: "pinned" }, "Pinned"));
  const origin = h("select", { "aria-label": "Made by" },
    h("option", { value: "" }, "Made by anyone"),
    Object.entries(ORIGINS).map(([value, label]) => h("option", { value }, label)));
  const head = h("thead");
  const body = h("tbody");
  const status = h("p", { class: "muted", id: "backups-count" });
  const more = button("Show more", () => load(true), { kind: "text" });
  let loaded = [];
  let columns = [];
  let total = 0;

  replace(root, card("Backups", [
    h("div", { class: "toolbar" }, search, show, origin),
    h("div", { class: "matrix-wrap" }, h("table", { class: "matrix", id: "matrix" }, head, body)),
    status,
    h("p", { class: "muted legend" }, "Written: stored. Checked: its size matches. Verified: read back and decrypted, every byte matches. ",
      "Restorable: opened with your key to the end (restore test)."),
  ], { id: "backups", actions: [more, button("Back up now", () => ctx.backupNow())] }));

  const reloadPage = () => load(false).catch(() => {});
  const open = (slug) => openBackup(slug, ctx, reloadPage);

  function draw() {
    replace(head, h("tr", {}, h("th", {}, "Backup"), columns.map((c) => h("th", { title: locationKind(c.kind) }, placeName(c.name)))));
    replace(body, loaded.map((b) => backupRow(b, columns, open)));
    status.textContent = total === 0 ? "No backups match." : `Showing ${loaded.length} of ${total}.`;
    more.hidden = loaded.length >= total;
  }

  async function load(append) {
    const offset = append ? loaded.length : 0;
    const limit = append ? PAGE_SIZE : Math.max(PAGE_SIZE, loaded.length);
    const data = await get(`api/backups${query({ offset, limit, q: search.value.trim(), show: show.value, origin: origin.value })}`);
    loaded = append ? [...loaded, ...data.backups] : data.backups;
    columns = data.locations;
    total = data.total;
    draw();
  }

  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(reloadPage, 250);
  });
  show.addEventListener("change", reloadPage);
  origin.addEventListener("change", reloadPage);
  await load(false);
  return { refresh: reloadPage };
}
