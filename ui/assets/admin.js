/**
 * Admin screen (admins only): users, grants (GRANT/REVOKE are SQL), personal access
 * tokens and the audit log. Secrets (new passwords, new tokens) are shown once, with a
 * copy button, and never again.
 */
import { api, runSql, quoteIdent } from './api.js';
import { h, icon, errorBox, spinner, emptyState, toast, modal, confirmDialog, copyText, badge, formatTime, timeAgo } from './dom.js';
import { createGrid } from './grid.js';

const ROLES = ['admin', 'engineer', 'analyst', 'viewer'];

/** A random password from an alphabet without look-alike characters. */
function generatePassword(length = 16) {
  const alphabet = 'abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('');
}

/** Shows a secret once with a copy button. */
function showSecret(title, label, secret, note) {
  return modal(title, h('div', { class: 'form-grid' },
    h('p', {}, label),
    h('div', { class: 'secret-box' },
      h('code', { 'data-testid': 'secret-value' }, secret),
      h('button', { type: 'button', class: 'btn', 'data-testid': 'copy-secret', on: { click: () => copyText(secret) } }, icon('copy', 14), 'Copy')),
    h('p', { class: 'muted' }, note)),
  [{ label: 'Done', value: true, kind: 'primary' }]);
}

function section(id, title, subtitle, actions, body) {
  return h('section', { class: 'section', id: `admin-${id}` },
    h('div', { class: 'section-head' }, h('h2', {}, title), subtitle ? h('span', { class: 'muted hide-phone', style: { fontSize: '13px' } }, subtitle) : null,
      h('div', { class: 'spacer' }), actions),
    body);
}

export async function mount(root, _params, ctx) {
  const usersBox = h('div', {}, spinner());
  const grantsBox = h('div', {}, spinner());
  const tokensBox = h('div', {}, spinner());
  const auditBox = h('div', {}, spinner());
  const addUser = h('button', { type: 'button', class: 'btn btn-primary', 'data-testid': 'user-add' }, 'Add user');
  const createToken = h('button', { type: 'button', class: 'btn', 'data-testid': 'token-create' }, 'Create token');
  const refreshAudit = h('button', { type: 'button', class: 'btn btn-ghost btn-icon', title: 'Reload', 'aria-label': 'Reload the audit log' }, icon('refresh'));
  const jump = (id, label) => h('a', { href: `#/admin`, class: 'btn btn-ghost btn-small', on: { click: (event) => {
    event.preventDefault();
    root.querySelector(`#admin-${id}`).scrollIntoView({ behavior: 'smooth', block: 'start' });
  } } }, label);

  root.append(h('div', { class: 'page' },
    h('div', { class: 'page-header' }, h('h1', {}, 'Admin'), h('div', { class: 'spacer' }),
      h('nav', { class: 'row', 'aria-label': 'Sections' }, jump('users', 'Users'), jump('grants', 'Grants'), jump('tokens', 'Tokens'), jump('audit', 'Audit log'))),
    section('users', 'Users', null, addUser, usersBox),
    section('grants', 'Grants', 'Who may read or write which schema or table.', null, grantsBox),
    section('tokens', 'Access tokens', 'For scripts, BI tools and the Flight SQL/PostgreSQL endpoints.', createToken, tokensBox),
    section('audit', 'Audit log', 'The newest 200 entries.', refreshAudit, auditBox),
  ));

  // ---------- Users ----------

  async function loadUsers() {
    try {
      const { users } = await api('GET', '/api/v1/users');
      users.sort((a, b) => a.name.localeCompare(b.name));
      usersBox.replaceChildren(h('div', { class: 'table-wrap', 'data-testid': 'users-list' }, h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'User'), h('th', {}, 'Role'), h('th', {}, 'Status'), h('th', { class: 'hide-phone' }, 'Created'), h('th', {}))),
        h('tbody', {}, users.map(userRow)))));
    } catch (err) {
      usersBox.replaceChildren(errorBox(err));
    }
  }

  async function changeUser(user, change, done) {
    try {
      await api('PATCH', `/api/v1/users/${encodeURIComponent(user.name)}`, change);
      toast(done, 'ok');
    } catch (err) {
      toast(err.message, 'error');
    }
    loadUsers();
  }

  function userRow(user) {
    const isSelf = user.name === ctx.me.user;
    const role = h('select', { 'aria-label': `Role of ${user.name}`, 'data-testid': 'user-role' },
      ROLES.map((r) => h('option', { value: r, selected: r === user.role }, r)));
    role.addEventListener('change', () => changeUser(user, { role: role.value }, `${user.name} is now ${role.value}`));
    return h('tr', { 'data-testid': 'user-row', dataset: { user: user.name } },
      h('td', { style: { fontWeight: 600 } }, user.name, isSelf ? h('span', { class: 'muted', style: { fontWeight: 400 } }, ' (you)') : null),
      h('td', {}, role),
      h('td', {}, user.disabled ? badge('disabled') : h('span', { class: 'badge badge-ok' }, 'active')),
      h('td', { class: 'muted nowrap hide-phone', title: formatTime(user.created_at) }, timeAgo(user.created_at)),
      h('td', { class: 'actions' },
        h('button', {
          type: 'button', class: 'btn btn-small', 'data-testid': 'user-reset-password',
          on: { click: () => resetPassword(user) },
        }, 'Reset password'),
        h('button', {
          type: 'button', class: 'btn btn-small', 'data-testid': 'user-toggle', disabled: isSelf,
          on: { click: () => changeUser(user, { disabled: !user.disabled }, `${user.name} ${user.disabled ? 'enabled' : 'disabled'}`) },
        }, user.disabled ? 'Enable' : 'Disable'),
        h('button', {
          type: 'button', class: 'btn btn-small btn-danger', 'data-testid': 'user-delete', disabled: isSelf,
          on: { click: () => deleteUser(user) },
        }, 'Delete')));
  }

  async function resetPassword(user) {
    const password = generatePassword();
    if (!await confirmDialog('Reset password', `Give ${user.name} a new generated password? The old one stops working.`, 'Reset')) return;
    try {
      await api('PATCH', `/api/v1/users/${encodeURIComponent(user.name)}`, { password });
    } catch (err) {
      toast(err.message, 'error');
      return;
    }
    await showSecret('New password', `The new password of ${user.name}:`, password, 'Pass it on safely; it is not shown again.');
  }

  async function deleteUser(user) {
    if (!await confirmDialog('Delete user', `Delete ${user.name}? Their tokens stop working. This cannot be undone.`)) return;
    try {
      await api('DELETE', `/api/v1/users/${encodeURIComponent(user.name)}`);
      toast(`${user.name} deleted`, 'ok');
    } catch (err) {
      toast(err.message, 'error');
    }
    loadUsers();
  }

  addUser.addEventListener('click', async () => {
    const name = h('input', { 'data-testid': 'user-add-name', required: true, autocomplete: 'off', placeholder: 'e.g. alice', pattern: '[A-Za-z0-9_.@-]+' });
    const role = h('select', { 'data-testid': 'user-add-role' }, ROLES.map((r) => h('option', { value: r, selected: r === 'analyst' }, r)));
    const password = generatePassword();
    const created = await modal('Add user', h('div', { class: 'form-grid' },
      h('label', { class: 'field' }, 'Username', name),
      h('label', { class: 'field' }, 'Role', role),
      h('p', { class: 'muted' }, 'A password is generated and shown once after the user is added.')),
    [
      { label: 'Cancel', value: null },
      {
        label: 'Add user', kind: 'primary', testid: 'user-add-confirm',
        run: async () => {
          if (!name.value.trim()) throw new Error('Enter a username.');
          return api('POST', '/api/v1/users', { name: name.value.trim(), role: role.value, password });
        },
      },
    ]);
    if (!created) return;
    loadUsers();
    await showSecret('User added', `${created.name} (${created.role}) can sign in with this password:`, password,
      'Copy it now and pass it on safely: it is not shown again.');
  });

  // ---------- Grants ----------

  async function loadGrants() {
    let result;
    try {
      result = await runSql('SELECT * FROM system.grants ORDER BY schema_name, table_name, grantee', { maxRows: 5000 });
    } catch (err) {
      grantsBox.replaceChildren(errorBox(err));
      return;
    }
    const rows = result.rows;
    const list = rows.length === 0
      ? h('div', { class: 'card', 'data-testid': 'grants-list' }, emptyState('No grants', 'Admins and engineers see everything; analysts and viewers need grants.'))
      : h('div', { class: 'table-wrap', 'data-testid': 'grants-list' }, h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Privilege'), h('th', {}, 'On'), h('th', {}, 'To'), h('th', { class: 'hide-phone' }, 'Granted by'), h('th', { class: 'hide-phone' }, 'When'), h('th', {}))),
        h('tbody', {}, rows.map((g) => {
          const object = g.table_name ? `TABLE ${quoteIdent(g.schema_name)}.${quoteIdent(g.table_name)}` : `SCHEMA ${quoteIdent(g.schema_name)}`;
          const grantee = g.grantee_kind === 'role' ? `ROLE ${quoteIdent(g.grantee)}` : quoteIdent(g.grantee);
          return h('tr', { 'data-testid': 'grant-row' },
            h('td', {}, h('span', { class: 'tag' }, g.privilege)),
            h('td', { class: 'mono' }, g.table_name ? `${g.schema_name}.${g.table_name}` : `${g.schema_name}.*`),
            h('td', {}, g.grantee_kind === 'role' ? h('span', {}, h('span', { class: 'muted' }, 'role '), g.grantee) : g.grantee),
            h('td', { class: 'muted hide-phone' }, g.granted_by ?? ''),
            h('td', { class: 'muted nowrap hide-phone' }, timeAgo(g.created_at)),
            h('td', { class: 'actions' }, h('button', {
              type: 'button', class: 'btn btn-small btn-danger', 'data-testid': 'grant-revoke',
              on: { click: () => issue(`REVOKE ${g.privilege} ON ${object} FROM ${grantee}`) },
            }, 'Revoke')));
        }))));
    grantsBox.replaceChildren(h('div', { class: 'section' }, list, grantForm()));
  }

  async function issue(sql) {
    try {
      await runSql(sql);
      toast(`${sql.split(' ')[0]} done: ${sql}`, 'ok');
    } catch (err) {
      toast(err.message, 'error');
    }
    loadGrants();
  }

  function grantForm() {
    const action = h('select', { 'aria-label': 'Grant or revoke', 'data-testid': 'grant-action' }, h('option', { value: 'GRANT' }, 'GRANT'), h('option', { value: 'REVOKE' }, 'REVOKE'));
    const privilege = h('select', { 'aria-label': 'Privilege', 'data-testid': 'grant-privilege' }, ['SELECT', 'INSERT', 'ALL'].map((p) => h('option', { value: p }, p)));
    const kind = h('select', { 'aria-label': 'Object kind', 'data-testid': 'grant-kind' }, h('option', { value: 'TABLE' }, 'ON TABLE'), h('option', { value: 'SCHEMA' }, 'ON SCHEMA'));
    const object = h('input', { placeholder: 'gold.daily_revenue', 'aria-label': 'Table or schema', 'data-testid': 'grant-object', required: true, style: { width: '200px' } });
    const toKind = h('select', { 'aria-label': 'User or role', 'data-testid': 'grant-to-kind' }, h('option', { value: 'user' }, 'TO user'), h('option', { value: 'role' }, 'TO role'));
    const grantee = h('input', { placeholder: 'bob or analyst', 'aria-label': 'Grantee', 'data-testid': 'grant-grantee', required: true, style: { width: '160px' } });
    const preview = h('code', { class: 'muted', 'data-testid': 'grant-sql' });
    const statement = () => {
      const target = object.value.trim().split('.').map((p) => quoteIdent(p.trim())).join('.');
      const who = toKind.value === 'role' ? `ROLE ${quoteIdent(grantee.value.trim())}` : quoteIdent(grantee.value.trim());
      return `${action.value} ${privilege.value} ON ${kind.value} ${target} ${action.value === 'GRANT' ? 'TO' : 'FROM'} ${who}`;
    };
    const update = () => { preview.textContent = object.value && grantee.value ? statement() : ''; };
    const form = h('form', { class: 'card card-pad section', 'data-testid': 'grant-form' },
      h('h3', {}, 'Grant or revoke'),
      h('div', { class: 'row' }, action, privilege, kind, object, toKind, grantee,
        h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'grant-submit' }, 'Apply')),
      preview);
    form.addEventListener('input', update);
    form.addEventListener('change', update);
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (!object.value.trim() || !grantee.value.trim()) return;
      issue(statement());
    });
    return form;
  }

  // ---------- Tokens ----------

  async function loadTokens() {
    try {
      const { tokens } = await api('GET', '/api/v1/tokens');
      if (tokens.length === 0) {
        tokensBox.replaceChildren(h('div', { class: 'card', 'data-testid': 'tokens-list' }, emptyState('No tokens', 'Create one for scripts and BI tools.')));
        return;
      }
      tokensBox.replaceChildren(h('div', { class: 'table-wrap', 'data-testid': 'tokens-list' }, h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Label'), h('th', {}, 'User'), h('th', {}, 'Kind'), h('th', { class: 'hide-phone' }, 'Created'),
          h('th', {}, 'Expires'), h('th', { class: 'hide-phone' }, 'Status'), h('th', {}))),
        h('tbody', {}, tokens.map((t) => h('tr', { 'data-testid': 'token-row' },
          h('td', {}, t.label || h('span', { class: 'muted' }, '(no label)')),
          h('td', {}, t.user),
          h('td', {}, h('span', { class: 'tag' }, t.kind)),
          h('td', { class: 'muted nowrap hide-phone', title: formatTime(t.created_at) }, timeAgo(t.created_at)),
          h('td', { class: 'nowrap', title: formatTime(t.expires_at) }, t.expires_at ? timeAgo(t.expires_at) : h('span', { class: 'muted' }, 'never')),
          h('td', { class: 'nowrap hide-phone' }, t.revoked ? h('span', { class: 'badge badge-danger' }, 'revoked') : h('span', { class: 'badge badge-ok' }, 'active')),
          h('td', { class: 'actions' }, t.revoked ? badge('revoked') : h('button', {
            type: 'button', class: 'btn btn-small btn-danger', 'data-testid': 'token-revoke',
            on: { click: () => revokeToken(t) },
          }, 'Revoke'))))))));
    } catch (err) {
      tokensBox.replaceChildren(errorBox(err));
    }
  }

  async function revokeToken(t) {
    if (!await confirmDialog('Revoke token', `Revoke ${t.label ? `“${t.label}”` : 'this token'} of ${t.user}? Anything using it stops working.`, 'Revoke')) return;
    try {
      await api('DELETE', `/api/v1/tokens/${encodeURIComponent(t.id)}`);
      toast('Token revoked', 'ok');
    } catch (err) {
      toast(err.message, 'error');
    }
    loadTokens();
  }

  createToken.addEventListener('click', async () => {
    const label = h('input', { 'data-testid': 'token-label', placeholder: 'e.g. nightly export' });
    const days = h('select', { 'data-testid': 'token-days' },
      [['30', '30 days'], ['90', '90 days'], ['365', '1 year'], ['', 'Never expires']].map(([v, text]) => h('option', { value: v, selected: v === '90' }, text)));
    const issued = await modal('Create access token', h('div', { class: 'form-grid' },
      h('label', { class: 'field' }, 'Label', label),
      h('label', { class: 'field' }, 'Lifetime', days)),
    [
      { label: 'Cancel', value: null },
      {
        label: 'Create', kind: 'primary', testid: 'token-create-confirm',
        run: () => api('POST', '/api/v1/tokens', { label: label.value.trim(), days: days.value ? Number(days.value) : null }),
      },
    ]);
    if (!issued) return;
    loadTokens();
    await showSecret('Token created', 'Your new token:', issued.token,
      `Copy it now: it is not shown again. ${issued.expires_at ? `It expires ${formatTime(issued.expires_at)}.` : 'It does not expire.'}`);
  });

  // ---------- Audit ----------

  async function loadAudit() {
    auditBox.replaceChildren(spinner());
    try {
      const result = await runSql('SELECT * FROM system.audit ORDER BY at DESC LIMIT 200', { maxRows: 200 });
      const box = h('div', { 'data-testid': 'audit-list' }, createGrid(result.columns, result.rows, { testid: 'audit-grid', fitHeight: true }));
      auditBox.replaceChildren(box);
    } catch (err) {
      auditBox.replaceChildren(errorBox(err));
    }
  }
  refreshAudit.addEventListener('click', loadAudit);

  await Promise.all([loadUsers(), loadGrants(), loadTokens(), loadAudit()]);
}
