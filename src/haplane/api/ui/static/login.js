// A login link (/ui/login?token=...) must not leave its token in the address bar or the history: replace the
// URL first, then move the token into a POST.
(function () {
  "use strict";
  if (location.search) history.replaceState(null, "", "/ui/login");
  var form = document.getElementById("login");
  if (form && form.dataset.autosubmit === "1") form.submit();
})();
