// The live alert page: keeps the server-rendered page current from /console/alerts/{id}/events (SSE).
// No framework, no external URL. Without JavaScript the page still works (reload to refresh).
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root || !window.EventSource) { return; }
  var en = document.documentElement.lang === "en";
  var status = document.getElementById("live-status");
  var skew = 0; // server clock minus ours, seconds
  var due = null;
  var source = null;
  var ended = false;

  function tr(zh, english) { return en ? english : zh; }
  function text(el, value) { if (el && el.textContent !== String(value)) { el.textContent = String(value); } }
  function el(tag, cls, content) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (content !== undefined) { node.textContent = content; }
    return node;
  }
  function tel(phone) {
    var a = el("a", "tel", phone);
    a.href = "tel:" + phone;
    return a;
  }
  function show(message) {
    if (!status) { return; }
    status.hidden = !message;
    status.textContent = message || "";
  }

  function updateVillages(villages) {
    var body = document.querySelector("#villages tbody");
    if (!body) { return; }
    villages.forEach(function (v) {
      var row = body.querySelector('tr[data-village="' + v.code + '"]');
      if (!row) { return; }
      var done = v.confirmed + v.acknowledged;
      text(row.querySelector('[data-field="confirmed"]'), done);
      text(row.querySelector('[data-field="unreached"]'), v.unreached);
      text(row.querySelector('[data-field="speakers_played"]'), v.speakers_played);
      text(row.querySelector('[data-field="speakers_silent"]'), v.speakers_silent);
      text(row.querySelector('[data-field="speakers_offline"]'), v.speakers_offline);
      text(row.querySelector('[data-field="coverage_text"]'), done + "/" + v.must_reach_total);
      var fill = row.querySelector('[data-field="coverage"]');
      if (fill) { fill.style.width = Math.floor(v.coverage * 100) + "%"; }
      row.className = v.unreached ? "open" : "done";
      ["unreached", "speakers_silent", "speakers_offline"].forEach(function (f) {
        var cell = row.querySelector('[data-field="' + f + '"]');
        if (cell) { cell.className = v[f] ? "hot" : ""; }
      });
    });
  }

  function updateUnreached(view) {
    var list = document.getElementById("unreached");
    if (!list) { return; }
    var items = document.createDocumentFragment();
    view.unreached.forEach(function (u) {
      var li = el("li");
      li.setAttribute("data-resident", u.resident_id);
      li.appendChild(el("span", "who", u.name || u.resident_id));
      u.tags.forEach(function (tag) { li.appendChild(el("span", "tag", tag)); });
      li.appendChild(el("span", "where", u.village_name || u.village));
      li.appendChild(el("span", "state", u.state_name));
      if (u.escalated) { li.appendChild(el("span", "tag esc", tr("已上报", "escalated"))); }
      if (u.phone) { li.appendChild(tel(u.phone)); }
      var r = u.responsible;
      var owner = el("span", "owner", tr("负责人：", "Responsible: ") + (r.name || "—") + (r.role_name ? (en ? " (" + r.role_name + ")" : "（" + r.role_name + "）") : "") + " ");
      if (r.phone) { owner.appendChild(tel(r.phone)); }
      li.appendChild(owner);
      items.appendChild(li);
    });
    if (!view.unreached.length) { items.appendChild(el("li", "none", tr("全部必达人员已确认。", "Every must-reach resident is confirmed."))); }
    list.replaceChildren(items);
    text(document.querySelector('[data-field="unreached_total"]'), en ? "(" + view.unreached_total + ")" : "（" + view.unreached_total + "）");
  }

  function updateChannels(view) {
    var body = document.querySelector("#channels tbody");
    if (!body) { return; }
    var rows = document.createDocumentFragment();
    Object.keys(view.channels).forEach(function (ledger) {
      var c = view.channels[ledger];
      var tr_ = el("tr");
      tr_.setAttribute("data-ledger", ledger);
      tr_.appendChild(el("td", "", view.channel_names[ledger] || ledger));
      ["queued", "sent", "delivered", "failed"].forEach(function (f) {
        var td = el("td", "", String(c[f] || 0));
        td.setAttribute("data-field", f);
        tr_.appendChild(td);
      });
      rows.appendChild(tr_);
    });
    if (Object.keys(view.channels).length) { body.replaceChildren(rows); }
  }

  function updateNextStep(view) {
    var box = document.querySelector("#next-step .next-body");
    if (!box) { return; }
    var s = view.next_step;
    due = s ? s.due_at : null;
    skew = view.generated_at - Date.now() / 1000;
    box.replaceChildren();
    if (!s) {
      var none = el("p", "", tr("没有待执行的升级步骤。", "No escalation step is pending."));
      none.setAttribute("data-field", "none");
      box.appendChild(none);
      return;
    }
    var p = el("p");
    var strong = el("strong", "", en ? "Step " + s.step + " of " + s.of : "第 " + s.step + "/" + s.of + " 级");
    strong.setAttribute("data-field", "step");
    p.appendChild(strong);
    p.appendChild(document.createTextNode(tr(" · 通知 ", " · notifies ") + s.role_name + (en ? " (" + s.channels.join(", ") + ")" : "（" + s.channels.join("、") + "）") + tr(" · 于 ", " · at ") + s.due_beijing + tr(" · 倒计时 ", " · in ")));
    var count = el("span", "countdown", String(view.next_step_countdown));
    count.setAttribute("data-field", "countdown");
    p.appendChild(count);
    p.appendChild(document.createTextNode(tr(" 秒", " s")));
    box.appendChild(p);
    var ul = el("ul", "callees");
    ul.setAttribute("data-field", "callees");
    s.callees.forEach(function (c) {
      var li = el("li", "", c.name + (en ? " (" + c.role_name + ") " : "（" + c.role_name + "）"));
      if (c.phone) { li.appendChild(tel(c.phone)); }
      if (c.villages && c.villages.length) { li.appendChild(document.createTextNode(" · " + c.villages.join(en ? ", " : "、"))); }
      ul.appendChild(li);
    });
    if (!s.callees.length) { ul.appendChild(el("li", "", tr("没有需要通知的人（各村已达标）。", "Nobody to call (every village is at its target)."))); }
    box.appendChild(ul);
  }

  function updateCadres(view) {
    var table = document.getElementById("cadres");
    if (!table || !view.cadres) { return; }
    var csrf = (document.querySelector('meta[name="csrf"]') || {}).content || "";
    var resend = table.getAttribute("data-resend") === "1" && view.alert.state === "issued";
    var rows = document.createDocumentFragment();
    view.cadres.forEach(function (c) {
      var row = el("tr");
      row.setAttribute("data-contact", c.contact_id);
      row.appendChild(el("td", "", c.name));
      var phone = el("td");
      if (c.phone) { phone.appendChild(tel(c.phone)); }
      row.appendChild(phone);
      var done = el("td", "", c.done + "/" + c.total);
      done.setAttribute("data-field", "done");
      row.appendChild(done);
      var action = el("td");
      if (resend) {
        var form = el("form", "inline");
        form.method = "post";
        form.action = table.getAttribute("data-action");
        [["csrf", csrf], ["contact_id", c.contact_id], ["click", click()]].forEach(function (pair) {
          var input = el("input");
          input.type = "hidden";
          input.name = pair[0];
          input.value = pair[1];
          form.appendChild(input);
        });
        var button = el("button", "button resend", tr("补发任务链接", "Resend link"));
        button.type = "submit";
        form.appendChild(button);
        action.appendChild(form);
      }
      row.appendChild(action);
      rows.appendChild(row);
    });
    table.querySelector("tbody").replaceChildren(rows);
  }

  function click() {
    // One token per button as drawn: pressing it twice (a double click, a resent form) sends once.
    var bytes = new Uint8Array(8);
    window.crypto.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }

  function tick() {
    var count = document.querySelector('#next-step [data-field="countdown"]');
    if (!count || due === null) { return; }
    var left = Math.max(0, Math.round(due - (Date.now() / 1000 + skew)));
    text(count, left);
  }

  function apply(view) {
    var state = document.getElementById("alert-state");
    if (state) {
      text(state, view.alert.state_name);
      state.setAttribute("data-state", view.alert.state);
      state.className = "live-state state-" + view.alert.state;
    }
    var m = view.must_reach;
    text(document.querySelector('[data-field="must_total"]'), m.total);
    text(document.querySelector('[data-field="must_done"]'), m.confirmed + m.acknowledged);
    text(document.querySelector('[data-field="must_open"]'), view.unreached_total);
    text(document.querySelector('[data-field="must_escalated"]'), m.escalated);
    updateVillages(view.villages);
    updateUnreached(view);
    updateChannels(view);
    updateNextStep(view);
    updateCadres(view);
    text(document.getElementById("live-updated"), view.generated_beijing);
    if (view.alert.state !== "issued") {
      var form = document.getElementById("cancel-form");
      if (form) { form.hidden = true; }
    }
  }

  function connect() {
    source = new EventSource(root.getAttribute("data-events"));
    source.addEventListener("snapshot", function (e) {
      show("");
      try { apply(JSON.parse(e.data)); } catch (err) { /* a bad frame: the next one repairs the page */ }
    });
    source.addEventListener("alive", function (e) {
      show("");
      try { text(document.getElementById("live-updated"), JSON.parse(e.data).clock); } catch (err) { /* ignore */ }
    });
    source.addEventListener("end", function () {
      ended = true;
      source.close();
      show(tr("预警已结束，页面不再自动更新。", "The alert has ended; the page no longer updates."));
    });
    source.onerror = function () {
      if (ended) { return; }
      // EventSource reconnects by itself (the server asks for 3 s); say so meanwhile.
      show(tr("连接中断，正在重连…", "Connection lost, reconnecting…"));
      if (source.readyState === EventSource.CLOSED) { setTimeout(connect, 3000); }
    };
    source.onopen = function () { show(""); };
  }

  var box = document.querySelector("#next-step .next-body");
  if (box && box.getAttribute("data-due")) {
    due = parseFloat(box.getAttribute("data-due"));
    skew = parseFloat(box.getAttribute("data-generated")) - Date.now() / 1000;
  }
  setInterval(tick, 1000);
  connect();
})();
