// The object at a moment: "/object?cluster=&group=&resource=&namespace=&name=&uid=&at=|rv=[&to=RV]".
// Shows the manifest in effect then (YAML), a picker of every stored revision, and a side-by-side
// diff against another revision. The URL holds the whole state, so a copied link reopens it.

import { getJSON, apiUrl, describeError } from "./api.js";
import { h, formatTime, setTitle } from "./util.js";

const KEY_PARAMS = ["cluster", "group", "resource", "namespace", "name", "uid"];

/** The /object URL for an object (its key tags) at a moment in µs (null: its latest revision). */
export function objectAtUrl(tags, atUs) {
  const params = {};
  for (const key of KEY_PARAMS) if (tags[key] !== undefined && tags[key] !== null) params[key] = tags[key];
  if (atUs !== null && atUs !== undefined) params.at = Math.round(atUs);
  return apiUrl("/object", params);
}

function ensureStyles() {
  if (document.querySelector('link[data-objectat]')) return;
  document.head.append(h("link", { rel: "stylesheet", href: "/static/objectat.css", dataset: { objectat: "1" } }));
}

function keyOf(params) {
  const key = {};
  for (const name of KEY_PARAMS) if (params.has(name)) key[name] = params.get(name);
  return key;
}

function objectTitle(obj) {
  const where = obj.namespace ? `${obj.namespace}/` : "";
  return `${obj.kind || obj.resource} ${where}${obj.name}`;
}

function revisionOption(rev, selected) {
  const label = rev.deleted ? `deleted · ${formatTime(rev.time, 6)} · ${rev.user || "?"}` : `rv ${rev.rv} · ${formatTime(rev.time, 6)} · ${rev.user || "?"} · ${rev.verb}${rev.complete ? "" : " (partial)"}`;
  return h("option", { value: rev.rv, selected: rev.rv === selected }, label);
}

function sideBySide(diff) {
  const table = h("table", { class: "sbs", id: "sbs" });
  // Fixed layout takes the widths from here: narrow line numbers, two equal text columns.
  table.append(
    h("colgroup", {}, h("col", { class: "sbs-no-col" }), h("col", {}), h("col", { class: "sbs-no-col" }), h("col", {})),
  );
  table.append(
    h(
      "thead",
      {},
      h("tr", {}, h("th", { colspan: "2", class: "sbs-left-head" }, diff.left.label), h("th", { colspan: "2", class: "sbs-right-head" }, diff.right.label)),
    ),
  );
  const body = h("tbody");
  for (const row of diff.rows) {
    body.append(
      h(
        "tr",
        { class: `sbs-row sbs-${row.kind}`, dataset: { kind: row.kind } },
        h("td", { class: "sbs-no" }, row.leftNo ?? ""),
        h("td", { class: "sbs-left" }, row.left ?? ""),
        h("td", { class: "sbs-no" }, row.rightNo ?? ""),
        h("td", { class: "sbs-right" }, row.right ?? ""),
      ),
    );
  }
  table.append(body);
  return table;
}

/** The other objects that had this name (deleted and created again), each a link to its own history. */
function otherIncarnations(shown, key) {
  const others = (shown.incarnations || []).filter((row) => row.uid && row.uid !== shown.object.uid);
  if (!others.length) return null;
  return h(
    "p",
    { class: "muted", id: "incarnations" },
    "The name was also used by ",
    others.flatMap((row, i) => [
      i ? ", " : "",
      h("a", { href: apiUrl("/object", { ...key, uid: row.uid, at: undefined, rv: undefined }) }, `uid ${row.uid}`),
      row.firstSeen ? ` (from ${formatTime(row.firstSeen, 0)})` : "",
    ]),
    ".",
  );
}

/** Render the page into `root` from the URL's parameters. */
export async function showObjectPage(root, params) {
  ensureStyles();
  hookHistory(root);
  document.body.dataset.state = "loading";
  const key = keyOf(params);
  root.replaceChildren(h("div", { class: "loading", role: "status" }, "Loading the object…"));
  setTitle(`${key.name || "object"} at a moment`);
  const moment = params.get("rv") ? { rv: params.get("rv") } : params.get("at") ? { at: params.get("at") } : {};
  let list;
  let shown;
  try {
    [list, shown] = await Promise.all([
      getJSON(apiUrl("/api/kelemetry/revisions", { ...key, at: moment.at })),
      getJSON(apiUrl("/api/kelemetry/manifest", { ...key, ...moment })),
    ]);
  } catch (err) {
    root.replaceChildren(
      h(
        "div",
        { class: "page-error objectat" },
        h("h1", {}, `${key.resource || "?"} ${key.namespace ? key.namespace + "/" : ""}${key.name || "?"}`),
        h("p", { class: "error", role: "alert", id: "error-message" }, describeError(err)),
        h("p", {}, h("a", { href: "/search" }, "← Search for an object")),
      ),
    );
    document.body.dataset.state = "error";
    return;
  }
  // Links keep the incarnation shown, even when the name was reused later.
  const pinned = { ...key, uid: shown.object.uid || key.uid };
  const current = shown.revision.rv;
  const go = (extra) => {
    const url = apiUrl("/object", { ...pinned, ...extra });
    window.history.pushState(null, "", url);
    showObjectPage(root, new URLSearchParams(url.split("?")[1] || ""));
  };

  const picker = h(
    "select",
    { id: "revision", "aria-label": "Revision", onchange: (ev) => go({ rv: ev.target.value, to: params.get("to") || undefined }) },
    list.data.map((rev) => revisionOption(rev, current)),
  );
  const compare = h(
    "select",
    { id: "compare", "aria-label": "Compare with", onchange: (ev) => go({ rv: current, to: ev.target.value || undefined }) },
    h("option", { value: "" }, "— no comparison —"),
    list.data.filter((rev) => rev.rv !== current).map((rev) => revisionOption(rev, params.get("to"))),
  );
  const step = (rv, text) => h("button", { type: "button", class: "step", disabled: !rv, onclick: () => go({ rv, to: params.get("to") || undefined }) }, text);
  const page = h(
    "div",
    { class: "objectat" },
    h(
      "header",
      { class: "objectat-head" },
      h("h1", { id: "objectat-title" }, objectTitle(shown.object)),
      h(
        "p",
        { class: "muted" },
        `cluster ${shown.object.cluster} · uid ${shown.object.uid || "?"} · `,
        h(
          "a",
          { id: "trace-link", href: apiUrl("/redirect", { ...shown.object, kind: undefined, uid: undefined, ts: shown.revision.time }) },
          "its trace at this moment",
        ),
      ),
    ),
    h(
      "div",
      { class: "objectat-controls" },
      step(shown.previous, "◂ older"),
      h("label", {}, "Revision ", picker),
      step(shown.next, "newer ▸"),
      h("label", {}, "Compare with ", compare),
    ),
    h(
      "p",
      { id: "revision-summary", class: shown.revision.deleted ? "revision deleted" : "revision" },
      shown.revision.label,
    ),
    shown.notes.length ? h("ul", { id: "objectat-notes", class: "notes" }, shown.notes.map((note) => h("li", {}, note))) : null,
    otherIncarnations(shown, key),
  );
  const target = params.get("to");
  if (target) {
    try {
      const diff = await getJSON(apiUrl("/api/kelemetry/manifest/diff", { ...pinned, rv: current, toRv: target }));
      page.append(
        h("p", { class: "diff-summary", id: "diff-summary" }, `${diff.changed} line(s) differ`),
        sideBySide(diff),
      );
    } catch (err) {
      page.append(h("p", { class: "error", role: "alert", id: "error-message" }, describeError(err)));
    }
  } else {
    page.append(h("pre", { class: "yaml", id: "manifest" }, shown.yaml || "(no state of the object is stored)"));
  }
  root.replaceChildren(page);
  setTitle(`${objectTitle(shown.object)} · ${shown.revision.deleted ? "deleted" : "rv " + current}`);
  document.body.dataset.state = "ready";
}

let historyHooked = false;

/** Back and forward between revisions redraw the page from the URL (hooked once, on first use). */
function hookHistory(root) {
  if (historyHooked) return;
  historyHooked = true;
  window.addEventListener("popstate", () => {
    if (window.location.pathname === "/object") showObjectPage(root, new URLSearchParams(window.location.search));
  });
}
