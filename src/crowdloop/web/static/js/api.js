// The JSON API under /api/v1, with the bearer token the user signed in with.
const KEY = "crowdloop.token";
const BASE = "/api/v1";

export class ApiError extends Error {
  constructor(status, kind, detail) {
    super(detail || kind || `HTTP ${status}`);
    this.status = status;
    this.kind = kind;
  }
  // Worth retrying: the network failed (status 0), the server is busy or restarting.
  get transient() {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

export function token() {
  return sessionStorage.getItem(KEY) || localStorage.getItem(KEY);
}

export function saveToken(value, remember) {
  sessionStorage.setItem(KEY, value);
  if (remember) localStorage.setItem(KEY, value);
  else localStorage.removeItem(KEY);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
  location.href = "/ui/";
}

// Send the user to the sign-in page when they have no token; back here afterwards.
export function requireToken() {
  if (token()) return true;
  location.replace(`/ui/?next=${encodeURIComponent(location.pathname + location.search)}`);
  return false;
}

export async function api(method, path, body, options = {}) {
  const headers = { Authorization: `Bearer ${options.token || token()}` };
  let payload;
  if (body instanceof FormData) payload = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(BASE + path, { method, headers, body: payload, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, "NetworkError", "the server cannot be reached");
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    if (response.status === 401 && !options.token) signOut();
    throw new ApiError(response.status, data && data.error, data && data.detail);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

// Save what ``path`` answers as ``filename``: a plain link cannot carry the bearer token.
export async function download(path, filename) {
  let response;
  try {
    response = await fetch(BASE + path, { headers: { Authorization: `Bearer ${token()}` }, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, "NetworkError", "the server cannot be reached");
  }
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    throw new ApiError(response.status, data && data.error, data && data.detail);
  }
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
}

// The ?project= of the page's URL, as a positive integer (or null).
export function projectParam() {
  const value = Number(new URLSearchParams(location.search).get("project"));
  return Number.isInteger(value) && value > 0 ? value : null;
}
