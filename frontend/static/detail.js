// The detail panel: a span's tags and logs, and the fields of the selected log.

import { h, formatTime, formatDuration } from "./util.js";
import { nodeLogs, SEVERITY } from "./model.js";
import { objectAtUrl } from "./objectat.js";
import { blameButton } from "./explain.js";
import { parseDiffLine } from "./diffline.js";

const LOG_LIST_PAGE = 300;

// Diff-shaped fields; "unattributed diff" holds changes that showed up at a request it cannot have made.
const DIFF_KEYS = new Set(["diff", "verbose diff", "unattributed diff"]);

/** Diff lines; with `obj` (the object the diff is of) each line gets a blame button for its path. */
function diffBlock(text, obj = null) {
  const lines = String(text).split("\n");
  const pre = h("pre", { class: "diff" });
  // the blame answer shows below the diff, never inside its <pre>
  const place = (box) => pre.after(box);
  for (const line of lines) {
    const parsed = parseDiffLine(line);
    if (!parsed) {
      pre.append(h("span", { class: "diff-line" }, line || "\u00a0"));
      continue;
    }
    const oldCls = parsed.old === "null" ? "diff-old diff-absent" : "diff-old";
    const newCls = parsed.new === "null" ? "diff-new diff-absent" : "diff-new";
    pre.append(
      h(
        "span",
        { class: "diff-line" },
        h("span", { class: "diff-path" }, parsed.path),
        " ",
        h("span", { class: oldCls }, parsed.old),
        h("span", { class: "diff-arrow" }, " -> "),
        h("span", { class: newCls }, parsed.new),
        obj ? blameButton(obj, parsed.path, place) : null,
      ),
    );
  }
  return pre;
}

function snapshotBlock(value) {
  let text = typeof value === "string" ? value : JSON.stringify(value);
  try {
    text = JSON.stringify(typeof value === "string" ? JSON.parse(value) : value, null, 2);
  } catch {
    // not JSON (abbreviated or plain text): show as is
  }
  return h("pre", { class: "snapshot" }, text);
}

function plainValue(value) {
  if (value === null || value === undefined) return h("span", { class: "muted" }, "null");
  if (value === "") return h("span", { class: "muted" }, "(empty)");
  if (typeof value === "object") return h("pre", { class: "json" }, JSON.stringify(value, null, 2));
  const text = String(value);
  return text.includes("\n") ? h("pre", { class: "text" }, text) : h("span", { class: "text" }, text);
}

/**
 * A field value rendered by its key: diffs, snapshots, messages and errors get their own look.
 * `obj`: the object a diff is of, for the blame action of its lines (none for a diff that made no
 * change of the object: the unattributed one).
 */
export function fieldValue(key, value, obj = null) {
  if (DIFF_KEYS.has(key)) return diffBlock(value, key === "unattributed diff" ? null : obj);
  if (key === "snapshot") return snapshotBlock(value);
  if (key === "error") return h("div", { class: "msg msg-error" }, String(value));
  if (key === "benign" || key === "kelemetry.outcome_reason") return h("div", { class: "msg msg-benign" }, String(value));
  if (key === "message") return h("div", { class: "msg" }, String(value));
  return plainValue(value);
}

function fieldsTable(entries, className, obj = null) {
  const list = h("dl", { class: `kv ${className}` });
  for (const [key, value] of entries) {
    const block = DIFF_KEYS.has(key) || key === "snapshot";
    const cls = block ? "kv-block" : null;
    list.append(h("dt", { class: cls, dataset: { key } }, key), h("dd", { class: cls, dataset: { key } }, fieldValue(key, value, obj)));
  }
  return list;
}

function sevClass(severity) {
  return severity === SEVERITY.error ? "sev-error" : severity === SEVERITY.warning ? "sev-warning" : "";
}

function logBadges(info) {
  return [
    info.hasDiff ? h("span", { class: "badge badge-diff" }, "diff") : null,
    info.hasSnapshot ? h("span", { class: "badge badge-snapshot" }, "snapshot") : null,
    info.severity === SEVERITY.error ? h("span", { class: "badge badge-error" }, "error") : null,
    info.severity === SEVERITY.warning ? h("span", { class: "badge badge-warning" }, "warning") : null,
    info.benign ? h("span", { class: "badge badge-benign", title: "a routine failure, not a problem" }, "benign") : null,
  ];
}

/** The row that names the object a row is of: itself, or its nearest parent with an object key. */
export function ownerObject(node) {
  let owner = node;
  while (owner && !(owner.tags && owner.tags.name && owner.tags.resource)) owner = owner.parent;
  return owner;
}

/**
 * "Object at this moment": the manifest of the row's object as of the selected log's time, or the
 * row's start (an object row without a selected log: its latest revision); with `onExplain`, the
 * button that opens the Explain panel beside it. Null when the row names no object.
 */
function objectAtLink(node, logs, logIndex, onExplain) {
  const owner = ownerObject(node);
  if (!owner) return null;
  const log = logIndex !== null && logIndex !== undefined ? logs[logIndex] : null;
  const at = log ? log.timestamp : node.isObject ? null : node.span.startTime;
  return h(
    "p",
    { class: "object-at" },
    h("a", { href: objectAtUrl(owner.tags, at), id: "object-at-link", title: "The object's manifest as it was then, with its other revisions" }, "object at this moment →"),
    onExplain
      ? h(
          "button",
          {
            type: "button",
            id: "explain-button",
            class: "explain-btn",
            title: "Why is this object like this? Its cause chain back to the request that started it (x)",
            onclick: () => onExplain(),
          },
          "explain",
        )
      : null,
  );
}

/**
 * Fill `panel` for a node and optionally one of its logs. handlers: onSelectLog(index|null),
 * onClose(), onSelectNode(node).
 */
export function renderDetail(panel, node, logIndex, handlers) {
  const span = node.span;
  const logs = nodeLogs(node);
  const spanSev = Math.max(node.severity, 0);
  const header = h(
    "div",
    { class: "detail-head" },
    h(
      "div",
      { class: "detail-title" },
      h("span", { class: `src src-${node.source || "other"}` }, node.source || "span"),
      h("h2", { class: sevClass(spanSev), title: node.label }, node.label),
    ),
    h("button", { type: "button", class: "close", title: "Close (Esc)", "aria-label": "Close", onclick: handlers.onClose }, "×"),
  );
  const crumbs = [];
  for (let p = node.parent; p; p = p.parent) crumbs.unshift(p);
  const breadcrumb = crumbs.length
    ? h(
        "nav",
        { class: "crumbs", "aria-label": "Parents" },
        crumbs.map((p) =>
          h("a", { href: "#", onclick: (ev) => (ev.preventDefault(), handlers.onSelectNode(p)) }, p.label),
        ),
      )
    : null;
  const meta = h(
    "dl",
    { class: "meta" },
    h("dt", {}, "start"),
    h("dd", {}, formatTime(span.startTime, 6)),
    h("dt", {}, "duration"),
    h("dd", {}, formatDuration(span.duration || 0)),
    h("dt", {}, "span"),
    h("dd", { class: "mono" }, span.spanID),
  );
  panel.replaceChildren(header);
  if (breadcrumb) panel.append(breadcrumb);
  panel.append(meta);
  const objectLink = objectAtLink(node, logs, logIndex, handlers.onExplain);
  if (objectLink) panel.append(objectLink);

  if (logIndex !== null && logIndex !== undefined && logs[logIndex]) {
    const info = logs[logIndex];
    panel.append(
      h(
        "section",
        { class: `log-detail ${sevClass(info.severity)}`, dataset: { log: String(logIndex) } },
        h(
          "h3",
          {},
          `Log ${logIndex + 1} of ${logs.length} · ${formatTime(info.timestamp, 6)} `,
          h("span", { class: "muted" }, `(+${formatDuration(info.timestamp - span.startTime)})`),
          " ",
          ...logBadges(info),
        ),
        h(
          "div",
          { class: "log-nav" },
          h("button", { type: "button", disabled: logIndex === 0, onclick: () => handlers.onSelectLog(logIndex - 1) }, "◂ previous"),
          h(
            "button",
            { type: "button", disabled: logIndex >= logs.length - 1, onclick: () => handlers.onSelectLog(logIndex + 1) },
            "next ▸",
          ),
          h("button", { type: "button", onclick: () => handlers.onSelectLog(null) }, "span only"),
        ),
        fieldsTable(info.entries, "log-fields", ownerObject(node)?.tags),
      ),
    );
  }

  panel.append(h("section", { class: "tags" }, h("h3", {}, `Tags (${span.tags.length})`), fieldsTable(span.tags.map((t) => [t.key, t.value]), "tag-table")));

  if (logs.length) {
    const list = h("ol", { class: "log-list" });
    const fill = (limit) => {
      list.replaceChildren();
      for (let i = 0; i < Math.min(limit, logs.length); i++) {
        const info = logs[i];
        list.append(
          h(
            "li",
            {
              class: `log-item ${sevClass(info.severity)}${i === logIndex ? " selected" : ""}`,
              dataset: { log: String(i), diff: info.hasDiff ? "1" : null },
              tabindex: "0",
              onclick: () => handlers.onSelectLog(i),
              onkeydown: (ev) => {
                if (ev.key === "Enter") handlers.onSelectLog(i);
              },
            },
            h("span", { class: "log-time" }, formatTime(info.timestamp, 3).slice(11)),
            h("span", { class: "log-summary" }, info.summary),
            ...logBadges(info),
          ),
        );
      }
      if (logs.length > limit) {
        list.append(
          h("li", { class: "log-more" }, h("button", { type: "button", onclick: () => fill(logs.length) }, `show all ${logs.length} logs`)),
        );
      }
    };
    fill(Math.max(LOG_LIST_PAGE, (logIndex ?? 0) + 1));
    panel.append(h("section", { class: "logs" }, h("h3", {}, `Logs (${logs.length})`), list));
  }
  if (node.children.length) {
    panel.append(
      h(
        "section",
        { class: "children-summary" },
        h("h3", {}, `Children (${node.children.length})`),
        h(
          "p",
          { class: "muted" },
          `${node.children.filter((c) => c.isObject).length} objects, ` +
            `${node.children.filter((c) => !c.isObject).length} other spans` +
            (node.subtreeErrors ? `; ${node.subtreeErrors} with errors below` : "") +
            (node.subtreeWarnings ? `; ${node.subtreeWarnings} with warnings below` : ""),
        ),
      ),
    );
  }
  const selectedItem = panel.querySelector(".log-item.selected");
  const logDetail = panel.querySelector(".log-detail");
  panel.scrollTop = 0;
  if (!logDetail && selectedItem) selectedItem.scrollIntoView({ block: "nearest" });
}
