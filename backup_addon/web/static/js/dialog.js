// Modal dialogs: the backup's details, confirmations before anything is replaced or deleted.
import { h, append } from "./dom.js";

export function openDialog({ title, body, actions = [], onClose = null, id = null }) {
  const dialog = h("dialog", { id, "aria-labelledby": "dialog-title" });
  const titleEl = h("h2", { class: "dialog-title", id: "dialog-title" }, title);
  const bodyEl = h("div", { class: "dialog-body" }, body);
  const actionsEl = h("div", { class: "dialog-actions" }, actions);
  append(dialog, [titleEl, bodyEl, actionsEl]);
  dialog.addEventListener("close", () => {
    dialog.remove();
    if (onClose) onClose();
  });
  document.body.append(dialog);
  dialog.showModal();
  return { dialog, body: bodyEl, actions: actionsEl, title: titleEl, close: () => dialog.close() };
}

export function confirmDialog({ title, message, confirmLabel, danger = false, cancelLabel = "Cancel" }) {
  return new Promise((resolve) => {
    let answer = false;
    const cancel = h("button", { class: "button text", type: "button", dataset: { action: "cancel" } }, cancelLabel);
    const confirm = h("button", { class: `button ${danger ? "danger" : ""}`.trim(), type: "button", dataset: { action: "confirm" } }, confirmLabel);
    const paragraphs = (Array.isArray(message) ? message : [message]).map((m) => (m instanceof Node ? m : h("p", {}, m)));
    const view = openDialog({ title, body: paragraphs, actions: [cancel, confirm], onClose: () => resolve(answer) });
    view.dialog.classList.add("confirm");
    cancel.addEventListener("click", () => view.close());
    confirm.addEventListener("click", () => {
      answer = true;
      view.close();
    });
    cancel.focus();
  });
}
