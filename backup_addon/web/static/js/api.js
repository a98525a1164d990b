// Talking to the add-on: relative URLs only (ingress serves the page under a path prefix).

// The server refuses state-changing requests without this header: other sites cannot send it.
const FORGERY_HEADERS = { "X-Requested-With": "backup_321" };

export class ApiError extends Error {
  constructor(message, status, problems = []) {
    super(message);
    this.status = status;
    this.problems = problems;
  }
}

async function parse(response) {
  const type = response.headers.get("Content-Type") ?? "";
  const body = type.includes("application/json") ? await response.json() : null;
  if (!response.ok) {
    const fallback = response.status === 403
      ? "The add-on refused the request. Open it from Home Assistant's sidebar."
      : `The add-on answered with an error (${response.status}).`;
    throw new ApiError(body?.error ?? fallback, response.status, body?.problems ?? []);
  }
  return body;
}

async function call(path, init) {
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError("The add-on cannot be reached. It may be restarting; try again in a moment.", 0);
  }
  return parse(response);
}

export function get(path) {
  return call(path, { headers: { Accept: "application/json" }, cache: "no-store" });
}

export function send(method, path, body = {}) {
  return call(path, {
    method,
    headers: { ...FORGERY_HEADERS, "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
}

export const post = (path, body) => send("POST", path, body);
export const del = (path) => send("DELETE", path);

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export const segment = encodeURIComponent;
