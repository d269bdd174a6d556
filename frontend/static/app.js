// Entry point: picks the page from the URL. "/" and "/search" show the search form,
// "/trace/<viewId>" the trace, "/changes" what changed, "/object?..." the object at a moment,
// "/explain?..." why an object is like this.

import { showChangesPage } from "./changes.js";
import { showExplainPage } from "./explain.js";
import { showSearchPage } from "./search.js";
import { showTracePage } from "./trace.js";
import { showObjectPage } from "./objectat.js";
import { h } from "./util.js";

async function main() {
  const root = document.getElementById("app");
  const path = window.location.pathname;
  const params = new URLSearchParams(window.location.search);
  document.body.dataset.state = "loading";
  try {
    const trace = /^\/trace\/([^/]*)\/?$/.exec(path);
    if (trace) {
      document.body.dataset.page = "trace";
      await showTracePage(root, decodeURIComponent(trace[1]), params);
    } else if (/^\/changes\/?$/.test(path)) {
      document.body.dataset.page = "changes";
      await showChangesPage(root, params);
    } else if (path === "/object") {
      document.body.dataset.page = "object";
      await showObjectPage(root, params);
    } else if (path === "/explain") {
      document.body.dataset.page = "explain";
      await showExplainPage(root, params);
    } else {
      document.body.dataset.page = "search";
      await showSearchPage(root, params);
    }
  } catch (err) {
    // a bug of ours must still leave a readable page
    console.error(err);
    root.replaceChildren(
      h(
        "div",
        { class: "page-error" },
        h("h1", {}, "Something went wrong"),
        h("p", { class: "error", role: "alert", id: "error-message" }, err && err.message ? err.message : String(err)),
        h("p", {}, h("a", { href: "/search" }, "← Search for an object")),
      ),
    );
    document.body.dataset.state = "error";
  }
}

main();
