// Tollgate's docs script: copy buttons on code blocks and search results as
// you type. Pages read and search fully without it (the search box is a
// plain form to /docs/search). Text from the server is inserted as text,
// except the snippet, which the server escaped and marked itself.
(function () {
  "use strict";
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var code = button.parentElement.querySelector("code");
      navigator.clipboard.writeText(code ? code.innerText : "").then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 1500);
      });
    });
  });

  // Signing out forgets the explorer's history and any request kept for
  // a fix, so the next person at this browser does not see them.
  document.querySelectorAll("form[action='/api/sign_out']").forEach(function (form) {
    form.addEventListener("submit", function () {
      try {
        localStorage.removeItem("tollgate.explorer.history");
        sessionStorage.removeItem("tollgate.explorer.pending");
      } catch (e) {}
    });
  });

  var input = document.getElementById("site-search-q");
  var list = document.getElementById("site-search-results");
  if (!input || !list || !window.fetch) return;
  var timer = null;
  var asked = 0;
  var active = -1;
  function close() { list.hidden = true; input.setAttribute("aria-expanded", "false"); active = -1; }
  function options() { return list.querySelectorAll("[role=option]"); }
  function mark(i) {
    var all = options();
    all.forEach(function (o, j) { o.setAttribute("aria-selected", j === i ? "true" : "false"); });
    active = i;
    if (all[i]) input.setAttribute("aria-activedescendant", all[i].id);
  }
  function show(hits, query) {
    list.textContent = "";
    hits.forEach(function (h, i) {
      var a = document.createElement("a");
      a.href = h.href;
      a.id = "search-option-" + i;
      a.setAttribute("role", "option");
      a.className = "search-option";
      var t = document.createElement("strong");
      t.textContent = h.title + (h.heading && h.heading !== h.title ? " › " + h.heading : "");
      var s = document.createElement("span");
      s.innerHTML = h.snippet_html;
      a.appendChild(t);
      a.appendChild(s);
      list.appendChild(a);
    });
    var all = document.createElement("a");
    all.href = "/docs/search?q=" + encodeURIComponent(query);
    all.className = "search-all";
    all.textContent = hits.length ? "All results" : "No results: search anyway";
    list.appendChild(all);
    list.hidden = false;
    input.setAttribute("aria-expanded", "true");
    active = -1;
  }
  input.addEventListener("input", function () {
    clearTimeout(timer);
    var query = input.value.trim();
    if (query.length < 2) { close(); return; }
    timer = setTimeout(function () {
      var mine = ++asked;
      fetch("/docs/search.json?q=" + encodeURIComponent(query), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.json() : []; })
        .then(function (hits) { if (mine === asked) show(hits, query); })
        .catch(close);
    }, 120);
  });
  input.addEventListener("keydown", function (e) {
    var all = options();
    if (e.key === "ArrowDown" && all.length) { e.preventDefault(); mark(Math.min(active + 1, all.length - 1)); }
    else if (e.key === "ArrowUp" && all.length) { e.preventDefault(); mark(Math.max(active - 1, 0)); }
    else if (e.key === "Enter" && active >= 0 && all[active]) { e.preventDefault(); window.location.href = all[active].href; }
    else if (e.key === "Escape") { close(); }
  });
  document.addEventListener("click", function (e) { if (!list.contains(e.target) && e.target !== input) close(); });
})();
