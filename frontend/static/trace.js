// The trace page: /trace/<viewId>[?span=<spanID>&log=<index>].

import { ApiError, apiUrl, describeError, getJSON } from "./api.js";
import { ownerObject, renderDetail } from "./detail.js";
import { explainPanel, objectKey } from "./explain.js";
import { buildModel, nodeLogs, SEVERITY } from "./model.js";
import { debounce, formatClock, formatDuration, formatTime, h, setTitle } from "./util.js";
import { MODES, SCOPES, isViewId, modeId, parseModeId, scopeLabel, withModeId } from "./viewid.js";

const CHILD_PAGE = 200;
// Opening a view also unfolds the looked-up object's direct children (a Deployment's ReplicaSets
// show their Pods) unless that would add more rows than this: big trees stay lazy.
const OPEN_CHILDREN_ROWS = 100;
// The end of a long name that is never cut: a Pod's `<replicaset hash>-<suffix>`.
const NAME_TAIL_MAX = 20;
const MARKER_BUCKET_PX = 4;
const TICK_STEPS_US = [
  1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 2e4, 5e4, 1e5, 2e5, 5e5, 1e6, 2e6, 5e6, 1e7, 15e6, 3e7, 6e7,
  12e7, 3e8, 6e8, 9e8, 18e8, 36e8, 72e8, 108e8, 216e8, 432e8, 864e8, 1728e8, 6048e8,
];

const FALLBACK_MODES = {
  default: "20000000",
  modes: MODES.flatMap((mode) => SCOPES.map((scope) => ({ id: modeId(mode, scope), mode, scope }))),
};

/** Render the trace page into `root`. */
export async function showTracePage(root, viewId, params) {
  const fetchStart = performance.now();
  const status = h("div", { class: "loading", role: "status" }, "Loading trace…");
  root.replaceChildren(status);
  setTitle("Loading trace");
  if (!isViewId(viewId)) {
    // still ask the server (it has the authoritative message), but never wait on a blank page
    status.textContent = `Checking view id ${viewId}…`;
  }
  const modesPromise = getJSON("/api/kelemetry/modes").catch(() => FALLBACK_MODES);
  let view;
  let traceDoc;
  try {
    [view, traceDoc] = await Promise.all([
      getJSON(`/api/kelemetry/views/${encodeURIComponent(viewId)}`),
      getJSON(`/api/traces/${encodeURIComponent(viewId)}`),
    ]);
  } catch (err) {
    showError(root, viewId, err);
    return;
  }
  const fetchMs = performance.now() - fetchStart;
  const renderStart = performance.now();
  const traces = Array.isArray(traceDoc && traceDoc.data) ? traceDoc.data : [];
  if (!traces.length || !traces.some((t) => t.spans && t.spans.length)) {
    showError(root, viewId, new ApiError("The view exists but its trace has no spans (nothing recorded in its time range).", 404));
    return;
  }
  const trace = traces.length === 1 ? traces[0] : mergeTraces(traces);
  const modes = await Promise.race([modesPromise, Promise.resolve(null)]);
  const page = new TracePage(root, viewId, view, trace, params, modes || FALLBACK_MODES);
  if (!modes) modesPromise.then((m) => page.setModes(m));
  page.mount();
  // measure up to the first paint of the tree
  requestAnimationFrame(() =>
    setTimeout(() => {
      const end = performance.now();
      window.kelemetryTiming = {
        fetchMs: round(fetchMs),
        renderMs: round(end - renderStart),
        totalMs: round(end),
        spans: page.model.spanCount,
        logs: page.model.logCount,
        rows: page.rowsEl.childElementCount,
      };
      document.body.dataset.state = "rendered";
    }, 0),
  );
}

function describeRange(start, end) {
  const has = (t) => t !== null && t !== undefined;
  if (!has(start) && !has(end)) return "all history";
  if (!has(end)) return `since ${formatTime(start, 0)}`;
  if (!has(start)) return `until ${formatTime(end, 0)}`;
  const a = formatTime(start, 0);
  const b = formatTime(end, 0);
  return `${a} – ${a.slice(0, 10) === b.slice(0, 10) ? b.slice(11) : b}`;
}

function round(ms) {
  return Math.round(ms * 10) / 10;
}

/** The sentences of the view's gap spans (source `gap`), each once. */
function gapNotices(trace) {
  const found = [];
  for (const s of trace.spans || []) {
    if (!(s.tags || []).some((t) => t.key === "kelemetry.trace_source" && t.value === "gap")) continue;
    for (const log of s.logs || []) {
      for (const f of log.fields || []) {
        if (f.key === "message" && !found.includes(String(f.value))) found.push(String(f.value));
      }
    }
  }
  return found;
}

function mergeTraces(traces) {
  const spans = [];
  const processes = {};
  traces.forEach((t, i) => {
    for (const [pid, p] of Object.entries(t.processes || {})) processes[`${i}:${pid}`] = p;
    for (const s of t.spans || []) spans.push({ ...s, processID: `${i}:${s.processID}` });
  });
  return { traceID: traces[0].traceID, spans, processes, warnings: traces.flatMap((t) => t.warnings || []) };
}

function showError(root, viewId, err) {
  const message = describeError(err);
  setTitle("Error");
  root.replaceChildren(
    h(
      "div",
      { class: "page-error" },
      h("h1", {}, "Cannot show this trace"),
      h("p", { class: "error", role: "alert", id: "error-message" }, message),
      h("p", { class: "muted" }, `View id: ${viewId || "(none)"}`),
      h("p", {}, h("a", { href: "/search" }, "← Search for an object")),
    ),
  );
  document.body.dataset.state = "error";
}

class TracePage {
  constructor(root, viewId, view, trace, params, modes) {
    this.root = root;
    this.viewId = viewId;
    this.view = view;
    this.trace = trace;
    this.modes = modes;
    this.model = buildModel(trace, view.object);
    this.expanded = new Set();
    this.shown = new Map(); // node id → number of children rendered (for > CHILD_PAGE children)
    this.rowCache = new Map();
    this.visible = [];
    this.selected = null; // {node, log}
    this.axis = this.defaultAxis(true);
    this.fitActivity = true;
    this.laneWidth = 800;
    const spanParam = params.get("span");
    const logParam = params.get("log");
    // the Explain panel is open (?explain=1): a pasted link reopens it
    this.explaining = params.get("explain") === "1";
    this.explainCache = null; // {id, el}: the panel stays while the same object and moment are shown
    for (const r of this.model.roots) this.expanded.add(r.id);
    const target = this.model.target;
    if (target) {
      this.expandPathTo(target);
      this.expanded.add(target.id);
      this.openChildren(target);
    }
    const sel = spanParam ? this.model.nodes.get(spanParam) : null;
    if (sel) {
      this.expandPathTo(sel);
      const log = logParam !== null && /^\d+$/.test(logParam) ? Number(logParam) : null;
      this.selected = { node: sel, log: log !== null && log < (sel.span.logs || []).length ? log : null };
    }
  }

  defaultAxis(fitActivity) {
    const m = this.model;
    let { start, end } = fitActivity && m.activity ? m.activity : m.range;
    if (end <= start) end = start + 1000;
    const padUs = (end - start) * 0.03;
    return { start: start - padUs, end: end + padUs };
  }

  /** Unfold the object's direct children while their children add at most OPEN_CHILDREN_ROWS rows. */
  openChildren(node) {
    let rows = 0;
    for (const child of node.children.slice(0, CHILD_PAGE)) {
      if (!child.isObject || !child.children.length) continue;
      rows += Math.min(child.children.length, CHILD_PAGE);
      if (rows > OPEN_CHILDREN_ROWS) break;
      this.expanded.add(child.id);
    }
  }

  expandPathTo(node) {
    for (let p = node.parent; p; p = p.parent) {
      this.expanded.add(p.id);
      // make sure the node is within the rendered page of its parent
      const idx = p.children.indexOf(node);
      if (idx >= CHILD_PAGE) this.shown.set(p.id, Math.max(this.shown.get(p.id) || CHILD_PAGE, idx + 1));
      node = p;
    }
  }

  // ---- layout -------------------------------------------------------------------------------------

  mount() {
    const v = this.view;
    const obj = v.object || {};
    const target = this.model.target;
    const title = target ? target.label : `${obj.resource || ""} ${obj.namespace ? obj.namespace + "/" : ""}${obj.name || ""}`;
    setTitle(title);
    const modeInfo = parseModeId(v.modeId || this.viewId.slice(2, 10)) || { mode: v.mode, scope: v.scope, depthHex: "00" };
    const mode = v.mode || modeInfo.mode;
    const scope = v.scope || modeInfo.scope;
    this.modeSelect = h("select", { id: "mode-select", name: "mode", "aria-label": "Mode", onchange: () => this.switchMode() });
    this.scopeSelect = h("select", { id: "scope-select", name: "scope", "aria-label": "Scope", onchange: () => this.switchMode() });
    this.depthHex = modeInfo.depthHex || "00";
    this.fillModeOptions(mode, scope);
    const search = apiUrl("/search", {
      cluster: obj.cluster,
      resource: obj.resource ? (obj.group ? `${obj.resource}.${obj.group}` : obj.resource) : undefined,
      namespace: obj.namespace || undefined,
      name: obj.name,
      mode: v.modeId,
    });
    this.fitButton = h("button", { type: "button", id: "fit-toggle", onclick: () => this.toggleFit() }, "");
    this.findInput = h("input", {
      type: "search",
      id: "find",
      placeholder: "find a span… (Enter: next)",
      "aria-label": "Find a span by name",
      spellcheck: "false",
      onkeydown: (ev) => {
        if (ev.key === "Enter") {
          ev.preventDefault();
          this.find(this.findInput.value, ev.shiftKey ? -1 : 1);
        }
      },
    });
    this.findLabel = h("span", { class: "muted find-label", "aria-live": "polite" });
    this.zoomLabel = h("span", { class: "zoom-label muted" });
    const toolbar = h(
      "div",
      { class: "toolbar" },
      h(
        "div",
        { class: "toolbar-title" },
        h("a", { href: search, class: "back", title: "Back to the search form" }, "‹ search"),
        h("h1", { id: "trace-title", title }, title),
        h(
          "span",
          { class: "muted" },
          `cluster ${obj.cluster || "?"} · ${describeRange(v.start, v.end)} · ` +
            `${this.model.spanCount} spans, ${this.model.logCount} logs`,
        ),
      ),
      h(
        "div",
        { class: "toolbar-controls" },
        h("label", {}, "mode ", this.modeSelect),
        h("label", {}, "scope ", this.scopeSelect),
        h("button", { type: "button", onclick: () => this.expandAll() }, "expand all"),
        h("button", { type: "button", onclick: () => this.collapseAll() }, "collapse"),
        target
          ? h(
              "button",
              {
                type: "button",
                id: "explain-toolbar",
                title: `Why is ${target.label} like this? (x on a selected row explains that object)`,
                onclick: () => this.explainNode(target),
              },
              "explain",
            )
          : null,
        this.fitButton,
        this.zoomLabel,
        h("span", { class: "find" }, this.findInput, this.findLabel),
      ),
    );
    toolbar.append(legend());
    if (!target) {
      toolbar.append(
        h("p", { class: "notice" }, `The looked-up object (${obj.resource}/${obj.name}) has no span of its own in this view.`),
      );
    }
    for (const w of this.trace.warnings || []) toolbar.append(h("p", { class: "notice" }, String(w)));
    // Where the collector could not see: a banner, so a quiet stretch is not read as "nothing happened".
    for (const w of gapNotices(this.trace)) toolbar.append(h("p", { class: "notice gap-banner", role: "status" }, w));
    const others = Array.isArray(v.incarnations) ? v.incarnations : [];
    if (others.length) {
      // The same name was used by other objects (deleted and created again): each has its own trace.
      toolbar.append(
        h(
          "p",
          { class: "notice incarnations" },
          `${obj.name} was also the name of ${others.length === 1 ? "another object" : `${others.length} other objects`}${obj.uid ? ` (this one is uid ${obj.uid})` : ""}: `,
          ...others.flatMap((o, i) => [
            i ? ", " : "",
            h(
              "a",
              { href: `/trace/${o.viewId}`, class: "incarnation", title: `open the trace of uid ${o.uid}` },
              `uid ${o.uid || "(unknown)"}`,
            ),
            h("span", { class: "muted" }, ` ${describeRange(o.firstSeen ?? null, o.lastSeen ?? null)}`),
          ]),
        ),
      );
    }

    this.axisLane = h("div", { class: "lane axis-lane", title: "Drag to zoom into a time range" });
    this.axisEl = h(
      "div",
      { class: "row axis" },
      h(
        "div",
        { class: "label axis-label" },
        "span",
        (this.axisDate = h("span", { class: "muted" })),
        (this.colHandle = h("span", { class: "col-resize", title: "Drag to resize the names column" })),
      ),
      this.axisLane,
    );
    this.gridEl = h("div", { class: "grid", "aria-hidden": "true" });
    this.rowsEl = h("div", { class: "rows", role: "tree", "aria-label": "Trace" });
    this.pane = h("div", { class: "tree-pane", tabindex: "0" }, this.axisEl, h("div", { class: "rows-wrap" }, this.gridEl, this.rowsEl));
    this.detail = h("aside", { class: "detail-pane", id: "detail", "aria-label": "Details", hidden: true });
    this.root.replaceChildren(h("div", { class: "trace-page" }, toolbar, h("div", { class: "trace-body" }, this.pane, this.detail)));

    this.rowsEl.addEventListener("click", (ev) => this.onClick(ev));
    this.rowsEl.addEventListener("dblclick", (ev) => {
      const row = ev.target.closest(".row[data-span-id]");
      if (row && !ev.target.closest(".tg, .mk")) this.toggle(this.model.nodes.get(row.dataset.spanId));
    });
    this.pane.addEventListener("keydown", (ev) => this.onKey(ev));
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape" && this.selected && !ev.target.closest("input, select, textarea")) this.select(null);
    });
    this.setupZoom();
    this.setupColumnResize();
    if (this.selected) this.showDetail();
    this.measure();
    this.render();
    const focus = this.selected ? this.selected.node : target;
    if (focus) this.rowCache.get(focus.id)?.scrollIntoView({ block: "center" });
    if (this.selected) this.markSelected();
    // the axis follows the width at once (cheap); marker buckets are rebuilt once resizing settles
    let bucketsBuiltFor = this.laneWidth;
    const rebucket = debounce(() => {
      if (Math.abs(this.laneWidth - bucketsBuiltFor) > bucketsBuiltFor * 0.15) {
        bucketsBuiltFor = this.laneWidth;
        this.invalidate();
      }
    }, 200);
    const observer = new ResizeObserver(() => {
      const before = this.laneWidth;
      this.measure();
      if (this.laneWidth !== before) {
        this.renderAxis();
        rebucket();
      }
    });
    observer.observe(this.axisLane);
  }

  setModes(modes) {
    this.modes = modes;
    this.fillModeOptions(this.modeSelect.value, this.scopeSelect.value);
  }

  fillModeOptions(mode, scope) {
    const list = (this.modes && this.modes.modes) || FALLBACK_MODES.modes;
    const modeNames = [...new Set([...list.map((m) => m.mode), mode].filter(Boolean))];
    const scopeNames = [...new Set([...list.map((m) => m.scope), scope].filter(Boolean))];
    this.modeSelect.replaceChildren(...modeNames.map((m) => h("option", { value: m, selected: m === mode }, m)));
    this.scopeSelect.replaceChildren(
      ...scopeNames.map((s) => h("option", { value: s, selected: s === scope }, scopeLabel(list, s))),
    );
  }

  switchMode() {
    const id = modeId(this.modeSelect.value, this.scopeSelect.value, this.depthHex);
    const next = withModeId(this.viewId, id);
    if (next === this.viewId) return;
    // keep the selected span if it exists in the other mode (object spans do); log indexes differ
    const query = this.selected ? `?${new URLSearchParams({ span: this.selected.node.id })}` : "";
    document.body.dataset.state = "loading";
    window.location.assign(`/trace/${next}${query}`);
  }

  measure() {
    const w = this.axisLane.clientWidth;
    if (w > 50) this.laneWidth = w;
  }

  // ---- rows ---------------------------------------------------------------------------------------

  computeVisible() {
    const out = [];
    const stack = [];
    for (let i = this.model.roots.length - 1; i >= 0; i--) stack.push(this.model.roots[i]);
    while (stack.length) {
      const item = stack.pop();
      out.push(item);
      if (item.more || !this.expanded.has(item.id) || !item.children.length) continue;
      const limit = this.shown.get(item.id) || CHILD_PAGE;
      if (item.children.length > limit) stack.push({ more: true, parent: item, hidden: item.children.length - limit, id: `more:${item.id}` });
      for (let i = Math.min(limit, item.children.length) - 1; i >= 0; i--) stack.push(item.children[i]);
    }
    return out;
  }

  render() {
    this.visible = this.computeVisible();
    const rows = new Array(this.visible.length);
    for (let i = 0; i < this.visible.length; i++) {
      const item = this.visible[i];
      rows[i] = item.more ? this.moreRow(item) : this.row(item);
    }
    this.rowsEl.replaceChildren(...rows);
    this.renderAxis();
  }

  /** The axis or the width changed: rebuild the lanes (bars, markers) and keep the row elements. */
  invalidate() {
    for (const [id, el] of this.rowCache) {
      if (!el.isConnected) {
        this.rowCache.delete(id);
        continue;
      }
      el.replaceChild(this.lane(this.model.nodes.get(id)), el.lastElementChild);
    }
    this.renderAxis();
    if (this.selected) this.markSelected();
  }

  moreRow(item) {
    return h(
      "div",
      { class: "row more", dataset: { moreParent: item.parent.id }, role: "treeitem" },
      h(
        "div",
        { class: "label", style: `padding-left:${(item.parent.depth + 1) * 16 + 22}px` },
        h("button", { type: "button", class: "more-btn" }, `show ${Math.min(item.hidden, CHILD_PAGE)} more`),
        item.hidden > CHILD_PAGE ? h("button", { type: "button", class: "more-all" }, `show all ${item.hidden}`) : null,
        h("span", { class: "muted" }, `${item.hidden} of ${item.parent.children.length} children not shown`),
      ),
      h("div", { class: "lane" }),
    );
  }

  row(node) {
    let el = this.rowCache.get(node.id);
    const expanded = this.expanded.has(node.id);
    if (el) {
      if (node.children.length) {
        el.classList.toggle("expanded", expanded);
        el.setAttribute("aria-expanded", String(expanded));
      }
      return el;
    }
    const cls = ["row"];
    if (node.severity === SEVERITY.error) cls.push("span-error");
    else if (node.severity === SEVERITY.warning) cls.push("span-warning");
    else if (node.benign) cls.push("span-benign");
    if (node.logSeverity === SEVERITY.error) cls.push("log-error");
    else if (node.logSeverity === SEVERITY.warning) cls.push("log-warning");
    if (node.isObject) cls.push("obj");
    if (node === this.model.target) cls.push("target");
    if (expanded && node.children.length) cls.push("expanded");
    const ownObject = node.parent && node.parent.isObject && sameObject(node.parent.tags, node.tags);
    const fullName = node.isObject || ownObject || !node.objectLabel ? node.label : `${node.objectLabel} · ${node.label}`;
    const label = h("div", { class: "label", style: `padding-left:${node.depth * 16 + 4}px`, title: fullName });
    if (node.children.length) {
      label.append(h("button", { type: "button", class: "tg", "aria-label": "expand or collapse", tabindex: "-1" }));
    } else {
      label.append(h("span", { class: "tg-empty" }));
    }
    if (!node.isObject) label.append(h("span", { class: `src src-${node.source || "other"}` }, node.source || "span"));
    // In the timeline a request sits under the root, not its object: the row names the object.
    if (!node.isObject && !ownObject && node.objectLabel) label.append(nameEl(node.objectLabel, "obj-ref"));
    label.append(node.isObject ? nameEl(node.label, "name") : h("span", { class: "name" }, node.label));
    if (node.children.length) label.append(h("span", { class: "count", title: `${node.children.length} children` }, String(node.children.length)));
    if (node.subtreeErrors) label.append(h("span", { class: "flag flag-error", title: `${node.subtreeErrors} errors here or below` }, `${node.subtreeErrors}`));
    if (node.subtreeWarnings) label.append(h("span", { class: "flag flag-warning", title: `${node.subtreeWarnings} warnings here or below` }, `${node.subtreeWarnings}`));
    el = h(
      "div",
      {
        class: cls.join(" "),
        role: "treeitem",
        "aria-level": String(node.depth + 1),
        "aria-expanded": node.children.length ? String(expanded) : null,
        dataset: { spanId: node.id, depth: String(node.depth), source: node.source, kind: node.isObject ? node.tags.kind || "" : null },
      },
      label,
      this.lane(node),
    );
    this.rowCache.set(node.id, el);
    return el;
  }

  lane(node) {
    const lane = document.createElement("div");
    lane.className = "lane";
    const { start: a0, end: a1 } = this.axis;
    const span = a1 - a0;
    const s = node.span.startTime;
    const e = s + (node.span.duration || 0);
    if (e >= a0 && s <= a1) {
      const left = Math.max(0, (s - a0) / span);
      const right = Math.min(1, (e - a0) / span);
      const bar = document.createElement("div");
      bar.className = `bar bar-${node.source || "other"}${s < a0 ? " clip-l" : ""}${e > a1 ? " clip-r" : ""}`;
      bar.style.left = `${(left * 100).toFixed(4)}%`;
      bar.style.width = `${((right - left) * 100).toFixed(4)}%`;
      lane.append(bar);
      if (!node.isObject && node.span.duration) {
        const dur = document.createElement("span");
        dur.className = "dur";
        dur.textContent = formatDuration(node.span.duration);
        if (right > 0.85) dur.style.right = `${((1 - left) * 100).toFixed(3)}%`;
        else dur.style.left = `${(right * 100).toFixed(3)}%`;
        lane.append(dur);
      }
    }
    const logs = node.span.logs;
    if (logs && logs.length) this.markers(node, lane, a0, span);
    return lane;
  }

  markers(node, lane, a0, span) {
    const infos = nodeLogs(node);
    const buckets = new Map();
    const scale = this.laneWidth / MARKER_BUCKET_PX;
    for (let i = 0; i < infos.length; i++) {
      const frac = (infos[i].timestamp - a0) / span;
      if (frac < 0 || frac > 1) continue;
      const key = Math.floor(frac * scale);
      const b = buckets.get(key);
      if (!b) buckets.set(key, { rep: i, count: 1, logs: [i] });
      else {
        b.count += 1;
        b.logs.push(i);
        const cur = infos[b.rep];
        const cand = infos[i];
        const rank = (x) => x.severity * 2 + (x.hasDiff || x.hasSnapshot ? 1 : 0);
        if (rank(cand) > rank(cur)) b.rep = i;
      }
    }
    const byLog = new Array(infos.length);
    for (const [key, b] of buckets) {
      const info = infos[b.rep];
      const mk = document.createElement("i");
      b.el = mk;
      let cls = "mk";
      if (info.severity === SEVERITY.error) cls += " sev-error";
      else if (info.severity === SEVERITY.warning) cls += " sev-warning";
      if (info.hasDiff) cls += " has-diff";
      if (info.benign) cls += " benign";
      if (info.unattributed) cls += " unattributed";
      if (info.source === "event" || info.source === "change") cls += ` mk-${info.source}`;
      if (b.count > 1) cls += " multi";
      mk.className = cls;
      // snapped to its bucket so markers never overlap (each stays clickable)
      mk.style.left = `${((key / scale) * 100).toFixed(4)}%`;
      mk.logs = b.logs;
      mk.dataset.log = String(b.rep);
      if (info.hasDiff) mk.dataset.diff = "1";
      if (info.hasSnapshot) mk.dataset.snapshot = "1";
      if (b.count > 1) mk.dataset.count = String(b.count);
      mk.title = `${formatClock(info.timestamp, 3)} ${info.summary}${b.count > 1 ? ` (+${b.count - 1} more here: click again for the next)` : ""}`;
      lane.append(mk);
    }
    // which marker stands for each log (to highlight the selected log's marker)
    for (let i = 0; i < infos.length; i++) {
      const frac = (infos[i].timestamp - a0) / span;
      if (frac >= 0 && frac <= 1) byLog[i] = buckets.get(Math.floor(frac * scale)).el;
    }
    lane.markerForLog = byLog;
  }

  renderAxis() {
    const { start, end } = this.axis;
    const span = end - start;
    const target = Math.max(2, Math.floor(this.laneWidth / 120));
    const step = TICK_STEPS_US.find((s) => span / s <= target) || TICK_STEPS_US[TICK_STEPS_US.length - 1];
    const digits = step < 1000 ? 6 : step < 1e6 ? 3 : 0;
    const first = Math.ceil(start / step) * step;
    const labels = [];
    const lines = [];
    let prevDate = formatTime(start, 0).slice(0, 10);
    this.axisDate.textContent = ` ${prevDate} UTC`;
    for (let t = first; t <= end; t += step) {
      const pct = `${(((t - start) / span) * 100).toFixed(4)}%`;
      const full = formatTime(t, digits);
      const date = full.slice(0, 10);
      const clock = full.slice(11, -1);
      const text = date !== prevDate ? `${date.slice(5)} ${clock}` : clock;
      prevDate = date;
      labels.push(h("span", { class: "tick", style: `left:${pct}` }, text));
      lines.push(h("span", { class: "gl", style: `left:${pct}` }));
    }
    this.axisLane.replaceChildren(...labels);
    this.gridEl.replaceChildren(...lines);
    const fit = this.fitActivity;
    this.fitButton.textContent = fit ? "show whole window" : "fit to activity";
    this.fitButton.title = fit
      ? "The axis covers the recorded activity; show the whole time window of the spans"
      : "Zoom the axis to the recorded activity";
    this.zoomLabel.textContent = `axis ${formatClock(start, digits)} – ${formatClock(end, digits)} (${formatDuration(span)})`;
  }

  // ---- interaction --------------------------------------------------------------------------------

  onClick(ev) {
    const more = ev.target.closest(".row.more");
    if (more) {
      const parent = this.model.nodes.get(more.dataset.moreParent);
      const cur = this.shown.get(parent.id) || CHILD_PAGE;
      this.shown.set(parent.id, ev.target.closest(".more-all") ? parent.children.length : cur + CHILD_PAGE);
      this.render();
      return;
    }
    const rowEl = ev.target.closest(".row[data-span-id]");
    if (!rowEl) return;
    const node = this.model.nodes.get(rowEl.dataset.spanId);
    if (ev.target.closest(".tg")) {
      this.toggle(node);
      return;
    }
    const mk = ev.target.closest(".mk");
    if (mk) {
      // a marker stands for the logs of a few pixels: clicking it again walks through them
      const logs = mk.logs || [Number(mk.dataset.log)];
      const cur = this.selected && this.selected.node === node ? logs.indexOf(this.selected.log) : -1;
      this.select(node, cur === -1 ? Number(mk.dataset.log) : logs[(cur + 1) % logs.length]);
      return;
    }
    this.select(node, null);
  }

  onKey(ev) {
    if (ev.target.closest("input, select, textarea, button.close")) return;
    const cur = this.selected ? this.selected.node : null;
    const nodesOnly = this.visible.filter((v) => !v.more);
    const idx = cur ? nodesOnly.indexOf(cur) : -1;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      const next = nodesOnly[Math.min(nodesOnly.length - 1, Math.max(0, idx + (ev.key === "ArrowDown" ? 1 : -1)))];
      if (next) this.select(next, null, true);
    } else if (ev.key === "ArrowRight" && cur) {
      if (cur.children.length && !this.expanded.has(cur.id)) this.toggle(cur);
      else if (cur.children.length) this.select(cur.children[0], null, true);
    } else if (ev.key === "ArrowLeft" && cur) {
      if (this.expanded.has(cur.id) && cur.children.length) this.toggle(cur);
      else if (cur.parent) this.select(cur.parent, null, true);
    } else if (ev.key === "Enter" && cur) {
      this.toggle(cur);
    } else if (ev.key === "x" && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
      if (this.explaining && cur) this.closeExplain();
      else this.explainNode(cur || this.model.target, false);
    } else {
      return;
    }
    ev.preventDefault();
  }

  toggle(node) {
    if (!node || !node.children.length) return;
    if (this.expanded.has(node.id)) this.expanded.delete(node.id);
    else this.expanded.add(node.id);
    this.render();
  }

  expandAll() {
    for (const node of this.model.nodes.values()) if (node.children.length) this.expanded.add(node.id);
    this.render();
  }

  collapseAll() {
    this.expanded.clear();
    for (const r of this.model.roots) this.expanded.add(r.id);
    if (this.selected) this.expandPathTo(this.selected.node);
    this.render();
  }

  /** Select the next (dir 1) or previous (-1) span whose label contains `text`, expanding its path. */
  find(text, dir) {
    const q = text.trim().toLowerCase();
    if (!q) {
      this.findLabel.textContent = "";
      return;
    }
    if (q !== this.findQuery) {
      this.findQuery = q;
      this.findHits = this.model.order.filter(
        (n) => n.label.toLowerCase().includes(q) || (n.span.operationName || "").toLowerCase().includes(q),
      );
      this.findPos = dir > 0 ? -1 : 0;
    }
    const hits = this.findHits;
    if (!hits.length) {
      this.findLabel.textContent = "no match";
      return;
    }
    this.findPos = (this.findPos + dir + hits.length) % hits.length;
    const node = hits[this.findPos];
    this.expandPathTo(node);
    this.render();
    this.select(node, null, true);
    this.findLabel.textContent = `${this.findPos + 1} of ${hits.length}`;
  }

  toggleFit() {
    this.fitActivity = !this.fitActivity;
    this.axis = this.defaultAxis(this.fitActivity);
    this.invalidate();
  }

  select(node, log = null, scroll = false) {
    this.selected = node ? { node, log } : null;
    const params = new URLSearchParams();
    if (node) {
      params.set("span", node.id);
      if (log !== null && log !== undefined) params.set("log", String(log));
      if (this.explaining) params.set("explain", "1");
    }
    const qs = params.toString();
    history.replaceState(null, "", `/trace/${this.viewId}${qs ? "?" + qs : ""}`);
    this.markSelected();
    if (node) {
      this.showDetail();
      if (scroll) this.rowCache.get(node.id)?.scrollIntoView({ block: "nearest" });
    } else {
      this.explaining = false;
      this.detail.hidden = true;
      this.detail.replaceChildren();
    }
  }

  /** Open the Explain panel for a node's object (a request or Event row: the object it is of). */
  explainNode(node, focusPanel = true) {
    if (!node) return;
    this.explaining = true;
    const keep = this.selected && this.selected.node === node ? this.selected.log : null;
    this.select(node, keep, true);
    // from the keyboard the tree keeps the focus, so the arrows go on walking the rows
    if (focusPanel) this.detail.querySelector("#explain-panel")?.focus();
  }

  closeExplain() {
    this.explaining = false;
    if (this.selected) this.select(this.selected.node, this.selected.log);
    this.pane.focus();
  }

  /** The panel for the selected row's object, at the selected log's moment (none: its last activity). */
  explainFor(node, log) {
    const owner = ownerObject(node);
    if (!owner) return null;
    const info = log !== null && log !== undefined ? nodeLogs(node)[log] : null;
    // a request or Event row asks about the moment it happened; an object row about its last activity
    const at = info ? info.timestamp : node.isObject ? null : node.span.startTime;
    const id = JSON.stringify([objectKey(owner.tags), at]);
    if (!this.explainCache || this.explainCache.id !== id) {
      this.explainCache = { id, el: explainPanel(owner.tags, at, { onClose: () => this.closeExplain() }) };
    }
    return this.explainCache.el;
  }

  markSelected() {
    for (const el of this.rowsEl.querySelectorAll(".row.selected, .mk.selected")) el.classList.remove("selected");
    if (!this.selected) return;
    const row = this.rowCache.get(this.selected.node.id);
    if (!row) return;
    row.classList.add("selected");
    if (this.selected.log !== null) this.markerFor(row, this.selected.log)?.classList.add("selected");
  }

  markerFor(row, log) {
    const lane = row.querySelector(".lane");
    return lane && lane.markerForLog ? lane.markerForLog[log] : null;
  }

  showDetail() {
    const { node, log } = this.selected;
    this.detail.hidden = false;
    renderDetail(this.detail, node, log, {
      onSelectLog: (i) => this.select(node, i),
      onClose: () => this.select(null),
      onSelectNode: (n) => {
        this.expandPathTo(n);
        this.render();
        this.select(n, null, true);
      },
      onExplain: () => this.explainNode(node),
    });
    const panel = this.explaining ? this.explainFor(node, log) : null;
    // right below the object's links, above the log and its tags: the answer is what was asked for
    if (panel) (this.detail.querySelector(".object-at") || this.detail.querySelector(".meta")).after(panel);
  }

  setupColumnResize() {
    let startX = null;
    let startW = 0;
    this.colHandle.addEventListener("mousedown", (ev) => {
      if (ev.button !== 0) return;
      startX = ev.clientX;
      startW = this.axisEl.firstElementChild.getBoundingClientRect().width;
      ev.preventDefault();
      ev.stopPropagation();
    });
    window.addEventListener("mousemove", (ev) => {
      if (startX === null) return;
      const max = this.pane.clientWidth - 200;
      const w = Math.max(160, Math.min(max, startW + ev.clientX - startX));
      this.pane.style.setProperty("--label-w", `${Math.round(w)}px`);
    });
    window.addEventListener("mouseup", () => {
      startX = null;
    });
  }

  setupZoom() {
    let startX = null;
    let band = null;
    const lane = this.axisLane;
    const frac = (x) => {
      const r = lane.getBoundingClientRect();
      return Math.min(1, Math.max(0, (x - r.left) / r.width));
    };
    lane.addEventListener("mousedown", (ev) => {
      if (ev.button !== 0) return;
      startX = frac(ev.clientX);
      band = h("div", { class: "zoom-band" });
      lane.append(band);
      ev.preventDefault();
    });
    window.addEventListener("mousemove", (ev) => {
      if (startX === null) return;
      const x = frac(ev.clientX);
      band.style.left = `${Math.min(startX, x) * 100}%`;
      band.style.width = `${Math.abs(x - startX) * 100}%`;
    });
    window.addEventListener("mouseup", (ev) => {
      if (startX === null) return;
      const x = frac(ev.clientX);
      const a = Math.min(startX, x);
      const b = Math.max(startX, x);
      startX = null;
      band.remove();
      if ((b - a) * this.laneWidth < 4) return;
      const { start, end } = this.axis;
      this.axis = { start: start + (end - start) * a, end: start + (end - start) * b };
      this.fitActivity = false;
      this.invalidate();
      this.fitButton.textContent = "reset zoom";
    });
  }
}

/**
 * A name that keeps its end: the head shrinks with an ellipsis, the tail (a Pod's
 * `<hash>-<suffix>`, the part that tells siblings apart) always shows; hover shows the whole name.
 */
function nameEl(text, cls) {
  const cut = tailStart(text);
  if (cut <= 0) return h("span", { class: cls, title: text }, text);
  return h(
    "span",
    { class: `${cls} split-name`, title: text },
    // the head's room is the name's less the tail's (names are monospace: `ch` is exact)
    h("span", { class: "name-head", style: `max-width:calc(100% - ${text.length - cut + 1}ch)` }, text.slice(0, cut)),
    h("span", { class: "name-tail" }, text.slice(cut)),
  );
}

function sameObject(a, b) {
  return a.uid === b.uid && a.name === b.name && a.resource === b.resource && a.cluster === b.cluster;
}

function tailStart(text) {
  if (text.length <= NAME_TAIL_MAX + 8) return 0;
  const name = text.slice(text.lastIndexOf("/") + 1);
  const parts = name.split("-");
  // the last two dash-separated parts of a generated name (`5d8f7c9b4-x7k2q`), else the last one
  for (const keep of [2, 1]) {
    if (parts.length > keep) {
      const tail = parts.slice(-keep).join("-");
      if (tail.length <= NAME_TAIL_MAX) return text.length - tail.length - 1; // with its dash
    }
  }
  return text.length - NAME_TAIL_MAX;
}

/** What the marks of the timeline mean. */
function legend() {
  const item = (cls, text, title) =>
    h("span", { class: "legend-item", title }, h("i", { class: `mk legend-mk ${cls}` }), text);
  return h(
    "div",
    { class: "legend", id: "legend", "aria-label": "Legend" },
    item("", "request", "a create, update, patch or delete"),
    item("has-diff", "request with a diff", "a request that changed fields (click for the diff)"),
    item("mk-event", "Event", "a Kubernetes Event"),
    item("sev-warning", "Warning", "a Warning Event"),
    item("sev-error", "error", "a failed request: 403, 422, 500, a person's conflict…"),
    item("benign", "benign", "a routine failure: a controller's 409 conflict (it retries), a 404 on a repeated delete"),
    item("mk-change", "change", "a change seen by the watch that no audit event claimed"),
    item("unattributed", "unattributed diff", "changes that showed up at a request but that it cannot have made"),
  );
}
