// The one script of the Image mirror pages (Airflow shows them in a sandboxed frame of its UI).
(function () {
  var root = document.documentElement;

  // Follow the theme of the Airflow UI around the frame (its <html> carries "dark" or "light"), live.
  function follow() {
    try {
      var dark = window.parent.document.documentElement.classList.contains("dark");
      root.classList.toggle("dark", dark);
      root.classList.toggle("light", !dark);
    } catch (err) {}
  }
  follow();
  try {
    new MutationObserver(follow).observe(window.parent.document.documentElement,
                                         {attributes: true, attributeFilter: ["class", "style"]});
  } catch (err) {}

  // Links to Airflow's own pages (target=_top) go through the UI's router: the frame's sandbox forbids
  // navigating the top window, but the UI (same origin) may be told to show another of its pages.
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest && ev.target.closest("a[target=_top]");
    if (!a || window.parent === window) return;
    var url = new URL(a.getAttribute("href"), location.href);
    try {
      window.parent.history.pushState(null, "", url.pathname + url.search);
      window.parent.dispatchEvent(new PopStateEvent("popstate", {state: null}));
      ev.preventDefault();
    } catch (err) {}
  });
})();
