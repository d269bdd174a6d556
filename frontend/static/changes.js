// The changes page: /changes?cluster=&namespace=&resource=&user=&verb=&errors=1&range=&start=&end=
// What changed, newest first: requests, Events and watched changes with their object, user, verb,
// result and first diff line; a per-minute activity histogram above them (a bar's click narrows the
// range to it); a row's click opens the object's trace at that moment.

import { apiUrl, describeError, getJSON } from "./api.js";
import { blameButton, diffPath } from "./explain.js";
import { formatClock, formatDuration, formatTime, h, parseLocalUtc, setTitle, toLocalUtc } from "./util.js";

const PRESETS = [
  ["15m", "last 15 minutes", 15 * 60],
  ["1h", "last hour", 3600],
  ["6h", "last 6 hours", 6 * 3600],
  ["24h", "last 24 hours", 24 * 3600],
  ["7d", "last 7 days", 7 * 86400],
  ["all", "all history", null],
  ["custom", "custom range (UTC)", null],
];
const VERBS = ["create", "update", "patch", "delete", "deletecollection"];
const PAGE = 100;
const SVG = "http://www.w3.org/2000/svg";
const CHART = { width: 1000, height: 120, top: 8, bottom: 22 };

/** An SVG element (h() makes HTML elements). */
function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "dataset") for (const [name, v] of Object.entries(value)) el.dataset[name] = v;
    else el.setAttribute(key, String(value));
  }
  for (const child of children) if (child !== null && child !== undefined) el.append(child);
  return el;
}

function joinResource(resource, group) {
  return group ? `${resource}.${group}` : resource;
}

export async function showChangesPage(root, params) {
  setTitle("What changed");
  const page = new ChangesPage(root, params);
  await page.mount();
}

class ChangesPage {
  constructor(root, params) {
    this.root = root;
    this.params = params;
    this.next = null;
    this.shown = 0;
  }

  async mount() {
    const f = (this.form = h("form", { id: "changes-form", class: "changes-form", autocomplete: "off", novalidate: true }));
    this.cluster = h("select", { id: "cluster", name: "cluster" });
    this.namespace = h("input", { id: "namespace", name: "namespace", type: "text", placeholder: "any namespace", spellcheck: "false" });
    this.resource = h("select", { id: "resource", name: "resource" });
    this.user = h("input", { id: "user", name: "user", type: "text", placeholder: "anyone", spellcheck: "false" });
    this.verb = h("select", { id: "verb", name: "verb" }, h("option", { value: "" }, "any verb"), VERBS.map((v) => h("option", { value: v }, v)));
    this.errorsOnly = h("input", { id: "errors", name: "errors", type: "checkbox" });
    this.range = h("select", { id: "range", name: "range" }, PRESETS.map(([v, label]) => h("option", { value: v }, label)));
    this.start = h("input", { id: "start", name: "start", type: "datetime-local", step: "1" });
    this.end = h("input", { id: "end", name: "end", type: "datetime-local", step: "1" });
    this.customBox = h("div", { class: "custom-range", hidden: true }, h("label", {}, "from ", this.start), h("label", {}, "to ", this.end), h("span", { class: "muted" }, "UTC"));
    this.submit = h("button", { type: "submit", id: "apply", class: "primary" }, "Show changes");
    this.message = h("div", { id: "changes-message", class: "message", role: "alert", "aria-live": "polite" });
    this.chart = h("div", { id: "histogram", class: "histogram" });
    this.summary = h("p", { id: "changes-summary", class: "muted" });
    this.body = h("tbody", { id: "changes-rows" });
    this.more = h("button", { type: "button", id: "more", hidden: true }, "Older changes");
    const field = (label, input) => h("div", { class: "field" }, h("label", { for: input.id }, label), input);
    f.append(
      h("h1", {}, "What changed?"),
      h(
        "div",
        { class: "fields changes-fields" },
        field("Cluster", this.cluster),
        field("Namespace", this.namespace),
        field("Resource", this.resource),
        field("User", this.user),
        field("Verb", this.verb),
        h("div", { class: "field" }, h("label", { for: "range" }, "Time range"), this.range, this.customBox),
      ),
      h(
        "div",
        { class: "actions" },
        this.submit,
        h("label", { class: "check" }, this.errorsOnly, " errors and Warnings only"),
        this.message,
      ),
    );
    const table = h(
      "table",
      { class: "changes-table" },
      h("thead", {}, h("tr", {}, ["Time (UTC)", "Cluster", "Object", "User", "Verb", "Result", "What"].map((t) => h("th", {}, t)))),
      this.body,
    );
    this.root.replaceChildren(h("div", { class: "changes-page" }, f, this.chart, this.summary, table, this.more));
    this.wire();
    this.fromParams();
    try {
      await this.loadChoices();
    } catch (err) {
      this.showError(describeError(err));
      document.body.dataset.state = "error";
      return;
    }
    await this.load();
  }

  fromParams() {
    const p = this.params;
    this.namespace.value = p.get("namespace") || "";
    this.user.value = p.get("user") || "";
    if (VERBS.includes(p.get("verb"))) this.verb.value = p.get("verb");
    this.errorsOnly.checked = ["1", "true"].includes(p.get("errors") || "");
    this.range.value = p.get("range") || (p.get("start") || p.get("end") ? "custom" : "all");
    if (!this.range.value) this.range.value = "all";
    this.start.value = p.get("start") || "";
    this.end.value = p.get("end") || "";
    this.customBox.hidden = this.range.value !== "custom";
  }

  async loadChoices() {
    const [clusters, resources] = await Promise.all([getJSON("/api/kelemetry/clusters"), getJSON("/api/kelemetry/resources")]);
    const names = clusters.data || [];
    this.cluster.replaceChildren(h("option", { value: "" }, "any cluster"), ...names.map((n) => h("option", { value: n }, n)));
    const wantedCluster = this.params.get("cluster") || "";
    if (wantedCluster && !names.includes(wantedCluster)) this.cluster.append(h("option", { value: wantedCluster }, wantedCluster));
    this.cluster.value = wantedCluster;
    const seen = new Set();
    const options = [];
    for (const r of (resources.data || []).slice().sort((a, b) => (a.kind || a.resource).localeCompare(b.kind || b.resource))) {
      const value = joinResource(r.resource, r.group);
      if (seen.has(value)) continue;
      seen.add(value);
      options.push(h("option", { value }, `${r.kind || r.resource} — ${value}`));
    }
    this.resource.replaceChildren(h("option", { value: "" }, "any resource"), ...options);
    const wanted = this.params.get("resource") || "";
    if (wanted && !seen.has(wanted)) this.resource.append(h("option", { value: wanted }, wanted));
    this.resource.value = wanted;
  }

  wire() {
    this.range.addEventListener("change", () => {
      this.customBox.hidden = this.range.value !== "custom";
      if (this.range.value === "custom" && !this.start.value) {
        const now = Date.now() * 1000;
        this.start.value = toLocalUtc(now - 3600 * 1e6);
        this.end.value = toLocalUtc(now);
      }
    });
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.apply();
    });
    this.more.addEventListener("click", () => this.loadMore());
    this.body.addEventListener("click", (ev) => {
      if (ev.target.closest("a")) return; // the link itself navigates
      const tr = ev.target.closest("tr[data-link]");
      if (tr) window.location.assign(tr.dataset.link);
    });
    this.body.addEventListener("keydown", (ev) => {
      const tr = ev.target.closest("tr[data-link]");
      if (tr && ev.key === "Enter") window.location.assign(tr.dataset.link);
    });
    window.addEventListener("popstate", () => {
      this.params = new URLSearchParams(window.location.search);
      this.fromParams();
      this.cluster.value = this.params.get("cluster") || "";
      this.resource.value = this.params.get("resource") || "";
      this.load();
    });
  }

  /** The filters as the page's own URL parameters. */
  pageParams() {
    const out = {};
    if (this.cluster.value) out.cluster = this.cluster.value;
    if (this.namespace.value.trim()) out.namespace = this.namespace.value.trim();
    if (this.resource.value) out.resource = this.resource.value;
    if (this.user.value.trim()) out.user = this.user.value.trim();
    if (this.verb.value) out.verb = this.verb.value;
    if (this.errorsOnly.checked) out.errors = "1";
    if (this.range.value !== "all") out.range = this.range.value;
    if (this.range.value === "custom") {
      if (this.start.value) out.start = this.start.value;
      if (this.end.value) out.end = this.end.value;
    }
    return out;
  }

  /** The range in µs: a preset counts back from now; a custom range is read as UTC. */
  rangeUs() {
    const preset = PRESETS.find(([v]) => v === this.range.value);
    if (preset && preset[2]) {
      const end = Date.now() * 1000;
      return { start: end - preset[2] * 1e6, end };
    }
    if (this.range.value === "custom") {
      // The inputs stop at whole seconds: "to 10:03:59" takes in that whole second.
      const end = parseLocalUtc(this.end.value);
      return { start: parseLocalUtc(this.start.value), end: end === null ? null : end + 999_999 };
    }
    return { start: null, end: null };
  }

  apiParams(extra = {}) {
    const page = this.pageParams();
    const { start, end } = this.rangeUs();
    return {
      cluster: page.cluster,
      namespace: page.namespace,
      resource: page.resource,
      user: page.user,
      verb: page.verb,
      errors: page.errors ? "true" : undefined,
      start: start === null ? undefined : Math.floor(start),
      end: end === null ? undefined : Math.floor(end),
      limit: PAGE,
      ...extra,
    };
  }

  apply() {
    const url = apiUrl("/changes", this.pageParams());
    window.history.pushState(null, "", url);
    this.params = new URLSearchParams(window.location.search);
    this.load();
  }

  async load() {
    document.body.dataset.state = "loading";
    this.showError("");
    this.submit.disabled = true;
    let body;
    try {
      body = await getJSON(apiUrl("/api/kelemetry/changes", this.apiParams()));
    } catch (err) {
      this.showError(describeError(err));
      this.body.replaceChildren();
      this.chart.replaceChildren();
      this.summary.textContent = "";
      this.more.hidden = true;
      this.submit.disabled = false;
      document.body.dataset.state = "error";
      return;
    }
    this.submit.disabled = false;
    this.shown = 0;
    this.body.replaceChildren();
    this.drawHistogram(body.histogram || [], body.bucket || 60e6);
    this.addRows(body.data || [], body.next);
    document.body.dataset.state = "ready";
  }

  async loadMore() {
    if (!this.next) return;
    this.more.disabled = true;
    try {
      const body = await getJSON(apiUrl("/api/kelemetry/changes", this.apiParams({ cursor: this.next, histogram: "false" })));
      this.addRows(body.data || [], body.next);
    } catch (err) {
      this.showError(describeError(err));
    } finally {
      this.more.disabled = false;
    }
  }

  addRows(rows, next) {
    this.next = next || null;
    this.shown += rows.length;
    this.body.append(...rows.map((row) => this.rowOf(row)));
    this.more.hidden = !this.next;
    this.summary.textContent = this.shown
      ? `${this.shown} change${this.shown === 1 ? "" : "s"}${this.next ? " so far" : ""}, newest first — click one to open its object's trace at that moment.`
      : "Nothing matched: widen the time range or remove a filter.";
  }

  rowOf(row) {
    const o = row.object;
    const where = o.namespace ? `${o.namespace}/` : "";
    const verb = row.verb ? row.verb + (row.subresource ? `/${row.subresource}` : "") : row.source === "event" ? "Event" : row.source;
    const user = row.user || (row.source === "change" ? "(watched)" : "—");
    let what;
    if (row.diff) {
      const more = row.diff.count - row.diff.lines.length;
      what = h(
        "div",
        { class: "diff-summary" },
        row.diff.lines.map((line) => {
          const path = diffPath(line);
          return h("div", { class: "mono" }, line, path ? blameButton(o, path, (box) => what.append(box)) : null);
        }),
        more > 0 ? h("div", { class: "muted" }, `+${more} more line${more === 1 ? "" : "s"}`) : null,
      );
    } else {
      what = h("span", { class: row.source === "event" ? "event-message" : "muted" }, row.message || "");
    }
    const cls = ["change-row", `source-${row.source}`];
    if (row.eventType === "Warning") cls.push("warning-row");
    else if (row.error) cls.push("error-row");
    else if (row.outcome === "benign") cls.push("benign-row");
    return h(
      "tr",
      { class: cls.join(" "), tabindex: "0", dataset: { link: row.link, span: row.spanId, source: row.source }, title: formatTime(row.time, 6) },
      h("td", { class: "mono nowrap" }, formatTime(row.time, 3).slice(0, 23)),
      h("td", {}, row.cluster),
      h("td", { class: "object" }, h("a", { href: row.link }, h("span", { class: "kind" }, o.kind || joinResource(o.resource, o.group)), " ", `${where}${o.name}`)),
      h("td", { class: "user" }, user),
      h("td", { class: "mono" }, verb),
      h("td", { class: "result" }, row.result || "—"),
      h("td", { class: "what" }, what),
    );
  }

  drawHistogram(buckets, bucketUs) {
    if (!buckets.length) {
      this.chart.replaceChildren();
      return;
    }
    const { start: wantStart, end: wantEnd } = this.rangeUs();
    const first = wantStart !== null ? Math.floor(wantStart / bucketUs) * bucketUs : buckets[0].start;
    const last = wantEnd !== null ? Math.floor(wantEnd / bucketUs) * bucketUs : buckets[buckets.length - 1].start;
    const slots = Math.max(1, Math.round((last - first) / bucketUs) + 1);
    const inner = CHART.height - CHART.top - CHART.bottom;
    const slotW = CHART.width / slots;
    const barW = Math.max(1, slotW * 0.8);
    const max = Math.max(1, ...buckets.map((b) => b.requests + b.events + b.changes));
    const y = (n) => (n / max) * inner;
    const bars = [];
    for (const b of buckets) {
      const i = Math.round((b.start - first) / bucketUs);
      if (i < 0 || i >= slots) continue;
      const x = i * slotW + (slotW - barW) / 2;
      const failed = Math.max(0, b.errors - b.warnings);
      const total = b.requests + b.events + b.changes;
      const rest = Math.max(0, total - failed - b.warnings);
      let base = CHART.height - CHART.bottom;
      const parts = [];
      for (const [count, cls] of [[rest, "bar-ok"], [b.warnings, "bar-warning"], [failed, "bar-error"]]) {
        if (!count) continue;
        const height = Math.max(1, y(count));
        base -= height;
        parts.push(s("rect", { class: cls, x: x.toFixed(2), y: base.toFixed(2), width: barW.toFixed(2), height: height.toFixed(2) }));
      }
      const label =
        `${formatTime(b.start, 0)}: ${b.requests} request${b.requests === 1 ? "" : "s"}, ${b.events} Event${b.events === 1 ? "" : "s"}` +
        ` (${b.warnings} Warning${b.warnings === 1 ? "" : "s"}), ${b.changes} watched change${b.changes === 1 ? "" : "s"}, ${b.errors} error${b.errors === 1 ? "" : "s"}`;
      // A transparent slot over the whole height makes thin bars easy to hit.
      parts.push(s("rect", { class: "bar-hit", x: (i * slotW).toFixed(2), y: CHART.top, width: slotW.toFixed(2), height: inner }));
      bars.push(
        s(
          "g",
          { class: "bar", dataset: { start: String(b.start), requests: String(b.requests), warnings: String(b.warnings), errors: String(b.errors) }, tabindex: "0" },
          s("title", {}, label),
          ...parts,
        ),
      );
    }
    const axis = [first, first + Math.floor(slots / 2) * bucketUs, last].filter((v, i, all) => all.indexOf(v) === i);
    const ticks = axis.map((t) => {
      const x = ((t - first) / bucketUs) * slotW + slotW / 2;
      const anchor = t === first ? "start" : t === last ? "end" : "middle";
      const text = slots * bucketUs > 86400e6 ? formatTime(t, 0).slice(5, 16) : formatClock(t, 0).slice(0, 5);
      return s("text", { class: "tick", x: (t === first ? 0 : t === last ? CHART.width : x).toFixed(2), y: CHART.height - 6, "text-anchor": anchor }, text);
    });
    const svg = s(
      "svg",
      { class: "histogram-svg", viewBox: `0 0 ${CHART.width} ${CHART.height}`, preserveAspectRatio: "none", role: "img", "aria-label": "activity per minute" },
      s("line", { class: "baseline", x1: 0, x2: CHART.width, y1: CHART.height - CHART.bottom, y2: CHART.height - CHART.bottom }),
      ...bars,
      ...ticks,
    );
    svg.addEventListener("click", (ev) => {
      const bar = ev.target.closest("g.bar");
      if (bar) this.narrowTo(Number(bar.dataset.start), bucketUs);
    });
    svg.addEventListener("keydown", (ev) => {
      const bar = ev.target.closest("g.bar");
      if (bar && ev.key === "Enter") this.narrowTo(Number(bar.dataset.start), bucketUs);
    });
    const legend = h(
      "div",
      { class: "histogram-legend" },
      h("span", { id: "histogram-step" }, `Activity per ${bucketUs === 60e6 ? "minute" : formatDuration(bucketUs)} (click a bar to show only it):`),
      h("span", { class: "key key-ok" }, "requests, Events, changes"),
      h("span", { class: "key key-warning" }, "Warning Events"),
      h("span", { class: "key key-error" }, "failed requests"),
    );
    this.chart.replaceChildren(legend, svg);
  }

  /** Show only one bucket of the histogram: a custom range over it. */
  narrowTo(startUs, bucketUs) {
    this.range.value = "custom";
    this.customBox.hidden = false;
    this.start.value = toLocalUtc(startUs);
    this.end.value = toLocalUtc(startUs + bucketUs - 1e6);
    this.apply();
  }

  showError(text) {
    this.message.textContent = text;
    this.message.className = text ? "message error" : "message";
  }
}
