// One line of a diff as the query side renders it: `path old -> new`.

// A diff path: identifiers and dots, [index], ["quoted key"] (which may hold spaces), and list items
// named by their merge key: [type=Available], [name="odd value"].
const DIFF_PATH = /^((?:[^\s[\]"]|\[\d+\]|\["(?:[^"\\]|\\.)*"\]|\[[^\]="\s]+=(?:"(?:[^"\\]|\\.)*"|[^\]"\s]*)\])+) (.*)$/s;
const ABBREVIATED = /\.\.\.\(\d+ chars\)$/;

function isJsonish(text) {
  if (ABBREVIATED.test(text)) return true;
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Split one `path old -> new` line; null when the line is not one. */
export function parseDiffLine(line) {
  const m = DIFF_PATH.exec(line);
  if (!m) return null;
  const rest = m[2];
  const cuts = [];
  for (let i = rest.indexOf(" -> "); i !== -1; i = rest.indexOf(" -> ", i + 1)) cuts.push(i);
  if (!cuts.length) return null;
  // values are JSON (possibly abbreviated); with several arrows pick the first cut leaving JSON on the left
  const cut = cuts.length === 1 ? cuts[0] : cuts.find((i) => isJsonish(rest.slice(0, i))) ?? cuts[0];
  return { path: m[1], old: rest.slice(0, cut), new: rest.slice(cut + 4) };
}
