// The kjs console's only script of its own (htmx does the rest). CSP: served from 'self'.
//
// Logging in from a link (`kjs dev` prints http://127.0.0.1:8080/ui/#key=kjs_...):
// 1. The key is in the fragment, which the browser never sends to a server.
// 2. It is taken out of the address bar (history.replaceState) before anything else, so it
//    stays in no history entry, bookmark or screenshot of the page.
// 3. It is POSTed to /ui/login as the page's form would send it; the server answers with the
//    session cookie and a redirect, which is followed to the page it names.
(function () {
  "use strict";
  var form = document.getElementById("login");
  if (!form) {
    return;
  }
  var match = /(?:^|&)key=([^&]+)/.exec(window.location.hash.slice(1));
  if (!match) {
    if (form.dataset.signedIn === "true") {
      window.location.replace(form.dataset.next);
    }
    return;
  }
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  var status = document.getElementById("login-status");
  status.textContent = "Logging in with the key from the link…";
  var body = new URLSearchParams();
  body.set("key", decodeURIComponent(match[1]));
  body.set("next", form.dataset.next);
  window
    .fetch(form.action, { method: "POST", body: body, credentials: "same-origin" })
    .then(function (response) {
      if (response.ok && response.redirected) {
        window.location.replace(response.url);
        return;
      }
      status.textContent =
        "The key in the link was not accepted (HTTP " + response.status + "). Paste a key below.";
      document.getElementById("key").focus();
    })
    .catch(function () {
      status.textContent = "The console could not be reached. Paste a key below to retry.";
    });
})();
