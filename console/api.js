// The admin API from the console (docs/api.md): JSON in and out, the session
// cookie sent by the browser, the CSRF token of the login answer kept in
// sessionStorage and sent on every request that is not a GET.

const CSRF_KEY = "hato.csrf";
const USER_KEY = "hato.user";
const ROLE_KEY = "hato.role";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export function session() {
  const csrf = sessionStorage.getItem(CSRF_KEY);
  return csrf
    ? { csrf, user: sessionStorage.getItem(USER_KEY) || "", role: sessionStorage.getItem(ROLE_KEY) || "full" }
    : null;
}

export function forget() {
  sessionStorage.removeItem(CSRF_KEY);
  sessionStorage.removeItem(USER_KEY);
  sessionStorage.removeItem(ROLE_KEY);
}

// Called with the ApiError of a 401 (session gone): the app shows the login.
let onUnauthorized = () => {};
export function setUnauthorized(fn) {
  onUnauthorized = fn;
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const s = session();
  if (method !== "GET" && s) headers["X-CSRF-Token"] = s.csrf;
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "the broker does not answer (" + e.message + ")");
  }
  let doc = null;
  const text = await r.text();
  if (text) {
    try {
      doc = JSON.parse(text);
    } catch (e) {
      doc = null;
    }
  }
  if (!r.ok) {
    const why = doc && typeof doc.error === "string" ? doc.error : r.statusText;
    const err = new ApiError(r.status, why);
    if (r.status === 401 && !path.endsWith("/login")) {
      forget();
      onUnauthorized(err);
    }
    throw err;
  }
  return doc;
}

export async function login(username, password) {
  const doc = await api("POST", "/api/v1/login", { username, password });
  sessionStorage.setItem(CSRF_KEY, doc.csrf);
  sessionStorage.setItem(USER_KEY, doc.user);
  // "read" admins may only look: the pages hide what would change something
  sessionStorage.setItem(ROLE_KEY, doc.role || "full");
  return doc;
}

export async function logout() {
  try {
    await api("POST", "/api/v1/logout");
  } finally {
    forget();
  }
}

// Path segment: '/' too is escaped (ids and topics may hold it).
export const seg = (s) => encodeURIComponent(s);
