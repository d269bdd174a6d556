// Fetching JSON from the kelemetry API with readable errors.

export class ApiError extends Error {
  constructor(message, status, url) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.url = url;
  }
}

/** GET a JSON document; throws ApiError carrying the API's `{"error": ...}` text on failure. */
export async function getJSON(url, { signal } = {}) {
  let response;
  try {
    response = await fetch(url, { signal, headers: { Accept: "application/json" } });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(`Cannot reach the Kelemetry server (${err && err.message ? err.message : err}).`, 0, url);
  }
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    let message = body && typeof body.error === "string" ? body.error : "";
    if (!message && body && typeof body.detail === "string") message = body.detail;
    if (!message) message = text.trim().slice(0, 300) || response.statusText || "request failed";
    throw new ApiError(message, response.status, url);
  }
  if (body === null) throw new ApiError(`The server sent a response that is not JSON for ${url}.`, response.status, url);
  return body;
}

/** Build "/path?k=v&..." leaving out null/undefined values (empty strings are kept). */
export function apiUrl(path, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === null || value === undefined) continue;
    query.set(key, String(value));
  }
  const qs = query.toString();
  return qs ? `${path}?${qs}` : path;
}

/** "HTTP 404: message" style text for an error shown to the user. */
export function describeError(err) {
  if (err instanceof ApiError) {
    return err.status ? `${err.message} (HTTP ${err.status})` : err.message;
  }
  return err && err.message ? err.message : String(err);
}
