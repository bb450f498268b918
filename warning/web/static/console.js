/* Shared helpers of the console pages: JSON requests with the session's CSRF token, a server-sent
   events helper that reconnects, clickable table rows, and the reach estimate table (#estimate).
   Plain ES5 for old Android WebViews: no build step, no library, nothing from outside this server. */
(function () {
  "use strict";
  var W = window.warning = window.warning || {};

  W.csrf = function () {
    var meta = document.querySelector('meta[name="csrf"]');
    return meta ? meta.getAttribute("content") : "";
  };

  /* POST `body` as JSON; done(status, parsedJsonOrNull). Same-origin, so the session cookie goes too. */
  W.postJSON = function (url, body, done) {
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url, true);
    xhr.setRequestHeader("Content-Type", "application/json");
    xhr.setRequestHeader("X-CSRF-Token", W.csrf());
    xhr.setRequestHeader("Accept", "application/json");
    xhr.onreadystatechange = function () {
      if (xhr.readyState !== 4) { return; }
      var parsed = null;
      try { parsed = JSON.parse(xhr.responseText); } catch (e) { parsed = null; }
      done(xhr.status, parsed);
    };
    xhr.send(JSON.stringify(body));
    return xhr;
  };

  /* EventSource with reconnect: handlers is {eventName: fn(data)}, onState(true|false) says whether
     the stream is connected. Returns a function that closes it. */
  W.stream = function (url, handlers, onState) {
    var source = null, closed = false, delay = 1000;
    function open() {
      if (closed || !window.EventSource) { return; }
      source = new EventSource(url);
      source.onopen = function () { delay = 1000; if (onState) { onState(true); } };
      source.onerror = function () {
        if (onState) { onState(false); }
        source.close();
        if (!closed) { window.setTimeout(open, delay); delay = Math.min(delay * 2, 15000); }
      };
      for (var name in handlers) {
        if (handlers.hasOwnProperty(name)) {
          source.addEventListener(name, (function (fn) {
            return function (event) {
              var data = null;
              try { data = JSON.parse(event.data); } catch (e) { data = event.data; }
              fn(data);
            };
          })(handlers[name]));
        }
      }
    }
    open();
    return function () { closed = true; if (source) { source.close(); } };
  };

  W.format = function (template, params) {
    return String(template).replace(/\{(\w+)\}/g, function (all, key) {
      return params.hasOwnProperty(key) ? String(params[key]) : all;
    });
  };

  W.words = function (id) {
    var node = document.getElementById(id);
    if (!node) { return {}; }
    try { return JSON.parse(node.textContent || node.innerText || "{}"); } catch (e) { return {}; }
  };

  W.duration = function (seconds, words) {
    var s = Math.max(0, Math.round(seconds || 0));
    if (s < 60) { return W.format(words.seconds || "{s} s", {s: s}); }
    return W.format(words.minutes || "{m} min {s} s", {m: Math.floor(s / 60), s: s % 60});
  };

  W.setText = function (node, text) {
    if (node) { node.textContent = text; }
  };

  /* Fill #estimate's cells from the estimate API's answer. */
  W.fillEstimate = function (table, doc, words) {
    function cell(name, text) {
      var node = table.querySelector('[data-field="' + name + '"]');
      W.setText(node, text);
    }
    var speakers = doc.speakers || {online: 0, total: 0};
    cell("residents", String(doc.residents));
    cell("must_reach", String(doc.must_reach));
    cell("phones", String(doc.phones));
    cell("speakers_online", speakers.online + " / " + speakers.total);
    cell("expected_seconds", W.duration(doc.expected_seconds, words));
  };

  function rowLinks() {
    var rows = document.querySelectorAll("tr[data-href]");
    for (var i = 0; i < rows.length; i++) {
      rows[i].addEventListener("click", function (event) {
        var target = event.target || event.srcElement;
        if (target && target.tagName === "A") { return; }
        window.location.href = this.getAttribute("data-href");
      });
    }
  }

  /* A page with <table id="estimate" data-body='…alert JSON…'> asks for its estimate once. */
  function pageEstimate() {
    var table = document.getElementById("estimate");
    var body = table && table.getAttribute("data-body");
    if (!body) { return; }
    var words = W.words("estimate-words");
    var status = document.getElementById("estimate-status");
    W.postJSON("/api/v1/alerts/estimate", JSON.parse(body), function (code, doc) {
      if (code === 200 && doc) {
        W.fillEstimate(table, doc, words);
        W.setText(status, "");
      } else {
        var message = doc && doc.error ? doc.error.message : String(code);
        W.setText(status, W.format(words.failed || "{e}", {e: message}));
      }
    });
  }

  /* Buttons marked data-needs-reason (return, reject) refuse to submit without a reason (#reason). */
  function reasonCheck() {
    var buttons = document.querySelectorAll("button[data-needs-reason]");
    var words = W.words("estimate-words");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].addEventListener("click", function (event) {
        var reason = document.getElementById("reason");
        var shown = document.querySelector('[data-error-for="reason"]');
        if (reason && !reason.value.replace(/\s/g, "")) {
          event.preventDefault();
          if (shown) { shown.textContent = words.reason_needed || ""; shown.hidden = false; }
          reason.focus();
        }
      });
    }
  }

  function ready(fn) {
    if (document.readyState !== "loading") { fn(); } else { document.addEventListener("DOMContentLoaded", fn); }
  }
  ready(rowLinks);
  ready(pageEstimate);
  ready(reasonCheck);
})();
