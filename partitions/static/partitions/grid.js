// The job page's partition grid (partitions/grid.py). No dependencies; listeners sit on the document, because the
// live poll (progress.js) replaces the grid every couple of seconds.
//   hover: a cell's title is worded from its data-t ("<counts>|<percent>|<attempt>/<max>|<splits>|<worker>|<bounds>",
//          counts in URGENCY order), so the page does not carry a worded title for each of up to 1,000 cells;
//   click: the page loads with ?pseq=<first>-<last>, which the partition table honours (and so does the live
//          poll, which sends the page's query string: the filter holds while the sections are re-rendered).
(function () {
  "use strict";

  const URGENCY = ["failed", "running", "pending", "cancelled", "succeeded"];
  const CELL = "[data-partition-grid] [data-seq]";

  function fields(text) {
    const out = [];
    let rest = text;
    for (let i = 0; i < 5; i += 1) {
      const at = rest.indexOf("|");
      out.push(rest.slice(0, at));
      rest = rest.slice(at + 1);
    }
    out.push(rest);  // the bounds, which may hold a "|"
    return out;
  }

  function words(cell) {
    const [counted, percent, tries, splits, worker, bounds] = fields(cell.getAttribute("data-t") || "");
    const counts = counted.split(" ").map(Number);
    const size = counts.reduce(function (a, b) { return a + b; }, 0);
    const seqs = cell.getAttribute("data-seq").replace("-", "\u2013");
    const running = counts[URGENCY.indexOf("running")];
    const head = size === 1 ? "#" + seqs + " " + cell.classList[0]
      : "#" + seqs + ": " + URGENCY.map(function (status, i) {
        return counts[i] ? counts[i].toLocaleString("en-US") + " " + status : "";
      }).filter(Boolean).join(", ");
    return [
      head,
      percent + "%",
      bounds,
      (size === 1 ? "attempt " : "attempts \u2264 ") + tries,
      worker ? "worker " + worker + (running > 1 ? " (+" + (running - 1) + " more)" : "") : "",
      splits !== "0" ? splits + " split off" : "",
    ].filter(Boolean).join(" \u00b7 ");
  }

  document.addEventListener("mouseover", function (event) {
    const cell = event.target.closest(CELL);
    if (cell && !cell.title) cell.title = words(cell);
  });

  document.addEventListener("click", function (event) {
    const cell = event.target.closest(CELL);
    if (!cell) return;
    const params = new URLSearchParams(window.location.search);
    params.set("pseq", cell.getAttribute("data-seq"));
    params.delete("pp");
    window.location.assign(window.location.pathname + "?" + params.toString() + "#pj-partitions");
  });
})();
