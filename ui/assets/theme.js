// Sets the theme before the first paint so dark-mode users never see a white flash. A file,
// not an inline script: the page's Content-Security-Policy allows scripts only from the server.
(function () {
  var saved = localStorage.getItem('polder.theme');
  var dark = window.matchMedia && matchMedia('(prefers-color-scheme: dark)').matches;
  document.documentElement.dataset.theme = saved === 'light' || saved === 'dark' ? saved : (dark ? 'dark' : 'light');
})();
