// The console's only script: keeps a page's live parts current by polling its JSON twin
// (main[data-poll]). Every value is set with textContent: the server's text never becomes
// markup. Without JavaScript the pages work the same, with a Refresh link.
"use strict";
(function () {
  const main = document.getElementById("main");
  const url = main && main.dataset.poll;
  if (!url) {
    return;
  }
  const interval = url.indexOf("/api/purges/") >= 0 ? 1000 : 2000;
  const shown = {};

  function fill(name, text) {
    document.querySelectorAll('[data-field="' + CSS.escape(name) + '"]').forEach(function (el) {
      if (el.textContent !== text) {
        el.textContent = text;
      }
    });
  }

  function redraw(name, rows) {
    const body = document.querySelector('tbody[data-table="' + CSS.escape(name) + '"]');
    const key = JSON.stringify(rows);
    if (!body || shown[name] === key) {
      return; // unchanged: leave screen readers' live regions quiet
    }
    shown[name] = key;
    body.replaceChildren.apply(body, rows.map(function (row) {
      const tr = document.createElement("tr");
      row.forEach(function (cell) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      });
      return tr;
    }));
  }

  async function poll() {
    try {
      const answer = await fetch(url, {credentials: "same-origin", cache: "no-store",
                                       headers: {"Accept": "application/json"}});
      if (answer.status === 401) {
        window.location.assign("/console/login");
        return;
      }
      if (answer.ok) {
        const data = await answer.json();
        Object.keys(data.fields || {}).forEach(function (k) { fill(k, data.fields[k]); });
        Object.keys(data.tables || {}).forEach(function (k) { redraw(k, data.tables[k]); });
        if (data.done) {
          main.dataset.done = "true";
          return;
        }
      }
    } catch (err) {
      // The listener may be restarting: try again at the next tick.
    }
    window.setTimeout(poll, interval);
  }

  poll();
})();
