/* The compose page's offline village map (#area-map, drawn by the server from village coordinates):
   clicking a dot toggles that village's checkbox in #area-tree; a dot is filled while its village is
   picked (by itself or through its township). ES5, no library. */
(function () {
  "use strict";
  var W = window.warning = window.warning || {};
  var map = document.getElementById("area-map");
  var tree = document.getElementById("area-tree");
  if (!map || !tree) { return; }

  function box(code) {
    return tree.querySelector('input[name="areas"][value="' + code + '"]');
  }

  function setClass(node, on) {
    /* SVG elements have no className string on old WebViews: use the attribute. */
    var classes = (node.getAttribute("class") || "").replace(/\bon\b/g, "").replace(/\s+/g, " ").trim();
    node.setAttribute("class", on ? (classes + " on").trim() : classes);
  }

  function sync() {
    var dots = map.querySelectorAll("circle[data-village]");
    for (var i = 0; i < dots.length; i++) {
      var input = box(dots[i].getAttribute("data-village"));
      setClass(dots[i], !!(input && input.checked));
    }
  }

  function toggle(dot) {
    var input = box(dot.getAttribute("data-village"));
    if (!input) { return; }
    input.checked = !input.checked;
    /* Tell the tree (and the preview) as if the operator had clicked the checkbox itself. */
    var event;
    if (typeof Event === "function") {
      event = new Event("change", {bubbles: true});
    } else {
      event = document.createEvent("HTMLEvents");
      event.initEvent("change", true, false);
    }
    input.dispatchEvent(event);
  }

  map.addEventListener("click", function (event) {
    var target = event.target || event.srcElement;
    if (target && target.getAttribute && target.getAttribute("data-village")) { toggle(target); }
  });
  map.addEventListener("keydown", function (event) {
    var target = event.target || event.srcElement;
    if ((event.keyCode === 13 || event.keyCode === 32) && target && target.getAttribute("data-village")) {
      event.preventDefault();
      toggle(target);
    }
  });

  W.map = {sync: sync};
  sync();
})();
