/**
 * Boot, login, the shell (top bar + left nav) and the hash router of the Polder web UI.
 *
 * Screens live in their own modules, loaded with import() the first time they are
 * opened; each exports `mount(root, params, ctx)` and may return an unmount function.
 * params = {segments, query, schema, table, id}; ctx = {me, navigate(hash)}.
 */
import { ApiError, me, login, clearToken } from './api.js';
import { h, svg, icon, errorBox, spinner, emptyState } from './dom.js';

const app = document.getElementById('app');

/**
 * The screens. `roles` lists who sees the screen (others are sent to their default
 * screen); the server enforces the same rules, this only keeps the nav honest.
 */
const SCREENS = [
  { name: 'data', label: 'Data', icon: 'data', load: () => import('./data.js'), roles: ['admin', 'engineer', 'analyst'] },
  { name: 'sql', label: 'SQL Lab', icon: 'sql', load: () => import('./sql.js'), roles: ['admin', 'engineer', 'analyst'] },
  { name: 'charts', label: 'Charts', icon: 'charts', load: () => import('./charts.js'), roles: ['admin', 'engineer', 'analyst'] },
  { name: 'dashboards', label: 'Dashboards', icon: 'dashboards', load: () => import('./dashboards.js'), roles: null },
  { name: 'pipelines', label: 'Pipelines', icon: 'pipelines', load: () => import('./pipelines.js'), roles: ['admin', 'engineer'] },
  { name: 'admin', label: 'Admin', icon: 'admin', load: () => import('./admin.js'), roles: ['admin'] },
];

function allowed(screen, who) {
  return !screen.roles || screen.roles.includes(who.role);
}

function defaultRoute(who) {
  return who.role === 'viewer' ? '#/dashboards' : '#/data';
}

// ---------- Theme ----------

function currentTheme() {
  return document.documentElement.dataset.theme === 'dark' ? 'dark' : 'light';
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  localStorage.setItem('polder.theme', theme);
  window.dispatchEvent(new CustomEvent('polder-theme', { detail: { theme } }));
}

function brand() {
  const mark = svg('svg', { class: 'brand-mark', viewBox: '0 0 24 24', 'aria-hidden': 'true' },
    svg('rect', { width: 24, height: 24, rx: 6, fill: 'var(--accent)' }),
    svg('path', { d: 'M4 9h16', stroke: 'var(--accent-text)', 'stroke-width': 2, 'stroke-linecap': 'round' }),
    svg('path', {
      d: 'M4 14c2.7-2 5.3 2 8 0s5.3 2 8 0M4 18c2.7-2 5.3 2 8 0s5.3 2 8 0',
      stroke: 'var(--accent-text)', 'stroke-width': 2, fill: 'none', 'stroke-linecap': 'round',
    }),
  );
  return h('a', { class: 'brand', href: '#/' }, mark, 'Polder');
}

// ---------- Login ----------

let showingLogin = false;

function renderLogin(message = '') {
  unmountScreen();
  showingLogin = true;
  document.title = 'Sign in · Polder';
  const username = h('input', { name: 'username', autocomplete: 'username', required: true, 'data-testid': 'login-username' });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, 'data-testid': 'login-password' });
  const error = h('div', { class: 'login-error', 'data-testid': 'login-error', role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'login-submit' }, 'Sign in');
  if (message) error.append(errorBox(message));

  const form = h('form', { class: 'card login-card', 'data-testid': 'login-form' },
    brand(),
    h('div', { class: 'subtitle' }, 'Sign in to your data platform'),
    h('label', { class: 'field' }, 'Username', username),
    h('label', { class: 'field' }, 'Password', password),
    error,
    submit,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    error.replaceChildren();
    submit.disabled = true;
    submit.textContent = 'Signing in…';
    try {
      await login(username.value.trim(), password.value);
      await start();
    } catch (err) {
      // With authentication off there is nothing to sign in to: go straight in.
      if (err instanceof ApiError && err.status === 400 && err.code === 'invalid_input' && /auth/i.test(err.message)) {
        await start();
        return;
      }
      const text = err.status === 401 ? 'Wrong username or password.' : err.message;
      error.replaceChildren(errorBox(text));
      submit.disabled = false;
      submit.textContent = 'Sign in';
      password.select();
    }
  });
  app.replaceChildren(h('main', { class: 'login' }, form));
  username.focus();
}

window.addEventListener('polder-unauthorized', (event) => {
  if (!showingLogin) renderLogin(event.detail.hadToken ? 'Your session has ended. Please sign in again.' : '');
});

// ---------- Shell ----------

let shell = null; // {who, main, nav, links}
let mounted = null; // {path, unmount}
let routeToken = 0;

function renderShell(who) {
  showingLogin = false;
  const links = new Map();
  const nav = h('nav', { class: 'nav', 'aria-label': 'Main' });
  for (const screen of SCREENS) {
    const link = h('a', { href: `#/${screen.name}`, 'data-testid': `nav-${screen.name}`, hidden: !allowed(screen, who) },
      icon(screen.icon, 18), screen.label);
    link.addEventListener('click', () => root.classList.remove('nav-open'));
    links.set(screen.name, link);
    nav.append(link);
  }

  const themeButton = h('button', {
    class: 'btn btn-ghost btn-icon', 'data-testid': 'theme-toggle', type: 'button',
    title: 'Switch between light and dark', 'aria-label': 'Toggle theme',
  });
  const drawThemeIcon = () => themeButton.replaceChildren(icon(currentTheme() === 'dark' ? 'sun' : 'moon', 18));
  drawThemeIcon();
  themeButton.addEventListener('click', () => {
    setTheme(currentTheme() === 'dark' ? 'light' : 'dark');
    drawThemeIcon();
  });

  const menuButton = h('button', { class: 'btn btn-ghost btn-icon menu-button', type: 'button', 'aria-label': 'Menu' }, icon('menu', 18));
  menuButton.addEventListener('click', () => root.classList.toggle('nav-open'));

  const main = h('main', { class: 'main', id: 'main' });
  const root = h('div', { class: 'shell' },
    h('header', { class: 'topbar' }, menuButton, brand(), h('div', { class: 'spacer' }), themeButton, userMenu(who)),
    nav,
    main,
  );
  // Tapping the page closes the phone nav.
  main.addEventListener('click', () => root.classList.remove('nav-open'));
  app.replaceChildren(root);
  shell = { who, main, links };
}

function userMenu(who) {
  const popover = h('div', { class: 'popover', hidden: true },
    h('div', { class: 'popover-head' },
      h('div', { style: { fontWeight: 600 } }, who.user || 'anonymous'),
      h('div', { class: 'muted', style: { fontSize: '12px' } },
        who.auth_enabled ? `Role: ${who.role}` : 'Authentication is off: everyone has full access'),
    ),
    who.auth_enabled
      ? h('button', { class: 'item', type: 'button', 'data-testid': 'logout', on: { click: logout } }, 'Sign out')
      : null,
  );
  const button = h('button', { class: 'btn btn-ghost user-button', type: 'button', 'data-testid': 'user-menu', 'aria-haspopup': 'menu' },
    icon('user', 18), h('span', { class: 'user-name' }, who.user || 'anonymous'), h('span', { class: 'role' }, who.role));
  const wrapper = h('div', { class: 'user-menu' }, button, popover);
  button.addEventListener('click', (event) => {
    event.stopPropagation();
    popover.hidden = !popover.hidden;
  });
  document.addEventListener('click', (event) => {
    if (!wrapper.contains(event.target)) popover.hidden = true;
  });
  return wrapper;
}

function logout() {
  clearToken();
  renderLogin();
}

// ---------- Router ----------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [path, queryString = ''] = raw.split('?');
  const segments = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { path, segments, query: new URLSearchParams(queryString) };
}

function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function unmountScreen() {
  if (mounted && typeof mounted.unmount === 'function') {
    try { mounted.unmount(); } catch (err) { console.error(err); }
  }
  mounted = null;
}

async function route() {
  if (!shell) return;
  const { path, segments, query } = parseHash();
  const screen = SCREENS.find((s) => s.name === segments[0]);
  if (!screen || !allowed(screen, shell.who)) {
    location.replace(defaultRoute(shell.who));
    return;
  }
  // Only the query changed (e.g. dashboard filters written into the URL): the
  // screen already shows it, so do not rebuild it.
  if (mounted && mounted.path === path) return;

  unmountScreen();
  const token = ++routeToken;
  for (const [name, link] of shell.links) link.classList.toggle('active', name === screen.name);
  document.title = `${screen.label} · Polder`;
  const root = h('div', { class: `screen screen-${screen.name}` }, spinner());
  shell.main.replaceChildren(root);
  shell.main.scrollTop = 0;
  mounted = { path, unmount: null };

  const params = {
    segments, query,
    schema: screen.name === 'data' ? segments[1] : undefined,
    table: screen.name === 'data' ? segments[2] : undefined,
    id: segments[1],
  };
  const ctx = { me: shell.who, navigate };
  try {
    const module = await screen.load();
    if (token !== routeToken) return;
    root.replaceChildren();
    const unmount = await module.mount(root, params, ctx);
    if (token !== routeToken) {
      if (typeof unmount === 'function') unmount();
      return;
    }
    mounted.unmount = unmount;
  } catch (err) {
    if (token !== routeToken) return;
    console.error(err);
    root.replaceChildren(h('div', { class: 'page' }, errorBox(err)));
  }
}

window.addEventListener('hashchange', route);

async function start() {
  try {
    const who = await me();
    renderShell(who);
    route();
  } catch (err) {
    if (err.status === 401) {
      if (!showingLogin) renderLogin();
      return;
    }
    app.replaceChildren(h('main', { class: 'login' },
      h('div', { class: 'card login-card' }, brand(),
        emptyState('Polder is not answering', 'Check that the server is running, then reload this page.'),
        errorBox(err),
        h('button', { class: 'btn', type: 'button', on: { click: start } }, 'Try again'))));
  }
}

start();
