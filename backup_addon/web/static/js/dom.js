// Building the page from data without ever parsing it as HTML: every string becomes a text node.

const PROPERTIES = new Set(["value", "checked", "disabled", "hidden", "open", "selected", "indeterminate"]);

export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function card(title, body, { actions = null, id = null, extra = null } = {}) {
  return h("section", { class: "card", id },
    title ? h("div", { class: "card-header" }, h("h2", {}, title), extra) : null,
    h("div", { class: "card-content" }, body),
    actions ? h("div", { class: "card-actions" }, actions) : null);
}

export function button(label, onclick, { kind = "", title = null, type = "button", dataset = null } = {}) {
  return h("button", { class: `button ${kind}`.trim(), type, title, onclick, dataset }, label);
}

export function chip(label, tone = "", title = null) {
  return h("span", { class: `chip ${tone}`.trim(), title }, label);
}

export function facts(pairs) {
  const dl = h("dl", { class: "facts" });
  for (const [term, value] of pairs) {
    if (value === null || value === undefined || value === "") continue;
    dl.append(h("dt", {}, term), h("dd", {}, value));
  }
  return dl;
}

export function progressBar(fraction) {
  const bar = h("div", { class: "progress-bar" });
  if (fraction === null || fraction === undefined) bar.classList.add("indeterminate");
  else bar.style.width = `${Math.max(0, Math.min(1, fraction)) * 100}%`;
  return h("div", { class: "progress-track", role: "progressbar",
    "aria-valuemin": "0", "aria-valuemax": "100",
    "aria-valuenow": fraction === null || fraction === undefined ? null : String(Math.round(fraction * 100)) }, bar);
}
