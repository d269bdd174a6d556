// The trace as a tree: Jaeger query JSON → nodes with parent/children, labels, severity and log info.

/** Log `event` values that name what the log's `message` is (tree and timeline modes). */
const LOG_KINDS = {
  diff: "diff",
  snapshot: "snapshot",
  message: "message",
  error: "error",
  verbose: "verbose diff",
  unattributed: "unattributed diff",
};

const SEVERITY = { none: 0, warning: 1, error: 2 };
const LABELS = new Intl.Collator("en", { numeric: true });

function truthy(value) {
  return value === true || value === "true" || value === 1 || value === "1";
}

function tagMap(tags) {
  const map = Object.create(null);
  for (const tag of tags || []) map[tag.key] = tag.value;
  return map;
}

/**
 * A log as an ordered list of [key, value] entries, with `event=<kind>, message=<text>` pairs turned
 * into `<kind>: <text>` so every mode displays the same way; plus flags and a one-line summary.
 */
export function normalizeLog(log) {
  const raw = (log.fields || []).map((f) => [f.key, f.value]);
  const map = Object.create(null);
  for (const [k, v] of raw) map[k] = v;
  let entries = raw;
  const kind = typeof map.event === "string" ? LOG_KINDS[map.event] : undefined;
  if (kind && "message" in map && map["kelemetry.trace_source"] !== "event") {
    entries = [[kind, map.message], ...raw.filter(([k]) => k !== "event" && k !== "message")];
  }
  const values = Object.create(null);
  for (const [k, v] of entries) values[k] = v;
  const error = "error" in values;
  const warning = !error && typeof values.type === "string" && values.type.toLowerCase() === "warning";
  return {
    timestamp: log.timestamp,
    entries,
    values,
    // what the marker of the log looks like: its source, and a failure that is routine (benign)
    source: typeof values["kelemetry.trace_source"] === "string" ? values["kelemetry.trace_source"] : "",
    benign: "benign" in values,
    unattributed: "unattributed diff" in values,
    hasDiff: "diff" in values || "verbose diff" in values,
    hasSnapshot: "snapshot" in values,
    severity: error ? SEVERITY.error : warning ? SEVERITY.warning : SEVERITY.none,
    summary: summarizeLog(values),
  };
}

function firstLine(value) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  const line = text.split("\n", 1)[0];
  return line.length > 160 ? line.slice(0, 157) + "…" : line;
}

function summarizeLog(v) {
  if (v.audit !== undefined) {
    let text = String(v.audit);
    if (v.code !== undefined && v.code !== null) text += ` → ${v.code}`;
    if (v.error !== undefined) text += ` · ${firstLine(v.error)}`;
    if (v.benign !== undefined) text += ` · benign: ${firstLine(v.benign)}`;
    return text;
  }
  if (v.event !== undefined) {
    const type = v.type && v.type !== "Normal" ? `${v.type} ` : "";
    const count = v.count && Number(v.count) > 1 ? ` (×${v.count})` : "";
    return `${type}${firstLine(v.event)}${count}`;
  }
  for (const key of ["error", "message", "diff", "verbose diff", "snapshot"]) {
    if (v[key] !== undefined) return key === "message" ? firstLine(v[key]) : `${key}: ${firstLine(v[key])}`;
  }
  const keys = Object.keys(v).filter((k) => k !== "kelemetry.trace_source");
  return keys.length ? keys.map((k) => `${k}=${firstLine(v[k])}`).join(" ") : "(empty log)";
}

/** Service account users are long; "system:serviceaccount:ns:name" reads as "sa:ns:name" in labels. */
function shortenUsers(text) {
  return text.replace(/\bsystem:serviceaccount:/g, "sa:");
}

export function objectLabel(tags) {
  const where = tags.namespace ? `${tags.namespace}/` : "";
  const kind = tags.kind || tags.resource || "object";
  return `${kind} ${where}${tags.name ?? ""}`;
}

/**
 * Build the tree. `target` ({cluster, group, resource, namespace, name}) marks the looked-up object.
 * Returns {roots, nodes (Map spanID → node), target (node|null), range {start, end}, activity
 * {start, end}|null, spanCount, logCount}.
 */
export function buildModel(trace, target) {
  const processes = trace.processes || {};
  const nodes = new Map();
  let logCount = 0;
  let start = Infinity;
  let end = -Infinity;
  let actStart = Infinity;
  let actEnd = -Infinity;
  for (const span of trace.spans || []) {
    const tags = tagMap(span.tags);
    const process = processes[span.processID];
    const source = tags["kelemetry.trace_source"] || (process && process.serviceName) || "";
    const isObject = source === "object";
    const pseudo = isObject || truthy(tags["kelemetry.pseudo"]);
    const logs = span.logs || [];
    logCount += logs.length;
    let severity = SEVERITY.none;
    if (truthy(tags.error)) severity = SEVERITY.error;
    else if (tags["event.type"] === "Warning") severity = SEVERITY.warning;
    const node = {
      id: span.spanID,
      span,
      tags,
      source,
      isObject,
      label: isObject ? objectLabel(tags) : spanLabel(span, tags, source),
      // the object a request, Event or change is about (rows name it where their parent is another)
      objectLabel: isObject || tags.name === undefined ? null : objectLabel(tags),
      benign: tags["kelemetry.outcome"] === "benign",
      severity,
      parent: null,
      children: [],
      depth: 0,
      // worst severity of the node's own logs; error/warning spans and logs here and below
      logSeverity: SEVERITY.none,
      subtreeErrors: 0,
      subtreeWarnings: 0,
      infoCache: null,
    };
    nodes.set(span.spanID, node);
    const s = span.startTime;
    const e = span.startTime + (span.duration || 0);
    if (s < start) start = s;
    if (e > end) end = e;
    if (!pseudo) {
      if (s < actStart) actStart = s;
      if (e > actEnd) actEnd = e;
    }
    for (const log of logs) {
      if (log.timestamp < actStart) actStart = log.timestamp;
      if (log.timestamp > actEnd) actEnd = log.timestamp;
      if (log.timestamp < start) start = log.timestamp;
      if (log.timestamp > end) end = log.timestamp;
    }
  }
  // A fleet's tree crosses clusters: then every object row names its cluster.
  const clusters = new Set([...nodes.values()].filter((n) => n.isObject).map((n) => n.tags.cluster || ""));
  if (clusters.size > 1) {
    for (const node of nodes.values()) if (node.isObject) node.label += ` @${node.tags.cluster || "?"}`;
  }
  const roots = [];
  for (const node of nodes.values()) {
    const refs = node.span.references || [];
    const ref = refs.find((r) => r.refType === "CHILD_OF") || refs[0];
    const parent = ref ? nodes.get(ref.spanID) : undefined;
    if (parent && parent !== node) {
      node.parent = parent;
      parent.children.push(node);
    } else {
      roots.push(node);
    }
  }
  const byStart = (a, b) =>
    a.span.startTime - b.span.startTime || (b.isObject ? 1 : 0) - (a.isObject ? 1 : 0) || LABELS.compare(a.label, b.label);
  roots.sort(byStart);
  // depth-first order without recursion (deep hierarchies must not overflow the stack)
  const order = [];
  const stack = roots.slice().reverse();
  const seen = new Set();
  while (stack.length) {
    const node = stack.pop();
    if (seen.has(node.id)) continue;
    seen.add(node.id);
    order.push(node);
    node.depth = node.parent ? node.parent.depth + 1 : 0;
    node.children.sort(byStart);
    for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]);
  }
  // severity of logs, then subtree counts bottom-up
  for (const node of order) {
    let errorLogs = 0;
    let warningLogs = 0;
    for (const log of node.span.logs || []) {
      const sev = quickLogSeverity(log);
      if (sev > node.logSeverity) node.logSeverity = sev;
      if (sev === SEVERITY.error) errorLogs += 1;
      else if (sev === SEVERITY.warning) warningLogs += 1;
    }
    // a failed request is one problem whether it shows as an error span, an error log, or both
    node.subtreeErrors = Math.max(node.severity === SEVERITY.error ? 1 : 0, errorLogs);
    node.subtreeWarnings = Math.max(node.severity === SEVERITY.warning ? 1 : 0, warningLogs);
  }
  for (let i = order.length - 1; i >= 0; i--) {
    const node = order[i];
    if (node.parent) {
      node.parent.subtreeErrors += node.subtreeErrors;
      node.parent.subtreeWarnings += node.subtreeWarnings;
    }
  }
  const targetNode = target ? findTarget(nodes, target) : null;
  if (!Number.isFinite(start)) {
    start = 0;
    end = 1;
  }
  const activity = Number.isFinite(actStart) ? { start: actStart, end: actEnd } : null;
  return { roots, nodes, order, target: targetNode, range: { start, end }, activity, spanCount: nodes.size, logCount };
}

/** A request's or change's name; an Event's reason with its message, as `kubectl describe` shows it. */
function spanLabel(span, tags, source) {
  if (source === "event") {
    const reason = tags["event.reason"] || span.operationName || "Event";
    const logs = span.logs || [];
    for (const log of logs) {
      const fields = log.fields || [];
      const kind = fields.find((f) => f.key === "event");
      const message = fields.find((f) => f.key === "message");
      if (message && (!kind || kind.value === "message")) return `${reason}: ${firstLine(message.value)}`;
    }
    return reason;
  }
  return shortenUsers(span.operationName || "(unnamed span)");
}

function quickLogSeverity(log) {
  let sev = SEVERITY.none;
  let kindEvent = null;
  for (const f of log.fields || []) {
    if (f.key === "error") return SEVERITY.error;
    if (f.key === "type" && typeof f.value === "string" && f.value.toLowerCase() === "warning") sev = SEVERITY.warning;
    if (f.key === "event") kindEvent = f.value;
  }
  if (kindEvent === "error") return SEVERITY.error;
  return sev;
}

function findTarget(nodes, t) {
  let loose = null;
  for (const node of nodes.values()) {
    if (!node.isObject) continue;
    const tags = node.tags;
    if (tags.name !== t.name || tags.resource !== t.resource) continue;
    if ((t.namespace ?? "") !== (tags.namespace ?? "")) continue;
    if (t.group !== undefined && t.group !== null && (tags.group ?? "") !== t.group) continue;
    if (!t.cluster || tags.cluster === t.cluster) return node;
    loose = loose || node;
  }
  return loose;
}

/** Normalized logs of a node (cached). */
export function nodeLogs(node) {
  if (!node.infoCache) node.infoCache = (node.span.logs || []).map(normalizeLog);
  return node.infoCache;
}

export { SEVERITY };
