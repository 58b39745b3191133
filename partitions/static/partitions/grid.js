// The job page's partition grid (partitions/grid.py): a click on a cell lists its partitions in the partition
// table, by loading the page with ?pseq=<first>-<last> (the live poll sends the same query string, so the filter
// holds while the sections are re-rendered). One listener on the document: the grid itself is replaced every poll.
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    const cell = event.target.closest("[data-partition-grid] [data-seq]");
    if (!cell) return;
    const params = new URLSearchParams(window.location.search);
    params.set("pseq", cell.getAttribute("data-seq"));
    params.delete("pp");
    window.location.assign(window.location.pathname + "?" + params.toString() + "#pj-partitions");
  });
})();
