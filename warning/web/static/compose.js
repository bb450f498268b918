/* The compose page: the township → village tree and its search, the drill banner, the live preview
   (POST /api/v1/alerts/preview) and reach estimate (POST /api/v1/alerts/estimate) while the operator
   types, field errors next to their field, and the confirm step before submitting.
   Without this script the form still submits (no live preview then). ES5 for old WebViews. */
(function () {
  "use strict";
  var W = window.warning;
  var form = document.getElementById("compose-form");
  if (!form || !W) { return; }
  var tree = document.getElementById("area-tree");
  var words = W.words("compose-words");
  var approval = {};
  try { approval = JSON.parse(form.getAttribute("data-approval") || "{}"); } catch (e) { approval = {}; }
  var maxSegments = parseInt(form.getAttribute("data-max-segments") || "6", 10);
  var lastEstimate = null, timer = null, generation = 0, confirmed = false;
  /* The estimate counts the whole area on the server: asked again only when what it counts changes
     (areas, audiences, level, drill), not on every keystroke of the texts. */
  var estimated = "", estimating = 0;

  function $(id) { return document.getElementById(id); }
  function all(selector, root) { return (root || document).querySelectorAll(selector); }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  /* -- the area tree ------------------------------------------------------------------------ */

  function villagesOf(town) { return all('li.village input[name="areas"]', town); }

  function onTreeChange(event) {
    var input = event.target || event.srcElement;
    if (!input || input.name !== "areas") { return; }
    var town = input.parentNode;
    while (town && !(town.className && /\btownship\b/.test(town.className))) { town = town.parentNode; }
    if (!town) { return; }
    var townBox = town.querySelector("input.township-box");
    var villages = villagesOf(town), i;
    if (input === townBox) {
      for (i = 0; i < villages.length; i++) { villages[i].checked = townBox.checked; }
    } else {
      var every = true;
      for (i = 0; i < villages.length; i++) { every = every && villages[i].checked; }
      townBox.checked = every;
    }
    changed();
  }

  function pickedAreas() {
    var codes = [], towns = all("#area-tree li.township"), i, j;
    for (i = 0; i < towns.length; i++) {
      var townBox = towns[i].querySelector("input.township-box");
      if (townBox.checked) { codes.push(townBox.value); continue; }
      var villages = villagesOf(towns[i]);
      for (j = 0; j < villages.length; j++) { if (villages[j].checked) { codes.push(villages[j].value); } }
    }
    return codes;
  }

  function pickedVillages() {
    return all('#area-tree li.village input[name="areas"]:checked').length;
  }

  function summary() {
    var n = pickedVillages();
    W.setText($("area-summary"), n ? W.format(words.selected, {n: n}) : words.none);
    if (W.map) { W.map.sync(); }
  }

  function search() {
    var q = ($("area-search").value || "").replace(/^\s+|\s+$/g, "").toLowerCase();
    var towns = all("#area-tree li.township"), i, j;
    for (i = 0; i < towns.length; i++) {
      var town = towns[i];
      var townHit = !q || (town.getAttribute("data-name") + town.getAttribute("data-code")).toLowerCase().indexOf(q) >= 0;
      var villages = all("li.village", town), shown = 0;
      for (j = 0; j < villages.length; j++) {
        var v = villages[j];
        var hit = townHit || (v.getAttribute("data-name") + v.getAttribute("data-code")).toLowerCase().indexOf(q) >= 0;
        v.style.display = hit ? "" : "none";
        if (hit) { shown++; }
      }
      town.style.display = shown || townHit ? "" : "none";
    }
  }

  /* -- the draft as the API's JSON ----------------------------------------------------------- */

  function value(id) { var node = $(id); return node ? node.value : ""; }

  function pad(n) { return n < 10 ? "0" + n : String(n); }

  function expiresISO(text) {
    text = (text || "").replace(/^\s+|\s+$/g, "");
    if (!text) { return null; }
    if (/^\d+(\.\d+)?$/.test(text)) {
      var when = new Date(new Date().getTime() + parseFloat(text) * 3600 * 1000);
      return when.toISOString();
    }
    var m = /^(\d{4})[-\/](\d{1,2})[-\/](\d{1,2})[ T](\d{1,2}):(\d{2})$/.exec(text);
    if (m) { return m[1] + "-" + pad(+m[2]) + "-" + pad(+m[3]) + "T" + pad(+m[4]) + ":" + m[5] + ":00+08:00"; }
    return text; /* let the API say what is wrong with it */
  }

  function level() {
    var checked = form.querySelector('input[name="level"]:checked');
    return checked ? checked.value : "";
  }

  function draft() {
    var audiences = [], boxes = all('#audiences input[name="audiences"]:checked'), i;
    for (i = 0; i < boxes.length; i++) { audiences.push(boxes[i].value); }
    return {
      event: value("event").replace(/^\s+|\s+$/g, ""),
      level: level(),
      areas: pickedAreas(),
      audiences: audiences,
      exercise: $("exercise").checked,
      headline: value("headline"),
      description: value("description"),
      instruction: value("instruction"),
      expires: expiresISO(value("expires"))
    };
  }

  /* -- errors next to fields ------------------------------------------------------------------ */

  function clearErrors() {
    var shown = all("[data-error-for]"), i;
    for (i = 0; i < shown.length; i++) { shown[i].textContent = ""; shown[i].hidden = true; }
    var bad = all(".invalid"), j;
    for (j = 0; j < bad.length; j++) { bad[j].className = bad[j].className.replace(/\s*\binvalid\b/, ""); }
  }

  function showError(field, message) {
    var box = form.querySelector('[data-error-for="' + field + '"]') || $("form-error");
    box.textContent = message;
    box.hidden = false;
    var input = $(field);
    if (input && !/\binvalid\b/.test(input.className)) { input.className += " invalid"; }
  }

  /* -- preview and estimate ------------------------------------------------------------------ */

  function needsApproval(body) {
    var row = approval[body.level];
    return !!(row && row[body.exercise ? "exercise" : "actual"]);
  }

  function hint() {
    var body = draft();
    W.setText($("approval-hint"), needsApproval(body) ? words.hint_approval : words.hint_direct);
    $("drill-banner").hidden = !body.exercise;
  }

  function label(kind, name) { return (words[kind] && words[kind][name]) || name; }

  function previewRow(row) {
    var node = el("div", "preview-row");
    node.setAttribute("data-audience", row.audience);
    node.setAttribute("data-channel", row.channel);
    var head = el("div", "preview-head");
    head.appendChild(el("strong", "", label("audience", row.audience) + " · " + label("channel", row.channel)));
    head.appendChild(el("span", "count", W.format(words.recipients, {n: row.recipients})));
    if (row.no_address) { head.appendChild(el("span", "count warn", W.format(words.no_address, {n: row.no_address}))); }
    if (row.channel === "sms") {
      head.appendChild(el("span", "count" + (row.segments > maxSegments ? " bad" : ""),
        W.format(words.segments, {n: row.segments, enc: row.encoding})));
    }
    node.appendChild(head);
    if (row.channel === "sms" && row.segments > maxSegments) {
      node.appendChild(el("p", "warning", W.format(words.too_long, {max: maxSegments})));
    }
    if (!row.recipients) { node.appendChild(el("p", "warning", words.zero)); }
    for (var i = 0; i < row.texts.length; i++) {
      var text = row.texts[i];
      if (!text.text || (i > 0 && !text.recipients)) { continue; }
      var body = el("pre", "text", text.text);
      body.setAttribute("lang", text.language);
      node.appendChild(body);
    }
    return node;
  }

  function showPreview(doc) {
    var box = $("preview");
    box.innerHTML = "";
    for (var i = 0; i < doc.rows.length; i++) { box.appendChild(previewRow(doc.rows[i])); }
  }

  function failed(status, doc, where, quiet) {
    var error = doc && doc.error;
    if (status === 400 && error && error.field) {
      if (!quiet || (error.field !== "headline" && error.field !== "instruction")) { showError(error.field, error.message); }
      return;
    }
    W.setText(where, W.format(words.failed, {e: error ? error.message : status}));
  }

  function run(keepErrors) {
    var body = draft(), mine = ++generation;
    if (keepErrors !== true) { clearErrors(); }
    hint();
    if (!body.event || !body.areas.length || !body.audiences.length) { return; }
    var key = JSON.stringify([body.areas, body.audiences, body.level, body.exercise]);
    if (key !== estimated) {
      var asked = ++estimating;
      estimated = key;
      W.setText($("estimate-status"), words.loading);
      W.postJSON("/api/v1/alerts/estimate", body, function (status, doc) {
        if (asked !== estimating) { return; }
        if (status === 200 && doc) {
          lastEstimate = doc;
          W.fillEstimate($("estimate"), doc, words);
          W.setText($("estimate-status"), "");
        } else {
          estimated = "";  /* ask again next time */
          failed(status, doc, $("estimate-status"), true);
        }
      });
    }
    if (!body.headline.replace(/\s/g, "") || !body.instruction.replace(/\s/g, "")) { return; }
    W.postJSON("/api/v1/alerts/preview", body, function (status, doc) {
      if (mine !== generation) { return; }
      if (status === 200 && doc) { showPreview(doc); } else { failed(status, doc, $("preview"), false); }
    });
  }

  function changed() {
    summary();
    hint();
    confirmed = false;
    if (timer) { window.clearTimeout(timer); }
    timer = window.setTimeout(run, 400);
  }

  /* -- the confirm step ------------------------------------------------------------------------ */

  function fact(list, term, text) {
    list.appendChild(el("dt", "", term));
    list.appendChild(el("dd", "", text));
  }

  function areaNames() {
    var names = [], towns = all("#area-tree li.township"), i, j;
    for (i = 0; i < towns.length; i++) {
      if (towns[i].querySelector("input.township-box").checked) { names.push(towns[i].getAttribute("data-name")); continue; }
      var villages = all("li.village", towns[i]);
      for (j = 0; j < villages.length; j++) {
        if (villages[j].querySelector("input").checked) { names.push(villages[j].getAttribute("data-name")); }
      }
    }
    return names.join("、");
  }

  function confirmStep(event) {
    if (confirmed) { return; }
    if (event.preventDefault) { event.preventDefault(); }
    var body = draft(), list = $("confirm-facts");
    list.innerHTML = "";
    var levelBox = form.querySelector('input[name="level"]:checked');
    fact(list, words.kind, body.exercise ? words.drill : words.actual);
    fact(list, words.event, body.event);
    fact(list, words.level, levelBox ? levelBox.parentNode.textContent.replace(/^\s+|\s+$/g, "") : "");
    fact(list, words.areas, areaNames() || words.none);
    if (lastEstimate) {
      fact(list, words.reach, W.format(words.reach_line, {
        residents: lastEstimate.residents, must_reach: lastEstimate.must_reach, phones: lastEstimate.phones,
        online: lastEstimate.speakers.online, total: lastEstimate.speakers.total,
        time: W.duration(lastEstimate.expected_seconds, words)
      }));
    }
    W.setText($("confirm-approval"), needsApproval(body) ? words.needs_approval : words.direct);
    $("confirm").className = "confirm" + (body.exercise ? " drill" : " level-" + body.level);
    $("confirm").hidden = false;
    $("confirm-submit").focus();
    return false;
  }

  form.addEventListener("submit", confirmStep);
  $("confirm-submit").addEventListener("click", function () {
    confirmed = true;
    $("confirm-submit").disabled = true;
    form.submit();
  });
  $("confirm-back").addEventListener("click", function () { $("confirm").hidden = true; });

  /* -- wiring ------------------------------------------------------------------------------------ */

  if (tree) { tree.addEventListener("change", onTreeChange); }
  $("area-search").addEventListener("input", search);
  $("area-search").addEventListener("keydown", function (event) { if (event.keyCode === 13) { event.preventDefault(); } });
  form.addEventListener("input", function (event) {
    var target = event.target || event.srcElement;
    if (target && target.id !== "area-search") { changed(); }
  });
  form.addEventListener("change", function (event) {
    var target = event.target || event.srcElement;
    if (target && target.id !== "area-search" && target.name !== "areas") { changed(); }
  });
  var chips = all("#event-chips .chip"), c;
  for (c = 0; c < chips.length; c++) {
    chips[c].addEventListener("click", function () { $("event").value = this.getAttribute("data-event"); changed(); });
  }
  summary();
  hint();
  run(true); /* the server's own field errors (a refused submit) stay until the operator edits */
})();
