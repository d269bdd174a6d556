// Causal answers in the UI: the Explain panel (why an object is like this: its cause chain, the
// rollouts of its workload and its stuck Pods) and field blame (who set each value of a field).
// Both render from /api/kelemetry/explain and /api/kelemetry/blame; the page
// "/explain?cluster=&group=&resource=&namespace=&name=&uid=&ts=[&field=]" shows them for a pasted link.

import { apiUrl, describeError, getJSON } from "./api.js";
import { parseDiffLine } from "./diffline.js";
import { formatDuration, formatTime, h, setTitle } from "./util.js";

const KEY_PARAMS = ["cluster", "group", "resource", "namespace", "name", "uid"];

/** The object key of a span's tags or an API object: only the parameters the endpoints take. */
export function objectKey(obj) {
  const key = {};
  for (const name of KEY_PARAMS) {
    const value = obj && obj[name];
    if (value !== undefined && value !== null && value !== "") key[name] = String(value);
  }
  return key;
}

/** The /explain page for an object at a moment (µs; null: its last activity), optionally with a field's blame. */
export function explainPageUrl(obj, atUs = null, field = null) {
  const params = objectKey(obj);
  if (atUs !== null && atUs !== undefined) params.ts = typeof atUs === "number" ? Math.round(atUs) : atUs;
  if (field) params.field = field;
  return apiUrl("/explain", params);
}

function ensureStyles() {
  if (document.querySelector("link[data-explain]")) return;
  document.head.append(h("link", { rel: "stylesheet", href: "/static/explain.css", dataset: { explain: "1" } }));
}

export function objectName(obj) {
  if (!obj) return "(unknown object)";
  const where = obj.namespace ? `${obj.namespace}/` : "";
  return `${obj.kind || obj.resource || "object"} ${where}${obj.name ?? ""}`;
}

/** A link to the object's trace around a moment (the /redirect of the query side picks the view). */
function objectLink(obj, atUs) {
  const text = objectName(obj);
  let href = null;
  if (obj && obj.cluster && obj.resource && obj.name && Number.isFinite(atUs)) {
    href = apiUrl("/redirect", { ...objectKey(obj), ts: Math.round(atUs) });
  }
  const title = obj && obj.uid ? `uid ${obj.uid}` : null;
  return href ? h("a", { class: "xp-object", href, title }, text) : h("span", { class: "xp-object", title }, text);
}

/** µs of an answer's time: the `_us` integer when present, else the RFC 3339 text. */
function micros(us, text) {
  if (Number.isFinite(us) && us > 0) return us;
  if (typeof text === "string" && text) {
    const ms = Date.parse(text);
    if (Number.isFinite(ms)) return ms * 1000;
  }
  return null;
}

function when(us, text) {
  const t = micros(us, text);
  return t === null ? text || "—" : formatTime(t, 3);
}

function verbOf(request) {
  return request.verb ? request.verb + (request.subresource ? `/${request.subresource}` : "") : "?";
}

/** A request's who/what/when, every part named so a reader never has to guess who acted. */
function requestLine(request, { time = true } = {}) {
  if (!request) return h("span", { class: "xp-request xp-none muted" }, "no request recorded");
  const code = request.code === null || request.code === undefined ? null : Number(request.code);
  const failed = Number.isFinite(code) && code >= 400;
  return h(
    "span",
    { class: "xp-request" },
    h("span", { class: "xp-user", title: "user" }, request.user || "(unknown user)"),
    " ",
    h("span", { class: "xp-verb mono", title: "verb" }, verbOf(request)),
    request.user_agent ? h("span", { class: "xp-agent muted", title: request.user_agent }, ` via ${shortAgent(request.user_agent)}`) : null,
    time ? [" at ", h("span", { class: "xp-time mono" }, when(request.time_us, request.time))] : null,
    code !== null ? h("span", { class: `xp-code mono${failed ? " xp-failed" : ""}`, title: "response code" }, ` → ${code}`) : null,
  );
}

/** "kubectl/v1.31.0 (linux/amd64) kubernetes/abc" reads as "kubectl/v1.31.0"; the whole is the title. */
function shortAgent(agent) {
  const first = String(agent).split(" ", 1)[0];
  return first.length > 48 ? first.slice(0, 45) + "…" : first;
}

// ---- blame ----------------------------------------------------------------------------------------

/**
 * A "blame" button for one diff line: clicking it shows (or hides again) who set each value of
 * `field` on the object, in a box that `place(box)` puts into the page.
 */
export function blameButton(obj, field, place) {
  let box = null;
  const button = h("button", {
    type: "button",
    class: "blame-btn",
    title: `Who set ${field}, and when: the history of its values`,
    "aria-expanded": "false",
    dataset: { field },
  });
  // the label is drawn by the stylesheet: copying a diff copies its lines, not the buttons
  button.setAttribute("aria-label", `blame ${field}`);
  // inside a clickable row (the changes list) the button's keys and clicks are its own
  button.addEventListener("keydown", (ev) => ev.stopPropagation());
  button.addEventListener("click", (ev) => {
    ev.stopPropagation();
    if (box && box.isConnected) {
      box.remove();
      button.setAttribute("aria-expanded", "false");
      return;
    }
    box = blameBox(obj, field);
    place(box);
    button.setAttribute("aria-expanded", "true");
  });
  return button;
}

/** A box that loads and shows the blame of `field` on the object (every incarnation of its name). */
export function blameBox(obj, field) {
  ensureStyles();
  const box = h("div", { class: "blame-box", role: "region", "aria-label": `Blame of ${field}`, dataset: { state: "loading", field } });
  box.append(h("p", { class: "muted", role: "status" }, `Looking up who set ${field}…`));
  for (const type of ["click", "keydown"]) box.addEventListener(type, (ev) => ev.stopPropagation());
  // every incarnation: a reused name keeps its histories apart, the viewed one is marked
  const { uid, ...key } = objectKey(obj);
  getJSON(apiUrl("/api/kelemetry/blame", { ...key, field }))
    .then((body) => {
      const answer = Array.isArray(body && body.data) ? body.data[0] : null;
      box.replaceChildren(...(answer ? blameContent(answer, uid) : [h("p", { class: "muted" }, "No answer for this object.")]));
      box.dataset.state = "ready";
    })
    .catch((err) => {
      box.replaceChildren(h("p", { class: "error", role: "alert" }, `Cannot blame ${field}: ${describeError(err)}`));
      box.dataset.state = "error";
    });
  return box;
}

function blameContent(answer, viewedUid) {
  const out = [];
  const current = answer.current;
  out.push(
    h(
      "p",
      { class: "blame-current" },
      current
        ? [`${answer.field} = `, h("span", { class: "mono" }, current.new), " was set by ", requestOrSource(current), current.proven ? "" : " (not proven)"]
        : `Nobody is recorded setting ${answer.field} on the newest object of this name.`,
      current && current.note ? h("span", { class: "muted blame-note" }, ` ${current.note}`) : null,
    ),
  );
  const incarnations = Array.isArray(answer.incarnations) ? answer.incarnations : [];
  if (!incarnations.length) out.push(h("p", { class: "muted" }, "No recorded change of this field."));
  for (const inc of incarnations) {
    const mine = viewedUid && inc.uid === viewedUid;
    const head = h(
      "p",
      { class: "blame-incarnation" },
      `uid ${inc.uid || "(unknown)"}`,
      h("span", { class: "muted" }, `${when(inc.first_us, inc.first)} – ${inc.last || inc.last_us ? when(inc.last_us, inc.last) : "now"}${inc.deleted ? " · deleted" : ""}`),
      mine ? h("span", { class: "badge" }, "this object") : null,
    );
    const history = Array.isArray(inc.history) ? inc.history : [];
    const rows = history.map((entry) =>
      h(
        "tr",
        { class: `blame-entry${entry.proven ? "" : " unproven"}`, dataset: { source: entry.source || "" } },
        h("td", { class: "mono nowrap" }, when(entry.time_us, entry.time)),
        h("td", { class: "mono" }, entry.path !== answer.field ? entry.path : "", " ", h("span", { class: "diff-old" }, entry.old), " -> ", h("span", { class: "diff-new" }, entry.new)),
        h(
          "td",
          {},
          // the row's time is the request's: said once
          requestOrSource(entry, false),
          entry.proven ? null : h("span", { class: "xp-unproven-tag", title: "the data does not prove who made this change" }, "unproven"),
          entry.note ? h("div", { class: "muted blame-note" }, entry.note) : null,
        ),
      ),
    );
    out.push(
      h(
        "div",
        { class: `blame-inc${mine ? " mine" : ""}`, dataset: { uid: inc.uid || "" } },
        head,
        rows.length
          ? h("table", { class: "blame-table" }, h("thead", {}, h("tr", {}, h("th", {}, "time"), h("th", {}, "value"), h("th", {}, "set by"))), h("tbody", {}, rows))
          : h("p", { class: "muted" }, "No recorded change of this field in this incarnation."),
      ),
    );
  }
  return out;
}

function requestOrSource(entry, time = true) {
  if (entry.request) return requestLine(entry.request, { time });
  // a change the watch saw with no request claiming it: say so rather than name someone
  return h("span", { class: "xp-request xp-none" }, entry.source === "change" ? "a watched change no request claimed" : "no request recorded");
}

// ---- explain --------------------------------------------------------------------------------------

function stepEl(step, index, chainLength, answer) {
  const request = step.request;
  const at = request ? micros(request.time_us, request.time) : answer.at_us ?? null;
  const relation = step.relation || "?";
  const actor = step.actor || "unknown";
  const isTarget = index === 0;
  const isStart = index === chainLength - 1;
  const changes = Array.isArray(step.changes) ? step.changes : [];
  return h(
    "li",
    {
      class: `xp-step actor-${actor}${step.proven ? "" : " unproven"}${isTarget ? " target" : ""}${isStart ? " start" : ""}`,
      dataset: { relation, actor, proven: step.proven ? "1" : "0" },
    },
    h(
      "div",
      { class: "xp-step-head" },
      objectLink(step.object, at),
      " ",
      h("span", { class: `xp-relation rel-${relation}` }, relation),
      " ",
      h("span", { class: `xp-actor actor-${actor}`, title: "who acted" }, actor),
      step.proven ? null : h("span", { class: "xp-unproven-tag", title: "the data cannot prove this step" }, "unproven"),
    ),
    h("div", { class: "xp-step-request" }, requestLine(request)),
    changeLines(step.object, changes),
    step.reason ? h("p", { class: step.proven ? "xp-reason muted" : "xp-reason xp-reason-unproven" }, step.reason) : null,
  );
}

/** Diff lines of `obj`, each with its blame button (the answer shows below the lines); null when none. */
function changeLines(obj, lines) {
  if (!lines.length) return null;
  const diff = h("pre", { class: "diff xp-changes" });
  const box = h("div", { class: "xp-change-box" }, diff);
  for (const line of lines) {
    const row = h("span", { class: "diff-line xp-diff-line" }, line);
    const path = diffPath(line);
    if (path && obj) row.append(blameButton(obj, path, (answer) => box.append(answer)));
    diff.append(row);
  }
  return box;
}

/** The path of a `path old -> new` diff line, or null. */
export function diffPath(line) {
  const parsed = parseDiffLine(String(line));
  return parsed ? parsed.path : null;
}

function rolloutEl(rollout) {
  const state = rollout.state || "unknown";
  const changes = Array.isArray(rollout.changes) ? rollout.changes : [];
  const started = micros(rollout.started_us, rollout.started);
  return h(
    "li",
    { class: `xp-rollout state-${state}`, dataset: { state, revision: String(rollout.revision ?? "") } },
    h(
      "div",
      { class: "xp-step-head" },
      h("span", { class: "xp-revision" }, `revision ${rollout.revision ?? "?"}`),
      " ",
      h("span", { class: `xp-state state-${state}` }, state),
      " ",
      rollout.object ? objectLink(rollout.object, started) : null,
    ),
    h("div", { class: "xp-step-request" }, "triggered by ", requestLine(rollout.trigger)),
    h(
      "p",
      { class: "muted xp-times" },
      `started ${when(rollout.started_us, rollout.started)}`,
      rollout.finished ? ` · finished ${when(rollout.finished_us, rollout.finished)}` : " · not finished",
    ),
    changeLines(rollout.workload, changes),
    rollout.reason ? h("p", { class: state === "stuck" ? "xp-reason xp-reason-unproven" : "xp-reason muted" }, rollout.reason) : null,
  );
}

function stuckEl(pod) {
  const state = pod.state || "unknown";
  const reasons = Array.isArray(pod.reasons) ? pod.reasons : [];
  const since = micros(pod.since_us, pod.since);
  const cause = pod.cause;
  return h(
    "li",
    { class: `xp-stuck state-${state}`, dataset: { state } },
    h(
      "div",
      { class: "xp-step-head" },
      objectLink(pod.object, since),
      " ",
      h("span", { class: `xp-state state-${state}` }, state),
      " ",
      h(
        "span",
        { class: "muted" },
        Number.isFinite(pod.for_seconds) ? `for ${formatDuration(pod.for_seconds * 1e6)}` : "",
        since !== null ? ` (since ${formatTime(since, 3)})` : "",
        pod.count > 1 ? ` · ${pod.count} times` : "",
      ),
    ),
    reasons.length ? h("ul", { class: "xp-reasons" }, reasons.map((r) => h("li", {}, r))) : null,
    h(
      "div",
      { class: "xp-step-request" },
      "cause: ",
      cause ? [objectLink(cause.object, since), " ", requestLine(cause.request)] : h("span", { class: "xp-none" }, "not found in the data"),
    ),
  );
}

function answerEl(answer) {
  const chain = Array.isArray(answer.chain) ? answer.chain : [];
  const rollouts = Array.isArray(answer.rollouts) ? answer.rollouts : [];
  const stuck = Array.isArray(answer.stuck) ? answer.stuck : [];
  const parts = [
    h("p", { class: "xp-summary", id: "explain-summary" }, answer.summary || "No summary."),
    h(
      "p",
      { class: "muted xp-meta" },
      `as of ${when(answer.at_us, answer.at)}`,
      answer.object && answer.object.uid ? ` · uid ${answer.object.uid}` : "",
      answer.view_id ? [" · ", h("a", { href: `/trace/${encodeURIComponent(answer.view_id)}`, class: "xp-view-link" }, "its trace")] : null,
    ),
  ];
  if (answer.complete === false) {
    parts.push(
      h(
        "p",
        { class: "xp-incomplete", role: "note" },
        "Part of this chain cannot be proven from the recorded data: the steps marked unproven say why.",
      ),
    );
  }
  parts.push(
    h("h4", {}, `Cause chain (${chain.length} step${chain.length === 1 ? "" : "s"}, from the object back to where it started)`),
    chain.length
      ? h("ol", { class: "xp-chain", id: "explain-chain" }, chain.map((step, i) => stepEl(step, i, chain.length, answer)))
      : h("p", { class: "muted" }, "No step recorded."),
  );
  if (rollouts.length) {
    parts.push(h("h4", {}, `Rollouts (${rollouts.length})`), h("ol", { class: "xp-rollouts", id: "explain-rollouts" }, rollouts.map(rolloutEl)));
  }
  if (stuck.length) {
    parts.push(h("h4", {}, `Stuck or failing Pods (${stuck.length})`), h("ul", { class: "xp-stuck-list", id: "explain-stuck" }, stuck.map(stuckEl)));
  }
  return parts;
}

/**
 * The Explain panel for an object: a section that loads /api/kelemetry/explain itself and shows a
 * loading line, the answer, or the API's reason for having none. `atUs` null: its last activity.
 */
export function explainPanel(obj, atUs = null, { onClose = null, onAnswer = null } = {}) {
  ensureStyles();
  const params = objectKey(obj);
  if (atUs !== null && atUs !== undefined) params.ts = typeof atUs === "number" ? Math.round(atUs) : atUs;
  let heading;
  const body = h("div", { class: "xp-body", "aria-live": "polite" }, h("p", { class: "muted", role: "status" }, `Explaining ${objectName(obj)}…`));
  const panel = h(
    "section",
    { class: "explain-panel", id: "explain-panel", "aria-label": `Explain ${objectName(obj)}`, tabindex: "-1", dataset: { state: "loading" } },
    h(
      "div",
      { class: "xp-head" },
      (heading = h("h3", {}, `Why is ${objectName(obj)} like this?`)),
      h("a", { class: "xp-permalink", href: explainPageUrl(obj, atUs), title: "A link to this answer to share" }, "link"),
      onClose ? h("button", { type: "button", class: "xp-close", "aria-label": "Close the explanation", onclick: onClose }, "×") : null,
    ),
    body,
  );
  getJSON(apiUrl("/api/kelemetry/explain", params))
    .then((doc) => {
      const answers = Array.isArray(doc && doc.data) ? doc.data : [];
      if (!answers.length) {
        body.replaceChildren(h("p", { class: "error", role: "alert" }, "The server has no explanation for this object."));
        panel.dataset.state = "error";
        return;
      }
      body.replaceChildren(...answers.flatMap((answer, i) => (i ? [h("hr"), ...answerEl(answer)] : answerEl(answer))));
      // the answer names the object as the cluster knows it (its kind, not the resource typed)
      if (answers[0].object) heading.textContent = `Why is ${objectName(answers[0].object)} like this?`;
      panel.dataset.state = "ready";
      if (onAnswer) onAnswer(answers[0]);
    })
    .catch((err) => {
      body.replaceChildren(h("p", { class: "error", role: "alert", id: "explain-error" }, `Cannot explain ${objectName(obj)}: ${describeError(err)}`));
      panel.dataset.state = "error";
    });
  return panel;
}

// ---- the /explain page ----------------------------------------------------------------------------

function pageObject(params) {
  const obj = {};
  for (const name of KEY_PARAMS) if (params.get(name)) obj[name] = params.get(name);
  return obj;
}

/** The moment to explain as the link gives it (the API reads every form it accepts, and explains a wrong one). */
function momentOf(params) {
  return params.get("ts") || null;
}

/** Render the /explain page into `root`. */
export async function showExplainPage(root, params) {
  ensureStyles();
  const obj = pageObject(params);
  const field = params.get("field");
  setTitle(`Explain ${objectName(obj)}`);
  const at = momentOf(params);
  const missing = ["cluster", "resource", "name"].filter((name) => !obj[name]);
  if (missing.length) {
    root.replaceChildren(
      h(
        "div",
        { class: "page-error explain-page" },
        h("h1", {}, "Explain an object"),
        h("p", { class: "error", role: "alert", id: "error-message" }, `This link lacks ${missing.join(", ")}: an explanation needs the object's cluster, resource and name.`),
        h("p", {}, h("a", { href: "/search" }, "← Search for an object")),
      ),
    );
    document.body.dataset.state = "error";
    return;
  }
  // an unreadable moment goes to the API as typed: its answer says what is wrong with it
  const title = h("h1", { id: "explain-title" }, `Explain ${objectName(obj)}`);
  const panel = explainPanel(obj, at, {
    onAnswer: (answer) => {
      if (!answer.object) return;
      title.textContent = `Explain ${objectName(answer.object)}`;
      setTitle(title.textContent);
    },
  });
  const page = h("div", { class: "explain-page" }, title, panel);
  if (field) page.append(h("h3", {}, `Blame of ${field}`), blameBox(obj, field));
  root.replaceChildren(page);
  document.body.dataset.state = "ready";
}

