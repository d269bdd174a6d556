// Small DOM and formatting helpers shared by the pages. Times are microseconds since the epoch (UTC).

/**
 * Create an element. attrs: plain attributes, plus `class`, `text`, `dataset` (object) and `on<event>`
 * handlers; null/undefined/false attributes and data values and children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") {
      for (const [name, v] of Object.entries(value)) if (v !== null && v !== undefined) el.dataset[name] = v;
    }
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    // Through the CSSOM: the Content-Security-Policy (style-src 'self') refuses style attributes.
    else if (key === "style") el.style.cssText = String(value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** "2026-11-23 07:23:30.571Z"; `digits` = fraction digits of the seconds (0, 3 or 6). */
export function formatTime(us, digits = 3) {
  if (us === null || us === undefined || !Number.isFinite(us)) return "—";
  const ms = Math.floor(us / 1000);
  const d = new Date(ms);
  const date = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
  let clock = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  if (digits > 0) {
    const micros = ((us % 1_000_000) + 1_000_000) % 1_000_000;
    clock += "." + pad(Math.floor(micros), 6).slice(0, digits);
  }
  return `${date} ${clock}Z`;
}

/** Only the clock part of formatTime. */
export function formatClock(us, digits = 3) {
  return formatTime(us, digits).slice(11);
}

/** A compact duration: 850µs, 12.3ms, 4.52s, 3m 20s, 2h 5m. */
export function formatDuration(us) {
  if (!Number.isFinite(us)) return "—";
  const abs = Math.abs(us);
  if (abs < 1000) return `${Math.round(us)}µs`;
  if (abs < 1_000_000) return `${trimFixed(us / 1000, abs < 10_000 ? 2 : 1)}ms`;
  if (abs < 60_000_000) return `${trimFixed(us / 1_000_000, abs < 10_000_000 ? 2 : 1)}s`;
  const totalSeconds = Math.round(abs / 1_000_000);
  const sign = us < 0 ? "-" : "";
  if (totalSeconds < 3600) return `${sign}${Math.floor(totalSeconds / 60)}m ${totalSeconds % 60}s`;
  const minutes = Math.floor(totalSeconds / 60);
  if (minutes < 48 * 60) return `${sign}${Math.floor(minutes / 60)}h ${minutes % 60}m`;
  return `${sign}${Math.floor(minutes / 1440)}d ${Math.floor((minutes % 1440) / 60)}h`;
}

function trimFixed(value, digits) {
  return value.toFixed(digits).replace(/\.?0+$/, "");
}

/** Value of an <input type="datetime-local"> read as UTC, in µs; null when empty or invalid. */
export function parseLocalUtc(value) {
  if (!value) return null;
  const ms = Date.parse(`${value.length === 16 ? value + ":00" : value}Z`);
  return Number.isFinite(ms) ? ms * 1000 : null;
}

/** µs → value for an <input type="datetime-local" step="1"> showing UTC. */
export function toLocalUtc(us) {
  if (us === null || us === undefined) return "";
  return formatTime(us, 0).slice(0, 19).replace(" ", "T");
}

/** Call fn at most once per `ms` of quiet. */
export function debounce(fn, ms) {
  let timer = 0;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}

/** Set the document title (with the product name). */
export function setTitle(text) {
  document.title = text ? `${text} · Kelemetry` : "Kelemetry";
}
