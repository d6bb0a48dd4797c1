// The vault's web UI: plain JavaScript, no build step, no framework.
//
// It talks only to the vault's HTTP API (docs/api.md) with the API key the user
// signed in with. It runs under a strict Content-Security-Policy
// (default-src 'self'): no inline scripts or styles, and every string that comes
// from the API (names, provider error descriptions, event data) goes into the
// DOM through textContent or an attribute value, never through innerHTML.

const KEY_STORAGE = 'tokenwarden.apiKey';
const CREDENTIALS_POLL_MS = 5_000;
const WEBHOOKS_POLL_MS = 5_000;
const EVENTS_POLL_MS = 3_000;
const EVENTS_PAGE_SIZE = 500;
/** Pages read per events poll while catching up with a long history. */
const EVENTS_MAX_PAGES_PER_POLL = 10;
const EVENTS_KEPT = 200;
const NOTICE_AUTO_DISMISS_MS = 6_000;

/**
 * @typedef {{ code: string, message: string, at?: string | null }} ApiErrorBody
 * @typedef {{ id: string, displayName: string, rotation?: string,
 *   placeholders?: Record<string, { description?: string, default?: string }>,
 *   defaultScopes?: string[], docs?: string[] }} Provider
 * @typedef {{ id: string, name: string, providerId: string, clientId: string,
 *   status: 'ok' | 'misconfigured', statusReason: string | null }} AuthClient
 * @typedef {{ id: string, authClientId: string, providerId: string,
 *   status: 'active' | 'reauth_required' | 'revoked', statusReason: string | null,
 *   expiresAt: string | null, lastRefreshAt: string | null, refreshCount: number,
 *   lastError: ApiErrorBody | null, createdAt: string }} Credential
 * @typedef {{ id: string | number, type: string, credentialId: string | null,
 *   authClientId: string | null, at: string | number, data: Record<string, unknown> | null }} VaultEvent
 * @typedef {{ id: string, eventId: string, eventType: string,
 *   status: 'pending' | 'retrying' | 'delivered' | 'gave_up', at: string | null,
 *   httpStatus: number | null, attempts: number, error: string | null,
 *   nextAttemptAt: string | null }} LastDelivery
 * @typedef {{ id: string, url: string, events: string[], createdAt: string,
 *   lastDelivery: LastDelivery | null }} Webhook
 * @typedef {{ row: HTMLTableRowElement, cells: Record<string, HTMLTableCellElement>,
 *   authClient: HTMLElement, provider: HTMLElement,
 *   refresh: HTMLButtonElement, revoke: HTMLButtonElement }} CredentialRow
 */

class ApiError extends Error {
  /**
   * @param {number} status HTTP status, 0 when the vault could not be reached
   * @param {string} code
   * @param {string} message
   */
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

const state = {
  /** Bumped at every sign-in and sign-out: answers of an older session are dropped. */
  session: 0,
  /** @type {Map<string, Provider>} */
  providers: new Map(),
  /** @type {Map<string, AuthClient>} */
  authClients: new Map(),
  /** @type {Map<string, Credential>} */
  credentials: new Map(),
  /** @type {Map<string, CredentialRow>} */
  credentialRows: new Map(),
  credentialsLoaded: false,
  webhooksLoaded: false,
  /** The `after` cursor of the events feed. @type {string | number | null} */
  eventsCursor: null,
  /** A credential to highlight when it shows up (after a connect). @type {string | null} */
  highlight: null,
  /** @type {number[]} */
  timers: [],
};

// ---------------------------------------------------------------- DOM helpers

/**
 * @param {string} id
 * @returns {HTMLElement}
 */
function byId(id) {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`#${id} is missing from index.html`);
  return node;
}

/**
 * Creates an element. Text goes in through textContent, attributes through
 * setAttribute: data from the API is never parsed as HTML.
 *
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {{ className?: string, text?: string, title?: string, testid?: string,
 *   attrs?: Record<string, string> }} [options]
 * @param {Array<Node | string | null | undefined | false>} [children]
 * @returns {HTMLElementTagNameMap[K]}
 */
function el(tag, options = {}, children = []) {
  const node = document.createElement(tag);
  if (options.className) node.className = options.className;
  if (options.text !== undefined) node.textContent = options.text;
  if (options.title) node.title = options.title;
  if (options.testid) node.dataset.testid = options.testid;
  for (const [name, value] of Object.entries(options.attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

/**
 * @param {string} status
 * @param {string} [label]
 */
function badge(status, label = status.replaceAll('_', ' ')) {
  return el('span', {
    className: `badge badge-${status.replaceAll('_', '-')}`,
    text: label,
    attrs: { 'data-status': status },
  });
}

/** @param {string} text */
function mono(text) {
  return el('code', { className: 'mono', text });
}

// ----------------------------------------------------------------- formatting

/** @param {number} seconds a whole, non-negative number */
function formatDuration(seconds) {
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) {
    const rest = seconds % 60;
    return rest === 0
      ? `${Math.floor(seconds / 60)} min`
      : `${Math.floor(seconds / 60)} min ${rest} s`;
  }
  if (seconds < 86_400) {
    const minutes = Math.floor((seconds % 3600) / 60);
    return `${Math.floor(seconds / 3600)} h${minutes === 0 ? '' : ` ${minutes} min`}`;
  }
  const hours = Math.floor((seconds % 86_400) / 3600);
  return `${Math.floor(seconds / 86_400)} d${hours === 0 ? '' : ` ${hours} h`}`;
}

/** @param {string | number | null | undefined} value */
function toMs(value) {
  if (value === null || value === undefined) return null;
  const ms = typeof value === 'number' ? value : Date.parse(value);
  return Number.isFinite(ms) ? ms : null;
}

/** @param {string | number | null | undefined} value */
function absoluteTime(value) {
  const ms = toMs(value);
  return ms === null ? '' : new Date(ms).toLocaleString();
}

/** "12 s ago", "3 min ago", or "never". @param {string | null | undefined} value */
function relativeTime(value, now = Date.now()) {
  const ms = toMs(value);
  if (ms === null) return 'never';
  const seconds = Math.max(0, Math.floor((now - ms) / 1000));
  if (seconds < 3) return 'just now';
  return `${formatDuration(seconds)} ago`;
}

/**
 * The live expiry text: "expires in 42 s" or "expired".
 * @param {string | null | undefined} expiresAt
 * @returns {{ text: string, tone: 'unknown' | 'expired' | 'soon' | 'ok' }}
 */
function expiryText(expiresAt, now = Date.now()) {
  const ms = toMs(expiresAt);
  if (ms === null) return { text: 'no expiry known', tone: 'unknown' };
  const remaining = Math.ceil((ms - now) / 1000);
  if (remaining <= 0) return { text: 'expired', tone: 'expired' };
  return { text: `expires in ${formatDuration(remaining)}`, tone: remaining < 30 ? 'soon' : 'ok' };
}

/** @param {string} text @param {number} max */
function truncate(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A one-line summary of an event's data: `key: value · key: value`. @param {unknown} data */
function summarize(data) {
  if (data === null || typeof data !== 'object') return '';
  const parts = [];
  for (const [key, value] of Object.entries(data)) {
    if (value === null || value === undefined) continue;
    let shown;
    if (typeof value === 'string') shown = value;
    else if (typeof value === 'number' || typeof value === 'boolean') shown = String(value);
    else shown = JSON.stringify(value);
    parts.push(`${key}: ${truncate(shown, 120)}`);
  }
  return parts.join(' · ');
}

// ------------------------------------------------------------------------ API

function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

/**
 * Calls the vault's API. Answers with the parsed JSON (undefined for 204);
 * throws ApiError with the vault's error code and message otherwise.
 *
 * @param {'GET' | 'POST' | 'PATCH' | 'DELETE'} method
 * @param {string} path
 * @param {unknown} [body]
 * @returns {Promise<any>}
 */
async function api(method, path, body) {
  /** @type {Record<string, string>} */
  const headers = { accept: 'application/json' };
  const key = apiKey();
  if (key !== null) headers.authorization = `Bearer ${key}`;
  /** @type {RequestInit} */
  const init = { method, headers, cache: 'no-store', credentials: 'same-origin' };
  if (body !== undefined) {
    headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network_error', 'The vault could not be reached.');
  }
  const text = await response.text();
  /** @type {any} */
  let payload;
  if (text !== '') {
    try {
      payload = JSON.parse(text);
    } catch {
      payload = undefined;
    }
  }
  if (!response.ok) {
    const error = payload?.error;
    throw new ApiError(
      response.status,
      typeof error?.code === 'string' ? error.code : `http_${response.status}`,
      typeof error?.message === 'string'
        ? error.message
        : `The vault answered ${response.status} ${response.statusText}.`,
    );
  }
  return payload;
}

/**
 * What every background task and button does with a failure: a 401 ends the
 * session, anything else is shown.
 *
 * @param {unknown} error
 * @param {string} what
 * @param {'notice' | 'connection'} [where]
 */
function reportError(error, what, where = 'notice') {
  if (error instanceof ApiError && error.status === 401) {
    signOut('The vault did not accept the API key any more (401). Sign in again.');
    return;
  }
  const message =
    error instanceof ApiError
      ? `${error.message} (${error.code})`
      : error instanceof Error
        ? error.message
        : String(error);
  if (where === 'connection') setConnection(`${what}: ${message} Retrying…`);
  else notify('error', `${what}: ${message}`);
}

/** @param {string | null} message */
function setConnection(message) {
  const node = byId('connection');
  node.hidden = message === null;
  node.textContent = message ?? '';
}

// -------------------------------------------------------------------- notices

/**
 * @param {'success' | 'error' | 'info'} kind
 * @param {string} message
 * @param {{ sticky?: boolean, testid?: string }} [options]
 */
function notify(kind, message, options = {}) {
  const close = el('button', {
    className: 'notice-close',
    text: '×',
    attrs: { type: 'button', 'aria-label': 'Dismiss' },
  });
  const notice = el(
    'div',
    {
      className: `notice notice-${kind}`,
      testid: options.testid ?? 'banner',
      attrs: { role: kind === 'error' ? 'alert' : 'status', 'data-kind': kind },
    },
    [el('span', { className: 'notice-text', text: message }), close],
  );
  close.addEventListener('click', () => notice.remove());
  byId('notices').append(notice);
  const sticky = options.sticky ?? kind === 'error';
  if (!sticky) setTimeout(() => notice.remove(), NOTICE_AUTO_DISMISS_MS);
  return notice;
}

/**
 * After a connect the vault sends the browser back to
 * `returnTo?credentialId=…&status=connected` (or `?error=…`). Shows that as a
 * banner, then takes the parameters out of the address bar. The parameters are
 * also read from the fragment, in case they were appended after `#credentials`.
 */
function showConnectResult() {
  const url = new URL(location.href);
  const names = ['credentialId', 'status', 'error', 'error_description', 'message'];
  let hash = url.hash;
  let hashParams = new URLSearchParams();
  const query = hash.indexOf('?');
  if (query !== -1) {
    hashParams = new URLSearchParams(hash.slice(query + 1));
    hash = hash.slice(0, query);
  }
  /** @param {string} name */
  const param = (name) => url.searchParams.get(name) ?? hashParams.get(name);
  if (!names.some((name) => param(name) !== null)) return;

  const error = param('error');
  const credentialId = param('credentialId');
  if (error !== null) {
    const description = param('error_description') ?? param('message');
    notify(
      'error',
      `Connecting the account failed: ${error}${description ? ` — ${description}` : ''}`,
      { testid: 'connect-banner' },
    );
  } else if (credentialId !== null && (param('status') ?? 'connected') === 'connected') {
    notify('success', `Connected: ${credentialId}`, { sticky: true, testid: 'connect-banner' });
    state.highlight = credentialId;
  } else if (param('status') !== null) {
    notify('info', `Connect flow ended with status "${param('status')}".`, {
      sticky: true,
      testid: 'connect-banner',
    });
  }

  for (const name of names) url.searchParams.delete(name);
  history.replaceState(history.state, '', `${url.pathname}${url.search}${hash}`);
}

// ------------------------------------------------------------ sign in and out

/**
 * @param {string | null} [message]
 * @param {'error' | 'info'} [tone]
 */
function showSignIn(message = null, tone = 'error') {
  byId('app').hidden = true;
  byId('sign-out').hidden = true;
  byId('sign-in').hidden = false;
  const messageNode = byId('sign-in-message');
  messageNode.hidden = message === null;
  messageNode.textContent = message ?? '';
  messageNode.className = `form-message ${tone}`;
  const input = /** @type {HTMLInputElement} */ (byId('sign-in-key'));
  input.value = '';
  input.focus();
}

/**
 * @param {string | null} [message]
 * @param {'error' | 'info'} [tone]
 */
function signOut(message = null, tone = 'error') {
  sessionStorage.removeItem(KEY_STORAGE);
  stopPolling();
  state.session += 1;
  setConnection(null);
  hideWebhookSecret();
  showSignIn(message, tone);
}

/** @param {SubmitEvent} event */
async function onSignIn(event) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.currentTarget);
  const input = /** @type {HTMLInputElement} */ (byId('sign-in-key'));
  const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type="submit"]'));
  const key = input.value.trim();
  if (key === '') return;
  const messageNode = byId('sign-in-message');
  messageNode.hidden = true;
  submit.disabled = true;
  sessionStorage.setItem(KEY_STORAGE, key);
  try {
    // Any tenant route proves the key; the answer is used right away.
    const answer = await api('GET', '/v1/auth-clients');
    input.value = '';
    startSession(answer);
  } catch (error) {
    sessionStorage.removeItem(KEY_STORAGE);
    messageNode.hidden = false;
    messageNode.className = 'form-message error';
    messageNode.textContent =
      error instanceof ApiError && error.status === 401
        ? 'The vault did not accept this API key.'
        : `Signing in failed: ${error instanceof Error ? error.message : String(error)}`;
  } finally {
    submit.disabled = false;
  }
}

/** @param {{ authClients: AuthClient[] } | undefined} [authClients] */
function startSession(authClients) {
  state.session += 1;
  state.authClients.clear();
  state.credentials.clear();
  state.credentialRows.clear();
  state.credentialsLoaded = false;
  state.eventsCursor = null;
  byId('credential-rows').replaceChildren(placeholderRow(8, 'Loading…'));
  byId('auth-client-rows').replaceChildren(placeholderRow(5, 'Loading…'));
  byId('webhook-rows').replaceChildren(placeholderRow(4, 'Loading…'));
  state.webhooksLoaded = false;
  hideWebhookSecret();
  byId('event-list').replaceChildren();
  byId('events-empty').hidden = false;
  byId('sign-in').hidden = true;
  byId('app').hidden = false;
  byId('sign-out').hidden = false;
  if (authClients !== undefined) renderAuthClients(authClients.authClients);
  void loadProviders();
  startPolling();
}

// -------------------------------------------------------------------- polling

/**
 * Runs task now and then every `ms` after it finishes (never two at once).
 * @param {() => Promise<void>} task
 * @param {number} ms
 */
function poll(task, ms) {
  const session = state.session;
  const run = async () => {
    if (session !== state.session) return;
    if (!document.hidden) await task();
    if (session === state.session) state.timers.push(window.setTimeout(run, ms));
  };
  void run();
}

function startPolling() {
  stopPolling();
  poll(loadOverview, CREDENTIALS_POLL_MS);
  poll(loadEvents, EVENTS_POLL_MS);
  poll(loadWebhooks, WEBHOOKS_POLL_MS);
  state.timers.push(window.setInterval(tick, 1000));
}

function stopPolling() {
  for (const timer of state.timers) {
    clearTimeout(timer);
    clearInterval(timer);
  }
  state.timers = [];
}

/** Auth clients and credentials: the credential rows show auth client names. */
async function loadOverview() {
  const session = state.session;
  try {
    const [authClients, credentials] = await Promise.all([
      api('GET', '/v1/auth-clients'),
      api('GET', '/v1/credentials'),
    ]);
    if (session !== state.session) return;
    setConnection(null);
    renderAuthClients(authClients.authClients);
    renderCredentials(credentials.credentials);
  } catch (error) {
    if (session === state.session) reportError(error, 'Loading credentials failed', 'connection');
  }
}

// --------------------------------------------------------------- auth clients

/** @param {number} columns @param {string} text */
function placeholderRow(columns, text) {
  return el('tr', { className: 'placeholder-row' }, [
    el('td', { className: 'empty', text, attrs: { colspan: String(columns) } }),
  ]);
}

/** @param {string} providerId */
function providerName(providerId) {
  return state.providers.get(providerId)?.displayName ?? providerId;
}

/** @param {AuthClient[]} authClients */
function renderAuthClients(authClients) {
  state.authClients = new Map(authClients.map((client) => [client.id, client]));
  const body = byId('auth-client-rows');
  if (authClients.length === 0) {
    body.replaceChildren(
      placeholderRow(5, 'No auth clients yet. Add one below to connect an account.'),
    );
    return;
  }
  // Rows are rebuilt, but a Connect button that is busy keeps its state.
  const busy = new Set(
    [...body.querySelectorAll('button[data-busy="true"]')].map((b) =>
      b.getAttribute('data-auth-client-id'),
    ),
  );
  body.replaceChildren(
    ...authClients.map((client) => {
      const connect = el('button', {
        className: 'button-primary button-small',
        text: busy.has(client.id) ? 'Connecting…' : 'Connect',
        testid: 'connect-button',
        attrs: {
          type: 'button',
          'data-auth-client-id': client.id,
          'aria-label': `Connect an account with ${client.name}`,
        },
      });
      if (busy.has(client.id)) {
        connect.disabled = true;
        connect.dataset.busy = 'true';
      }
      connect.addEventListener('click', () => void onConnect(client, connect));
      return el('tr', { testid: 'auth-client-row', attrs: { 'data-auth-client-id': client.id } }, [
        el('td', { className: 'strong', text: client.name }),
        el('td', {}, [
          el('span', {
            className: 'clip',
            text: providerName(client.providerId),
            title: `${providerName(client.providerId)} (${client.providerId})`,
          }),
        ]),
        el('td', {}, [mono(client.clientId)]),
        el('td', { testid: 'auth-client-status' }, [
          badge(client.status),
          client.statusReason
            ? el('div', { className: 'reason', text: client.statusReason })
            : null,
        ]),
        el('td', { className: 'actions' }, [connect]),
      ]);
    }),
  );
}

/**
 * Starts a connect flow and sends the browser to the vault's connect page,
 * which sends it on to the provider.
 *
 * @param {AuthClient} client
 * @param {HTMLButtonElement} button
 */
async function onConnect(client, button) {
  button.disabled = true;
  button.dataset.busy = 'true';
  button.textContent = 'Connecting…';
  try {
    const session = await api('POST', '/v1/connect-sessions', {
      authClientId: client.id,
      returnTo: `${location.origin}/#credentials`,
    });
    if (typeof session?.url !== 'string') throw new Error('the vault answered without a URL');
    location.assign(session.url);
  } catch (error) {
    button.disabled = false;
    delete button.dataset.busy;
    button.textContent = 'Connect';
    reportError(error, `Connecting with ${client.name} failed`);
  }
}

// ---------------------------------------------------------------- credentials

/**
 * One row per credential, kept across polls and updated in place, so that
 * buttons and focus survive the 5-second refresh of the list.
 *
 * @param {string} id
 * @returns {CredentialRow}
 */
function credentialRow(id) {
  const existing = state.credentialRows.get(id);
  if (existing !== undefined) return existing;
  /** @param {string} name @param {string} [className] */
  const cell = (name, className) =>
    el('td', { testid: `credential-${name}`, ...(className ? { className } : {}) });
  const cells = {
    id: cell('id'),
    client: el('td'),
    status: cell('status'),
    expiry: cell('expiry', 'nowrap'),
    lastRefresh: cell('last-refresh', 'nowrap'),
    refreshCount: cell('refresh-count', 'numeric'),
    lastError: cell('last-error'),
    actions: el('td', { className: 'actions' }),
  };
  cells.id.append(mono(id));
  // The auth client's name with its provider underneath.
  const authClient = el('div', { className: 'strong', testid: 'credential-auth-client' });
  const provider = el('div', { className: 'reason clip', testid: 'credential-provider' });
  cells.client.append(authClient, provider);
  const refresh = el('button', {
    className: 'button-small',
    text: 'Refresh now',
    testid: 'refresh-button',
    attrs: { type: 'button', 'aria-label': `Refresh ${id} now` },
  });
  const revoke = el('button', {
    className: 'button-small button-danger',
    text: 'Revoke',
    testid: 'revoke-button',
    attrs: { type: 'button', 'aria-label': `Revoke ${id}` },
  });
  refresh.addEventListener('click', () => void onRefresh(id));
  revoke.addEventListener('click', () => void onRevoke(id));
  cells.actions.append(refresh, ' ', revoke);
  const row = el(
    'tr',
    { testid: 'credential-row', attrs: { 'data-credential-id': id } },
    Object.values(cells),
  );
  const entry = { row, cells, authClient, provider, refresh, revoke };
  state.credentialRows.set(id, entry);
  return entry;
}

/** @param {Credential} credential */
function updateCredentialRow(credential) {
  state.credentials.set(credential.id, credential);
  const { row, cells, authClient, provider } = credentialRow(credential.id);
  row.dataset.status = credential.status;
  const client = state.authClients.get(credential.authClientId);
  authClient.textContent = client?.name ?? credential.authClientId;
  authClient.title = credential.authClientId;
  provider.textContent = providerName(credential.providerId);
  provider.title = `${provider.textContent} (${credential.providerId})`;
  cells.status.replaceChildren(
    badge(credential.status),
    credential.statusReason
      ? el('div', { className: 'reason', text: credential.statusReason })
      : '',
  );
  cells.refreshCount.textContent = String(credential.refreshCount ?? 0);
  cells.lastError.replaceChildren(
    ...(credential.lastError
      ? [
          mono(credential.lastError.code),
          el('div', {
            className: 'reason',
            text: truncate(credential.lastError.message ?? '', 300),
            title: credential.lastError.at ? absoluteTime(credential.lastError.at) : '',
          }),
        ]
      : [el('span', { className: 'muted', text: '—' })]),
  );
  updateClock(credential.id);
}

/** The cells that change with time alone. @param {string} id */
function updateClock(id, now = Date.now()) {
  const credential = state.credentials.get(id);
  const entry = state.credentialRows.get(id);
  if (credential === undefined || entry === undefined) return;
  const expiry = expiryText(credential.expiresAt, now);
  entry.cells.expiry.textContent = expiry.text;
  entry.cells.expiry.dataset.tone = expiry.tone;
  entry.cells.expiry.title = absoluteTime(credential.expiresAt);
  entry.cells.lastRefresh.textContent = relativeTime(credential.lastRefreshAt, now);
  entry.cells.lastRefresh.title = absoluteTime(credential.lastRefreshAt);
}

function tick() {
  const now = Date.now();
  for (const id of state.credentialRows.keys()) updateClock(id, now);
}

/** @param {Credential[]} credentials */
function renderCredentials(credentials) {
  state.credentialsLoaded = true;
  const body = byId('credential-rows');
  const seen = new Set(credentials.map((c) => c.id));
  for (const id of [...state.credentialRows.keys()]) {
    if (!seen.has(id)) removeCredentialRow(id);
  }
  const sorted = [...credentials].sort(
    (a, b) => (toMs(b.createdAt) ?? 0) - (toMs(a.createdAt) ?? 0) || a.id.localeCompare(b.id),
  );
  for (const credential of sorted) updateCredentialRow(credential);
  if (sorted.length === 0) {
    body.replaceChildren(
      placeholderRow(8, 'No credentials yet. Connect an account with an auth client above.'),
    );
    return;
  }
  for (const placeholder of body.querySelectorAll('.placeholder-row')) placeholder.remove();
  // Put rows in order, moving only those out of place (a moved button loses focus).
  sorted.forEach((credential, index) => {
    const row = credentialRow(credential.id).row;
    if (body.children[index] !== row) body.insertBefore(row, body.children[index] ?? null);
  });
  if (state.highlight !== null && state.credentialRows.has(state.highlight)) {
    const row = credentialRow(state.highlight).row;
    row.classList.add('highlight');
    if (location.hash === '#credentials') row.scrollIntoView({ block: 'nearest' });
    setTimeout(() => row.classList.remove('highlight'), 4000);
    state.highlight = null;
  }
}

/** @param {string} id */
function removeCredentialRow(id) {
  state.credentialRows.get(id)?.row.remove();
  state.credentialRows.delete(id);
  state.credentials.delete(id);
  if (state.credentialRows.size === 0 && state.credentialsLoaded) {
    byId('credential-rows').replaceChildren(
      placeholderRow(8, 'No credentials yet. Connect an account with an auth client above.'),
    );
  }
}

/** Forces a refresh, then reloads the row. @param {string} id */
async function onRefresh(id) {
  const entry = credentialRow(id);
  const session = state.session;
  entry.refresh.disabled = true;
  entry.refresh.textContent = 'Refreshing…';
  try {
    await api('POST', `/v1/credentials/${encodeURIComponent(id)}/refresh`, {});
    if (session !== state.session) return;
    notify('success', `Refreshed ${id}.`, { testid: 'refresh-banner' });
  } catch (error) {
    if (session !== state.session) return;
    reportError(error, `Refreshing ${id} failed`);
  } finally {
    entry.refresh.disabled = false;
    entry.refresh.textContent = 'Refresh now';
  }
  if (session !== state.session) return;
  await reloadCredential(id);
  void loadEvents();
}

/** @param {string} id */
async function reloadCredential(id) {
  const session = state.session;
  try {
    const credential = await api('GET', `/v1/credentials/${encodeURIComponent(id)}`);
    if (session === state.session) updateCredentialRow(credential);
  } catch (error) {
    if (session !== state.session) return;
    if (error instanceof ApiError && error.status === 404) removeCredentialRow(id);
    else reportError(error, `Reloading ${id} failed`);
  }
}

/** Revokes at the provider and deletes, after asking. @param {string} id */
async function onRevoke(id) {
  const credential = state.credentials.get(id);
  const client = credential ? state.authClients.get(credential.authClientId) : undefined;
  const question = `Revoke credential ${id}${client ? ` (${client.name})` : ''}?\n\nThe vault revokes the tokens at the provider where it can and deletes the credential. Components using it stop working until the account is connected again.`;
  if (!confirm(question)) return;
  const entry = credentialRow(id);
  const session = state.session;
  entry.revoke.disabled = true;
  entry.refresh.disabled = true;
  try {
    await api('DELETE', `/v1/credentials/${encodeURIComponent(id)}`);
    if (session !== state.session) return;
    removeCredentialRow(id);
    notify('success', `Revoked ${id}.`);
    void loadEvents();
  } catch (error) {
    if (session !== state.session) return;
    entry.revoke.disabled = false;
    entry.refresh.disabled = false;
    reportError(error, `Revoking ${id} failed`);
  }
}

// ------------------------------------------------------------------- webhooks

async function loadWebhooks() {
  const session = state.session;
  try {
    const answer = await api('GET', '/v1/webhooks');
    if (session !== state.session) return;
    renderWebhooks(answer.webhooks ?? []);
  } catch (error) {
    if (session === state.session) reportError(error, 'Loading webhooks failed', 'connection');
  }
}

/** "HTTP 200 · 1 attempt · 12 s ago", then the error and the next try. @param {LastDelivery} last */
function lastDeliveryDetails(last) {
  const parts = [];
  if (last.httpStatus !== null) parts.push(`HTTP ${last.httpStatus}`);
  parts.push(`${last.attempts} attempt${last.attempts === 1 ? '' : 's'}`);
  parts.push(last.at === null ? 'not tried yet' : relativeTime(last.at));
  const lines = [
    el('div', {
      className: 'reason',
      text: parts.join(' · '),
      title: last.at === null ? '' : absoluteTime(last.at),
      testid: 'webhook-last-details',
    }),
  ];
  if (last.error)
    lines.push(
      el('div', {
        className: 'reason',
        text: truncate(last.error, 200),
        testid: 'webhook-last-error',
      }),
    );
  if (last.status === 'retrying' && last.nextAttemptAt !== null) {
    const ms = toMs(last.nextAttemptAt);
    const seconds = ms === null ? 0 : Math.max(0, Math.ceil((ms - Date.now()) / 1000));
    lines.push(el('div', { className: 'reason', text: `next try in ${formatDuration(seconds)}` }));
  }
  return lines;
}

/** @param {Webhook[]} webhooks */
function renderWebhooks(webhooks) {
  state.webhooksLoaded = true;
  const body = byId('webhook-rows');
  if (webhooks.length === 0) {
    body.replaceChildren(
      placeholderRow(4, 'No webhooks yet. Add one below to be told about credential events.'),
    );
    return;
  }
  const busy = new Set(
    [...body.querySelectorAll('button[data-busy="true"]')].map((b) =>
      b.getAttribute('data-webhook-id'),
    ),
  );
  body.replaceChildren(
    ...webhooks.map((webhook) => {
      const remove = el('button', {
        className: 'button-small button-danger',
        text: 'Delete',
        testid: 'webhook-delete',
        attrs: {
          type: 'button',
          'data-webhook-id': webhook.id,
          'aria-label': `Delete webhook ${webhook.url}`,
        },
      });
      if (busy.has(webhook.id)) {
        remove.disabled = true;
        remove.dataset.busy = 'true';
      }
      remove.addEventListener('click', () => void onDeleteWebhook(webhook, remove));
      const last = webhook.lastDelivery;
      return el('tr', { testid: 'webhook-row', attrs: { 'data-webhook-id': webhook.id } }, [
        el('td', {}, [
          el('code', {
            className: 'mono clip webhook-url',
            text: webhook.url,
            title: webhook.url,
            testid: 'webhook-row-url',
          }),
          el('div', { className: 'reason', text: webhook.id }),
        ]),
        el('td', { testid: 'webhook-row-events' }, [
          el('span', {
            className: 'webhook-events',
            text: webhook.events.length === 5 ? 'all credential events' : webhook.events.join(', '),
            title: webhook.events.join(', '),
          }),
        ]),
        el(
          'td',
          { testid: 'webhook-last-delivery' },
          last === null
            ? [el('span', { className: 'muted', text: 'No deliveries yet' })]
            : [badge(last.status), ...lastDeliveryDetails(last)],
        ),
        el('td', { className: 'actions' }, [remove]),
      ]);
    }),
  );
}

/** @param {SubmitEvent} event */
async function onAddWebhook(event) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.currentTarget);
  const data = new FormData(form);
  const url = String(data.get('url') ?? '').trim();
  const events = data.getAll('events').map(String);
  const message = byId('wh-message');
  const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type="submit"]'));
  message.hidden = true;
  if (events.length === 0) {
    message.hidden = false;
    message.textContent = 'Choose at least one event.';
    return;
  }
  submit.disabled = true;
  const session = state.session;
  try {
    const created = await api('POST', '/v1/webhooks', { url, events });
    if (session !== state.session) return;
    form.reset();
    showWebhookSecret(created.url, created.secret);
    notify('success', `Added webhook ${created.url}.`);
    await loadWebhooks();
  } catch (error) {
    if (session !== state.session) return;
    if (error instanceof ApiError && error.status === 401) {
      reportError(error, 'Adding the webhook failed');
      return;
    }
    message.hidden = false;
    message.textContent =
      error instanceof ApiError
        ? `${error.message} (${error.code})`
        : `Adding the webhook failed: ${String(error)}`;
  } finally {
    submit.disabled = false;
  }
}

/** The signing secret, shown once right after creation. @param {string} url @param {string} secret */
function showWebhookSecret(url, secret) {
  byId('webhook-secret-url').textContent = url;
  byId('webhook-secret-value').textContent = secret;
  byId('webhook-secret').hidden = false;
}

function hideWebhookSecret() {
  byId('webhook-secret').hidden = true;
  byId('webhook-secret-value').textContent = '';
  byId('webhook-secret-url').textContent = '';
}

async function onCopyWebhookSecret() {
  const secret = byId('webhook-secret-value').textContent ?? '';
  if (secret === '') return;
  try {
    await navigator.clipboard.writeText(secret);
    notify('success', 'The signing secret is on the clipboard.');
  } catch {
    const range = document.createRange();
    range.selectNodeContents(byId('webhook-secret-value'));
    getSelection()?.removeAllRanges();
    getSelection()?.addRange(range);
    notify('info', 'The browser did not allow copying: the secret is selected, copy it by hand.');
  }
}

/** @param {Webhook} webhook @param {HTMLButtonElement} button */
async function onDeleteWebhook(webhook, button) {
  if (!confirm(`Delete the webhook to ${webhook.url}?\n\nDeliveries not sent yet are dropped.`))
    return;
  const session = state.session;
  button.disabled = true;
  button.dataset.busy = 'true';
  try {
    await api('DELETE', `/v1/webhooks/${encodeURIComponent(webhook.id)}`);
    if (session !== state.session) return;
    notify('success', `Deleted webhook ${webhook.url}.`);
  } catch (error) {
    if (session !== state.session) return;
    reportError(error, `Deleting the webhook ${webhook.url} failed`);
  } finally {
    button.disabled = false;
    delete button.dataset.busy;
  }
  if (session === state.session) await loadWebhooks();
}

// --------------------------------------------------------------------- events

let eventsLoading = false;

/** Reads the events after the cursor, page by page, and puts them on top of the list. */
async function loadEvents() {
  if (eventsLoading) return;
  eventsLoading = true;
  const session = state.session;
  try {
    for (let page = 0; page < EVENTS_MAX_PAGES_PER_POLL; page += 1) {
      const query = new URLSearchParams({ limit: String(EVENTS_PAGE_SIZE) });
      if (state.eventsCursor !== null) query.set('after', String(state.eventsCursor));
      const answer = await api('GET', `/v1/events?${query}`);
      if (session !== state.session) return;
      /** @type {VaultEvent[]} */
      const events = answer.events ?? [];
      const last = events.at(-1);
      if (last !== undefined) state.eventsCursor = last.id;
      if (answer.next !== null && answer.next !== undefined) state.eventsCursor = answer.next;
      prependEvents(events);
      if (events.length === 0 || answer.next === null || answer.next === undefined) break;
    }
  } catch (error) {
    if (session === state.session) reportError(error, 'Loading events failed', 'connection');
  } finally {
    eventsLoading = false;
  }
}

/** @param {VaultEvent[]} events oldest first */
function prependEvents(events) {
  if (events.length === 0) return;
  const list = byId('event-list');
  for (const event of events.slice(-EVENTS_KEPT)) list.prepend(eventItem(event));
  while (list.children.length > EVENTS_KEPT) list.lastElementChild?.remove();
  byId('events-empty').hidden = list.children.length > 0;
}

/** @param {VaultEvent} event */
function eventItem(event) {
  const ms = toMs(event.at);
  const time = el('time', {
    className: 'event-time',
    text: ms === null ? '' : new Date(ms).toLocaleTimeString(),
    title: absoluteTime(event.at),
    attrs: ms === null ? {} : { datetime: new Date(ms).toISOString() },
  });
  const summary = summarize(event.data);
  return el(
    'li',
    {
      className: 'event',
      testid: 'event',
      attrs: {
        'data-event-type': event.type,
        'data-event-id': String(event.id),
        ...(event.credentialId ? { 'data-credential-id': event.credentialId } : {}),
      },
    },
    [
      time,
      badge(event.type),
      event.credentialId ? mono(event.credentialId) : el('span', { className: 'muted', text: '—' }),
      el('span', { className: 'event-data', text: truncate(summary, 240), title: summary }),
    ],
  );
}

// --------------------------------------------------------- add an auth client

async function loadProviders() {
  const session = state.session;
  const select = /** @type {HTMLSelectElement} */ (byId('ac-provider'));
  try {
    const answer = await api('GET', '/v1/providers');
    if (session !== state.session) return;
    /** @type {Provider[]} */
    const providers = answer.providers ?? [];
    state.providers = new Map(providers.map((p) => [p.id, p]));
    const previous = select.value;
    select.replaceChildren(
      el('option', { text: 'Choose a provider…', attrs: { value: '' } }),
      ...[...providers]
        .sort((a, b) => a.displayName.localeCompare(b.displayName))
        .map((p) => el('option', { text: p.displayName, attrs: { value: p.id } })),
    );
    if (state.providers.has(previous)) select.value = previous;
    onProviderChange();
    // Provider names in the tables now resolve to display names.
    renderAuthClients([...state.authClients.values()]);
    for (const credential of state.credentials.values()) updateCredentialRow(credential);
  } catch (error) {
    if (session === state.session) reportError(error, 'Loading the provider catalog failed');
  }
}

function onProviderChange() {
  const select = /** @type {HTMLSelectElement} */ (byId('ac-provider'));
  const provider = state.providers.get(select.value);
  const scopes = /** @type {HTMLInputElement} */ (byId('ac-scopes'));
  scopes.placeholder = provider?.defaultScopes?.join(' ') ?? '';

  const docs = byId('ac-provider-docs');
  const link = provider?.docs?.find(
    (url) => URL.canParse(url) && new URL(url).protocol === 'https:',
  );
  docs.hidden = link === undefined;
  docs.replaceChildren(
    ...(link === undefined
      ? []
      : [
          el('a', {
            text: 'Provider documentation',
            attrs: { href: link, target: '_blank', rel: 'noopener noreferrer' },
          }),
        ]),
  );

  const fieldset = byId('ac-placeholders');
  const legend = fieldset.querySelector('legend');
  const entries = Object.entries(provider?.placeholders ?? {});
  fieldset.replaceChildren(
    ...(legend ? [legend] : []),
    ...entries.map(([name, spec]) => {
      const id = `ac-placeholder-${name}`;
      return el('div', { className: 'field' }, [
        el('label', { text: name, attrs: { for: id } }),
        el('input', {
          attrs: {
            id,
            'data-placeholder-name': name,
            placeholder: spec.default ?? '',
            spellcheck: 'false',
          },
        }),
        spec.description ? el('p', { className: 'hint', text: spec.description }) : null,
      ]);
    }),
  );
  fieldset.hidden = entries.length === 0;

  // The generic profile has no URLs of its own: the auth client must give them.
  const generic = provider?.id === 'oauth2';
  const endpoints = /** @type {HTMLDetailsElement} */ (byId('ac-endpoints'));
  if (generic) endpoints.open = true;
  byId('ac-endpoints-hint').textContent = generic
    ? '(required for the generic provider)'
    : '(optional overrides)';
  for (const name of ['ac-authorization-url', 'ac-token-url']) {
    /** @type {HTMLInputElement} */ (byId(name)).required = generic;
  }
}

/** @param {SubmitEvent} event */
async function onAddAuthClient(event) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.currentTarget);
  const data = new FormData(form);
  /** @param {string} name */
  const field = (name) => String(data.get(name) ?? '').trim();
  /** @type {Record<string, unknown>} */
  const body = {
    name: field('name'),
    providerId: field('providerId'),
    clientId: field('clientId'),
    clientSecret: String(data.get('clientSecret') ?? ''),
  };
  const scopes = field('scopes').split(/\s+/).filter(Boolean);
  if (scopes.length > 0) body.scopes = scopes;
  /** @type {Record<string, string>} */
  const placeholders = {};
  for (const input of form.querySelectorAll('input[data-placeholder-name]')) {
    const value = /** @type {HTMLInputElement} */ (input).value.trim();
    const name = input.getAttribute('data-placeholder-name');
    if (name && value) placeholders[name] = value;
  }
  if (Object.keys(placeholders).length > 0) body.placeholders = placeholders;
  /** @type {Record<string, string>} */
  const endpoints = {};
  for (const name of ['authorizationUrl', 'tokenUrl', 'revocationUrl']) {
    if (field(name)) endpoints[name] = field(name);
  }
  if (Object.keys(endpoints).length > 0) body.endpoints = endpoints;

  const message = byId('ac-message');
  const submit = /** @type {HTMLButtonElement} */ (form.querySelector('button[type="submit"]'));
  message.hidden = true;
  submit.disabled = true;
  const session = state.session;
  try {
    const created = await api('POST', '/v1/auth-clients', body);
    if (session !== state.session) return;
    form.reset();
    onProviderChange();
    notify('success', `Added auth client ${created?.name ?? body.name}.`);
    await loadOverview();
  } catch (error) {
    if (session !== state.session) return;
    if (error instanceof ApiError && error.status === 401) {
      reportError(error, 'Adding the auth client failed');
      return;
    }
    message.hidden = false;
    message.textContent =
      error instanceof ApiError
        ? `${error.message} (${error.code})`
        : `Adding the auth client failed: ${String(error)}`;
  } finally {
    submit.disabled = false;
  }
}

// ----------------------------------------------------------------------- boot

function boot() {
  byId('sign-in-form').addEventListener('submit', (event) => void onSignIn(event));
  byId('auth-client-form').addEventListener('submit', (event) => void onAddAuthClient(event));
  byId('ac-provider').addEventListener('change', onProviderChange);
  byId('webhook-form').addEventListener('submit', (event) => void onAddWebhook(event));
  byId('webhook-secret-done').addEventListener('click', hideWebhookSecret);
  byId('webhook-secret-copy').addEventListener('click', () => void onCopyWebhookSecret());
  byId('sign-out').addEventListener('click', () => signOut('Signed out.', 'info'));
  document.addEventListener('visibilitychange', () => {
    // Catch up at once when the tab comes back instead of waiting for the next poll.
    if (!document.hidden && apiKey() !== null && !byId('app').hidden) {
      void loadOverview();
      void loadEvents();
      void loadWebhooks();
    }
  });
  showConnectResult();
  if (apiKey() === null) showSignIn();
  else startSession();
}

boot();
