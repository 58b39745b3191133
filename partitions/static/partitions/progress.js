// Live job progress for the admin: while any job on the page is active, poll the progress JSON (job list)
// or the job's live JSON (job page) and copy its pre-formatted texts and sections into the page.
// No dependencies.
//
// Markup it reads (rendered by partitions/admin/display.py and the templates):
//   [data-pj-progress-url]                      where to poll (+ data-pj-interval in ms)
//   [data-pj-live-url]                          the job page's live JSON (fields + sections)
//   [data-pj-section=name]                      replaced by sections[name] (job page)
//   .pj-progress[data-job-id][data-job-active]  the bar; rect[data-seg] segments
//   [data-job-id][data-job-field=name]          text replaced by job.fields[name]
//   [data-job-id][data-job-status]              the status badge
//   [data-job-id][data-job-control=name]        a control (action, throttle, knob) shown only while the
//                                               live JSON's job.controls names it (job page)
(function () {
  "use strict";

  function each(selector, fn) {
    Array.prototype.forEach.call(document.querySelectorAll(selector), fn);
  }

  function apply(id, job) {
    const sel = '[data-job-id="' + id + '"]';
    each(sel + "[data-job-field]", function (el) {
      const value = job.fields[el.getAttribute("data-job-field")];
      if (value === undefined) return;
      el.textContent = value;
      const box = el.closest("[data-job-hide-empty]");
      if (box) box.hidden = value === "";
    });
    each(sel + "[data-job-status]", function (el) {
      el.className = "pj-badge pj-status-" + job.status;
      el.textContent = job.fields.status;
    });
    each(".pj-progress" + sel, function (el) {
      el.setAttribute("data-job-active", job.active ? "1" : "0");
      const bar = el.querySelector(".pj-bar");
      if (bar) bar.setAttribute("aria-valuenow", String(job.percent));
      let x = 0;
      ["done", "failed", "skipped"].forEach(function (name) {
        const rect = el.querySelector('rect[data-seg="' + name + '"]');
        const width = job.bar[name] || 0;
        if (rect) {
          rect.setAttribute("x", x.toFixed(2));
          rect.setAttribute("width", width.toFixed(2));
        }
        x += width;
      });
    });
    if (job.controls) {  // the job page: the server decides which controls show (actions.job_controls)
      each(sel + "[data-job-control]", function (el) {
        el.hidden = job.controls.indexOf(el.getAttribute("data-job-control")) < 0;
      });
    }
  }

  // The job page polls its own live endpoint, with the page's query string (partition filter, pages), and
  // replaces every [data-pj-section] with the server's rendering, so the whole page moves together.
  function applySections(sections) {
    each("[data-pj-section]", function (el) {
      const html = sections[el.getAttribute("data-pj-section")];
      if (html !== undefined) el.innerHTML = html;
    });
  }

  function init() {
    const root = document.querySelector("[data-pj-progress-url]");
    if (!root) return;
    const liveUrl = root.getAttribute("data-pj-live-url");
    const interval = parseInt(root.getAttribute("data-pj-interval") || "2000", 10);
    const ids = [];
    each(".pj-progress[data-job-id]", function (el) {
      const id = el.getAttribute("data-job-id");
      if (ids.indexOf(id) < 0) ids.push(id);
    });
    const url = liveUrl ? liveUrl + window.location.search
      : root.getAttribute("data-pj-progress-url") + "?ids=" + ids.join(",");
    let failures = 0;
    let timer = null;

    function anyActive() {
      return document.querySelector('.pj-progress[data-job-active="1"]') !== null;
    }

    // Polling stops once every job shown is terminal; a hidden tab polls five times less often.
    function schedule() {
      window.clearTimeout(timer);
      timer = null;
      if (ids.length && anyActive() && failures < 20) {
        const slow = document.hidden ? 5 : 1;
        timer = window.setTimeout(poll, interval * slow * Math.min(1 + failures, 5));
      }
    }

    function apply_(data) {
      if (liveUrl) {
        applySections(data.sections);
        apply(ids[0], data.job);
      } else {
        Object.keys(data.jobs).forEach(function (id) { apply(id, data.jobs[id]); });
      }
    }

    function poll() {
      fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}})
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          apply_(data);
          root.setAttribute("data-pj-polls", String(parseInt(root.getAttribute("data-pj-polls") || "0", 10) + 1));
          failures = 0;
          schedule();
        })
        .catch(function () {
          failures += 1;
          schedule();
        });
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer !== null) {  // back in view: refresh now, then at the normal pace
        window.clearTimeout(timer);
        poll();
      }
    });
    schedule();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
