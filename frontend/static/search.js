// The search page: / and /search?cluster=&resource=&namespace=&name=&range=&start=&end=&mode=&scope=

import { ApiError, apiUrl, describeError, getJSON } from "./api.js";
import { debounce, formatTime, h, parseLocalUtc, setTitle, toLocalUtc } from "./util.js";
import { MODES, SCOPES, modeId, parseModeId, scopeLabel } from "./viewid.js";

const PRESETS = [
  ["15m", "last 15 minutes", 15 * 60],
  ["1h", "last hour", 3600],
  ["6h", "last 6 hours", 6 * 3600],
  ["24h", "last 24 hours", 24 * 3600],
  ["7d", "last 7 days", 7 * 86400],
  ["all", "all history", null],
  ["custom", "custom range (UTC)", null],
];

const SUGGEST_DELAY_MS = 150;

// A whole uid: typed into the name box, it opens that incarnation.
const UID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** `text` with each occurrence of `part` (any case) marked, as nodes. */
function marked(text, part) {
  if (!part) return [text];
  const nodes = [];
  const lower = text.toLowerCase();
  const wanted = part.toLowerCase();
  let from = 0;
  for (let at = lower.indexOf(wanted); at !== -1; at = lower.indexOf(wanted, from)) {
    if (at > from) nodes.push(text.slice(from, at));
    nodes.push(h("mark", {}, text.slice(at, at + wanted.length)));
    from = at + wanted.length;
  }
  if (from < text.length) nodes.push(text.slice(from));
  return nodes;
}

function joinResource(resource, group) {
  return group ? `${resource}.${group}` : resource;
}

export async function showSearchPage(root, params) {
  setTitle("Search");
  const page = new SearchPage(root, params);
  await page.mount();
}

class SearchPage {
  constructor(root, params) {
    this.root = root;
    this.params = params;
    this.modes = null;
    this.suggestions = [];
    this.active = -1;
    this.suggestAbort = null;
    this.resources = [];
  }

  async mount() {
    const f = (this.form = h("form", { id: "search-form", class: "search-form", autocomplete: "off", novalidate: true }));
    this.cluster = h("select", { id: "cluster", name: "cluster", required: true });
    // Typed as kubectl takes it (deploy, Deployment, deployments.apps; the server reads it), or
    // picked from the resources recorded.
    this.resource = h("input", {
      id: "resource",
      name: "resource",
      type: "text",
      list: "resource-list",
      placeholder: "any — deploy, po, Deployment…",
      spellcheck: "false",
    });
    this.resourceList = h("datalist", { id: "resource-list" });
    this.uid = null;
    this.namespace = h("input", { id: "namespace", name: "namespace", type: "text", placeholder: "any namespace", spellcheck: "false" });
    this.name = h("input", {
      id: "name",
      name: "name",
      type: "text",
      placeholder: "object name (type for suggestions)",
      spellcheck: "false",
      role: "combobox",
      "aria-autocomplete": "list",
      "aria-expanded": "false",
      "aria-controls": "name-suggestions",
    });
    this.suggestBox = h("ul", { id: "name-suggestions", class: "suggestions", role: "listbox", hidden: true });
    this.range = h("select", { id: "range", name: "range" }, PRESETS.map(([v, label]) => h("option", { value: v }, label)));
    this.start = h("input", { id: "start", name: "start", type: "datetime-local", step: "1" });
    this.end = h("input", { id: "end", name: "end", type: "datetime-local", step: "1" });
    this.customBox = h(
      "div",
      { class: "custom-range", hidden: true },
      h("label", {}, "from ", this.start),
      h("label", {}, "to ", this.end),
      h("span", { class: "muted" }, "UTC"),
    );
    this.mode = h("select", { id: "mode", name: "mode" });
    this.scope = h("select", { id: "scope", name: "scope" });
    this.submit = h("button", { type: "submit", id: "submit", class: "primary" }, "Find trace");
    this.message = h("div", { id: "search-message", class: "message", role: "alert", "aria-live": "polite" });
    this.results = h("div", { id: "results" });
    const field = (label, input, hint) => h("div", { class: "field" }, h("label", { for: input.id }, label), input, hint || null);
    f.append(
      h("h1", {}, "What happened to this object?"),
      h(
        "div",
        { class: "fields" },
        field("Cluster", this.cluster),
        field("Resource", this.resource, this.resourceList),
        field("Namespace", this.namespace),
        h("div", { class: "field name-field" }, h("label", { for: "name" }, "Name"), this.name, this.suggestBox),
        h("div", { class: "field" }, h("label", { for: "range" }, "Time range"), this.range, this.customBox),
        h(
          "div",
          { class: "field" },
          h("label", { for: "mode" }, "View"),
          h("div", { class: "inline" }, h("label", { class: "sub" }, "mode ", this.mode), h("label", { class: "sub" }, "scope ", this.scope)),
        ),
      ),
      h("div", { class: "actions" }, this.submit, this.message),
    );
    this.root.replaceChildren(h("div", { class: "search-page" }, f, this.results));

    this.wire();
    this.range.value = this.params.get("range") || (this.params.get("start") || this.params.get("end") ? "custom" : "all");
    if (!this.range.value) this.range.value = "all";
    this.start.value = this.params.get("start") || "";
    this.end.value = this.params.get("end") || "";
    this.namespace.value = this.params.get("namespace") || "";
    this.name.value = this.params.get("name") || "";
    this.customBox.hidden = this.range.value !== "custom";

    const [clusters, modes, fleet] = await Promise.allSettled([
      getJSON("/api/kelemetry/clusters"),
      getJSON("/api/kelemetry/modes"),
      // Only a collector has this (a frontend reading a store or Jaeger does not): state per cluster.
      getJSON("/api/kelemetry/fleet"),
    ]);
    if (modes.status === "fulfilled") this.modes = modes.value;
    this.fillModes();
    if (clusters.status === "rejected") {
      this.showError(`Cannot load the clusters: ${describeError(clusters.reason)}`);
      document.body.dataset.state = "error";
      return;
    }
    const names = clusters.value.data || [];
    const health = new Map(
      fleet.status === "fulfilled" ? (fleet.value.data || []).map((c) => [c.name, c]) : [],
    );
    const option = (name) => {
      const state = health.get(name);
      const note = state && state.state !== "ok" ? ` — ${state.state}` : "";
      const title = state && state.errors && state.errors.length ? state.errors.join("\n") : null;
      return h("option", { value: name, title, dataset: { state: state ? state.state : null } }, `${name}${note}`);
    };
    // With several clusters (a fleet), a name can be looked up across all of them.
    this.anyCluster = names.length > 1;
    this.cluster.replaceChildren(
      ...names.map(option),
      ...(this.anyCluster ? [h("option", { value: "" }, "any cluster")] : []),
    );
    if (!names.length) {
      this.showError("No cluster has been recorded yet: point an apiserver's audit webhook at Kelemetry or replay a log.");
    }
    const wanted = this.params.get("cluster");
    if (wanted !== null && (names.includes(wanted) || (wanted === "" && names.length > 1))) this.cluster.value = wanted;
    await this.loadResources(this.params.get("resource"));
    document.body.dataset.state = "ready";
    (this.name.value ? this.submit : this.name).focus();
  }

  fillModes() {
    const list = (this.modes && this.modes.modes) || [];
    const modeNames = [...new Set(list.map((m) => m.mode))];
    const scopeNames = [...new Set(list.map((m) => m.scope))];
    const modesAll = modeNames.length ? modeNames : MODES;
    const scopesAll = scopeNames.length ? scopeNames : SCOPES;
    this.mode.replaceChildren(...modesAll.map((m) => h("option", { value: m }, m)));
    this.scope.replaceChildren(...scopesAll.map((s) => h("option", { value: s }, scopeLabel(list, s))));
    const fromUrl = parseModeId(this.params.get("mode") || "");
    const def = parseModeId((this.modes && this.modes.default) || "") || { mode: "tracing", scope: "object" };
    this.mode.value = this.params.get("mode") && MODES.includes(this.params.get("mode")) ? this.params.get("mode") : (fromUrl || def).mode;
    this.scope.value = this.params.get("scope") && SCOPES.includes(this.params.get("scope")) ? this.params.get("scope") : (fromUrl || def).scope;
  }

  async loadResources(wanted) {
    const cluster = this.cluster.value;
    if (wanted) this.resource.value = wanted;
    if (!cluster && !this.anyCluster) return;
    try {
      const body = await getJSON(apiUrl("/api/kelemetry/resources", { cluster: cluster || undefined }));
      this.resources = body.data || [];
    } catch (err) {
      this.resources = [];
      this.showError(`Cannot load the resources of ${cluster || "the clusters"}: ${describeError(err)}`);
    }
    const sorted = this.resources.slice().sort((a, b) => (a.kind || a.resource).localeCompare(b.kind || b.resource));
    this.resourceList.replaceChildren(
      ...sorted.map((r) => {
        const value = joinResource(r.resource, r.group);
        const count = r.objects !== undefined && r.objects !== null ? ` (${r.objects})` : "";
        const short = r.shortNames && r.shortNames.length ? ` (${r.shortNames.join(", ")})` : "";
        return h("option", { value, dataset: { kind: r.kind || "" } }, `${r.kind || r.resource}${short}${count}`);
      }),
    );
  }

  wire() {
    this.cluster.addEventListener("change", () => {
      this.loadResources(this.resource.value);
      this.hideSuggestions();
    });
    this.resource.addEventListener("change", () => this.hideSuggestions());
    this.name.addEventListener("input", () => {
      this.uid = null;
    });
    this.range.addEventListener("change", () => {
      this.customBox.hidden = this.range.value !== "custom";
      if (this.range.value === "custom" && !this.start.value) {
        const now = Date.now() * 1000;
        this.start.value = toLocalUtc(now - 3600 * 1e6);
        this.end.value = toLocalUtc(now);
      }
    });
    const suggestSoon = debounce(() => this.suggest(), SUGGEST_DELAY_MS);
    this.name.addEventListener("input", suggestSoon);
    // a click (or ArrowDown) on the empty field lists the recorded objects; focusing alone does not
    this.name.addEventListener("click", () => {
      if (this.suggestBox.hidden) suggestSoon();
    });
    this.name.addEventListener("blur", () => setTimeout(() => this.hideSuggestions(), 120));
    this.name.addEventListener("keydown", (ev) => this.onNameKey(ev));
    this.suggestBox.addEventListener("mousedown", (ev) => ev.preventDefault());
    this.suggestBox.addEventListener("click", (ev) => {
      const li = ev.target.closest("li[data-index]");
      if (li) this.pick(Number(li.dataset.index));
    });
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.search();
    });
  }

  async suggest() {
    const cluster = this.cluster.value;
    if (!cluster && !this.anyCluster) return;
    if (this.suggestAbort) this.suggestAbort.abort();
    const abort = (this.suggestAbort = new AbortController());
    const params = { cluster: cluster || undefined, q: this.name.value.trim(), limit: 20 };
    if (this.resource.value.trim()) params.resource = this.resource.value.trim();
    if (this.namespace.value.trim()) params.namespace = this.namespace.value.trim();
    let items;
    try {
      items = (await getJSON(apiUrl("/api/kelemetry/objects", params), { signal: abort.signal })).data || [];
    } catch (err) {
      if (err && err.name === "AbortError") return;
      this.suggestions = [];
      this.suggestBox.replaceChildren(h("li", { class: "suggest-error" }, `suggestions unavailable: ${describeError(err)}`));
      this.openSuggestions();
      return;
    }
    if (abort.signal.aborted || document.activeElement !== this.name) return;
    this.suggestions = items;
    this.active = -1;
    if (!items.length) {
      this.suggestBox.replaceChildren(h("li", { class: "suggest-empty" }, "no recorded object matches"));
      this.openSuggestions();
      return;
    }
    const now = Date.now() * 1000;
    const typed = params.q;
    this.suggestBox.replaceChildren(
      ...items.map((o, i) => {
        const where = o.namespace ? `${o.namespace}/` : "";
        const seen = o.lastSeen ? `last seen ${formatTime(o.lastSeen, 0)}` : "";
        const stale = o.lastSeen && now - o.lastSeen > 3600 * 1e6;
        return h(
          "li",
          {
            role: "option",
            id: `suggestion-${i}`,
            dataset: { index: String(i), name: o.name, namespace: o.namespace || "", resource: joinResource(o.resource, o.group) },
          },
          h("span", { class: "s-kind" }, o.kind || o.resource),
          // The typed part is marked: often a Pod's suffix, the part that tells it from its siblings.
          h("span", { class: "s-name", title: `${where}${o.name}` }, where, ...marked(o.name, typed)),
          o.uid && typed && o.uid.toLowerCase().startsWith(typed.toLowerCase()) ? h("span", { class: "s-uid" }, `uid ${o.uid}`) : null,
          h("span", { class: `s-seen${stale ? " stale" : ""}` }, seen),
        );
      }),
    );
    this.openSuggestions();
  }

  openSuggestions() {
    this.suggestBox.hidden = false;
    this.name.setAttribute("aria-expanded", "true");
  }

  hideSuggestions() {
    if (this.suggestAbort) this.suggestAbort.abort();
    this.suggestBox.hidden = true;
    this.name.setAttribute("aria-expanded", "false");
    this.active = -1;
  }

  onNameKey(ev) {
    const items = this.suggestBox.querySelectorAll("li[data-index]");
    if (ev.key === "ArrowDown" && this.suggestBox.hidden) {
      ev.preventDefault();
      this.suggest();
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      if (this.suggestBox.hidden || !items.length) return;
      ev.preventDefault();
      this.active = (this.active + (ev.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
      items.forEach((li, i) => li.setAttribute("aria-selected", String(i === this.active)));
      this.name.setAttribute("aria-activedescendant", `suggestion-${this.active}`);
      items[this.active].scrollIntoView({ block: "nearest" });
    } else if (ev.key === "Enter" && !this.suggestBox.hidden && this.active >= 0) {
      ev.preventDefault();
      this.pick(this.active);
    } else if (ev.key === "Escape") {
      this.hideSuggestions();
    }
  }

  pick(index) {
    const o = this.suggestions[index];
    if (!o) return;
    // Picked by its uid: open that incarnation, not the newest of the name.
    const typed = this.name.value.trim().toLowerCase();
    this.uid = typed && o.uid && o.uid.toLowerCase().startsWith(typed) ? o.uid : null;
    if (o.cluster && this.anyCluster) this.cluster.value = o.cluster;
    this.name.value = o.name;
    this.namespace.value = o.namespace || "";
    this.resource.value = joinResource(o.resource, o.group);
    this.hideSuggestions();
    this.submit.focus();
  }

  showError(text) {
    this.message.className = "message error";
    this.message.textContent = text;
  }

  showInfo(text) {
    this.message.className = "message";
    this.message.textContent = text;
  }

  timeRange() {
    const preset = PRESETS.find(([v]) => v === this.range.value);
    if (this.range.value === "custom") {
      const start = parseLocalUtc(this.start.value);
      const end = parseLocalUtc(this.end.value);
      if (this.start.value && start === null) throw new Error("The start time is not a valid date.");
      if (this.end.value && end === null) throw new Error("The end time is not a valid date.");
      if (start !== null && end !== null && end <= start) throw new Error("The end of the time range must be after its start.");
      return { start, end };
    }
    if (!preset || preset[2] === null) return { start: null, end: null };
    const now = Date.now() * 1000;
    return { start: now - preset[2] * 1e6, end: now };
  }

  async search() {
    this.hideSuggestions();
    this.results.replaceChildren();
    if (UID.test(this.name.value.trim())) await this.takeUid(this.name.value.trim());
    const cluster = this.cluster.value;
    const name = this.name.value.trim();
    if (!cluster && !this.anyCluster) return this.showError("Pick a cluster.");
    if (!this.resource.value.trim()) return this.showError("Type a resource (deploy, po, …) or pick a name from the suggestions.");
    if (!name) return this.showError("Type the object's name.");
    let range;
    try {
      range = this.timeRange();
    } catch (err) {
      return this.showError(err.message);
    }
    const mode = this.modeIdFor(this.mode.value, this.scope.value);
    const resource = this.resource.value.trim();
    const namespace = this.namespace.value.trim();
    // remember the form in the URL so "back" from the trace returns to it filled in
    const formState = { cluster, resource, namespace: namespace || undefined, name, range: this.range.value };
    if (this.range.value === "custom") Object.assign(formState, { start: this.start.value || undefined, end: this.end.value || undefined });
    Object.assign(formState, { mode: this.mode.value, scope: this.scope.value });
    history.replaceState(null, "", apiUrl("/search", formState));

    this.submit.disabled = true;
    this.showInfo("Looking up…");
    let body;
    try {
      body = await getJSON(
        apiUrl("/api/kelemetry/lookup", {
          cluster,
          resource,
          uid: this.uid || undefined,
          namespace: namespace || undefined,
          name,
          start: range.start === null ? undefined : Math.floor(range.start),
          end: range.end === null ? undefined : Math.floor(range.end),
          mode,
        }),
      );
    } catch (err) {
      this.submit.disabled = false;
      // The server's reason says what was meant and which range has activity; a generic hint only
      // when it does not.
      const said = /did you mean|try /.test(err && err.message ? err.message : "");
      const hint = err instanceof ApiError && err.status === 404 && this.range.value !== "all" && !said ? " Try a longer time range." : "";
      this.showError(describeError(err) + hint);
      if (err instanceof ApiError && err.status === 404) this.offerFixes(err.message);
      return;
    }
    this.submit.disabled = false;
    const hits = body.data || [];
    if (!hits.length) return this.showError("Nothing matches.");
    if (hits.length === 1) {
      this.showInfo("Opening the trace…");
      window.location.assign(`/trace/${hits[0].viewId}`);
      return;
    }
    this.showInfo(`${hits.length} objects match; pick one:`);
    this.results.replaceChildren(
      h(
        "ul",
        { class: "matches" },
        hits.map((hit) => {
          const o = hit.object || {};
          const res = joinResource(o.resource || "", o.group || "");
          return h(
            "li",
            {},
            h("a", { href: `/trace/${hit.viewId}` }, `${o.kind || res} ${o.namespace ? o.namespace + "/" : ""}${o.name}`),
            h("span", { class: "muted" }, ` ${res} · cluster ${o.cluster || cluster}${o.uid ? ` · uid ${o.uid}` : ""}`),
          );
        }),
      ),
    );
  }

  /** Buttons for what a 404's reason proposes: each object it meant, and the range with activity. */
  offerFixes(reason) {
    const fixes = [];
    const meant = reason.split("did you mean ")[1] || "";
    const object = /([a-z0-9.-]+)\/(\S+?)(?: in namespace (\S+))? \(cluster ([^)]+)\)/g;
    for (const [, resource, name, namespace, cluster] of meant.matchAll(object)) {
      fixes.push(
        h("button", { type: "button", class: "fix", dataset: { name, resource } }, `${resource}/${namespace ? `${namespace}/` : ""}${name} (${cluster})`),
      );
      fixes[fixes.length - 1].addEventListener("click", () => {
        if ([...this.cluster.options].some((opt) => opt.value === cluster)) this.cluster.value = cluster;
        this.resource.value = resource;
        this.namespace.value = namespace || "";
        this.name.value = name;
        this.uid = null;
        this.search();
      });
    }
    const range = /start=(\S+?)&end=(\S+?) \(API\)/.exec(reason);
    if (range) {
      const [start, end] = [Date.parse(range[1]), Date.parse(range[2])];
      if (Number.isFinite(start) && Number.isFinite(end)) {
        const button = h("button", { type: "button", class: "fix range-fix" }, `search ${range[1]} – ${range[2]}`);
        button.addEventListener("click", () => {
          this.range.value = "custom";
          this.customBox.hidden = false;
          this.start.value = toLocalUtc(start * 1000);
          this.end.value = toLocalUtc(end * 1000);
          this.search();
        });
        fixes.push(button);
      }
    }
    if (fixes.length) this.results.replaceChildren(h("div", { class: "fixes" }, h("span", { class: "muted" }, "Try: "), ...fixes));
  }

  /** A uid typed as the name: the form filled with its object, to open that incarnation. */
  async takeUid(uid) {
    let rows = [];
    try {
      rows = (await getJSON(apiUrl("/api/kelemetry/objects", { q: uid, limit: 1 }))).data || [];
    } catch {
      return; // the lookup that follows says what is wrong
    }
    const o = rows.find((row) => (row.uid || "").toLowerCase() === uid.toLowerCase());
    if (!o) return;
    if ([...this.cluster.options].some((opt) => opt.value === o.cluster)) this.cluster.value = o.cluster;
    this.resource.value = joinResource(o.resource, o.group);
    this.namespace.value = o.namespace || "";
    this.name.value = o.name;
    this.uid = o.uid;
  }

  modeIdFor(mode, scope) {
    const list = (this.modes && this.modes.modes) || [];
    const found = list.find((m) => m.mode === mode && m.scope === scope);
    return found ? found.id : modeId(mode, scope);
  }
}
