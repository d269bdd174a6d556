// View IDs: "ff" + 8 hex mode id + "e1e3e7" + 16 hex. Mode id digit 1 = base mode, digit 2 = scope,
// digits 3-4 = depth limit (00 = default), digits 5-8 = 0000.

export const MODES = ["tracing", "grouped", "tree", "timeline"];
export const SCOPES = ["object", "ancestors", "children", "full"];

const MODE_DIGIT = { tree: "0", timeline: "1", tracing: "2", grouped: "3" };
const SCOPE_DIGIT = { object: "0", full: "1", ancestors: "2", children: "4" };

export const SCOPE_LABELS = {
  object: "object only",
  ancestors: "with ancestors",
  children: "with children",
  full: "full tree",
};

const VIEW_ID = /^ff[0-9a-f]{8}e1e3e7[0-9a-f]{16}$/;

export function isViewId(id) {
  return VIEW_ID.test(id);
}

/** The 8-hex mode id for a base mode and scope, keeping a depth (2 hex digits, "00" = default). */
export function modeId(mode, scope, depthHex = "00") {
  const m = MODE_DIGIT[mode];
  const s = SCOPE_DIGIT[scope];
  if (m === undefined || s === undefined) throw new Error(`unknown mode ${mode} / scope ${scope}`);
  return `${m}${s}${depthHex}0000`;
}

/** {mode, scope, depthHex} of an 8-hex mode id, or null when it is not one. */
export function parseModeId(id) {
  if (!/^[0-9a-f]{8}$/.test(id || "")) return null;
  const mode = Object.keys(MODE_DIGIT).find((k) => MODE_DIGIT[k] === id[0]);
  const scope = Object.keys(SCOPE_DIGIT).find((k) => SCOPE_DIGIT[k] === id[1]);
  if (!mode || !scope) return null;
  return { mode, scope, depthHex: id.slice(2, 4) };
}

/** The same view with another mode id (hex characters [2:10] replaced). */
export function withModeId(viewId, newModeId) {
  return viewId.slice(0, 2) + newModeId + viewId.slice(10);
}

/** A scope's label: the bracketed part of the API's mode names ("tracing [full tree]"), else ours. */
export function scopeLabel(modeList, scope) {
  for (const m of modeList || []) {
    if (m.scope !== scope || typeof m.name !== "string") continue;
    const bracket = /\[(.+)\]\s*$/.exec(m.name);
    if (bracket) return bracket[1];
  }
  return SCOPE_LABELS[scope] || scope;
}
