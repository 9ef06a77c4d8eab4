/*
 * The realtime-app dashboard: sign-in, live tables, metrics, activity feed, toasts and forms.
 * ES5 and no framework, like realtime-client.js. Document fields only ever reach the page
 * through textContent / text nodes: never innerHTML with data.
 */
(function () {
  'use strict';

  var API_BASE = '/api/v1';
  var SESSION_KEY = 'realtime-app.session';
  var TENANT_KEY = 'realtime-app.tenant';
  // How long a changed row stays highlighted; matches the CSS animation.
  var FLASH_MS = 1600;
  // How long a removed row takes to fade before it leaves the table; matches the CSS transition.
  var REMOVE_MS = 700;
  var TOAST_MS = 7000;
  var TOASTS_MAX = 4;
  var FEED_MAX = 50;
  var TRANSPORT_NAME = /^[a-z][a-z0-9-]{0,40}$/;

  var STATE_LABELS = {
    connecting: 'Connecting',
    live: 'Live',
    reconnecting: 'Reconnecting',
    polling: 'Polling (fallback)',
    offline: 'Offline',
    closed: 'Not connected'
  };

  var SERVER_FIELDS = ['id', 'tenant', 'version', 'created_at', 'updated_at'];

  var COLLECTIONS = {
    services: {
      singular: 'service',
      sort: 'name',
      title: function (doc) { return doc.name || doc.id; },
      columns: [
        {field: 'name', label: 'Name'},
        {field: 'status', label: 'Status', badge: true},
        {field: 'response_time_ms', label: 'Response time', format: formatMs, numeric: true},
        {field: 'details', label: 'Details'}
      ],
      fields: [
        {name: 'name', label: 'Name', type: 'text', required: true},
        {name: 'status', label: 'Status', type: 'select', options: ['up', 'degraded', 'down'], required: true},
        {name: 'response_time_ms', label: 'Response time (ms)', type: 'integer', min: 0},
        {name: 'details', label: 'Details', type: 'textarea'}
      ]
    },
    incidents: {
      singular: 'incident',
      sort: '-created_at',
      title: function (doc) { return doc.title || doc.id; },
      columns: [
        {field: 'title', label: 'Title'},
        {field: 'service_id', label: 'Service', format: serviceName},
        {field: 'severity', label: 'Severity', badge: true},
        {field: 'resolved', label: 'State', format: function (v) { return v ? 'resolved' : 'open'; }, badge: true}
      ],
      fields: [
        {name: 'title', label: 'Title', type: 'text', required: true},
        {name: 'service_id', label: 'Service', type: 'service'},
        {name: 'severity', label: 'Severity', type: 'select', options: ['low', 'medium', 'high', 'critical'], required: true},
        {name: 'resolved', label: 'Resolved', type: 'checkbox'}
      ]
    }
  };
  var COLLECTION_NAMES = ['services', 'incidents'];

  var app = {
    session: null,
    user: null,
    client: null,
    views: {},
    tables: {},
    forms: {},
    canWrite: {},
    isAdmin: false,
    tenant: '',
    tenants: {},
    feedPaused: false,
    feedSkipped: 0,
    wasLiveOnce: false
  };

  // ---------------------------------------------------------------- DOM helpers

  function byId(id) { return document.getElementById(id); }

  function setText(node, value) {
    var text = value === null || value === undefined ? '' : String(value);
    if (node.textContent !== text) { node.textContent = text; }
  }

  function show(node, visible) {
    if (visible) { node.removeAttribute('hidden'); } else { node.setAttribute('hidden', ''); }
  }

  // el('tr', {'class': 'x', 'data-id': id}, ['text', childNode]); strings become text nodes.
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    var k;
    for (k in attrs) {
      if (!attrs.hasOwnProperty(k) || attrs[k] === null || attrs[k] === undefined || attrs[k] === false) { continue; }
      if (k === 'class') { node.className = attrs[k]; } else { node.setAttribute(k, attrs[k] === true ? '' : String(attrs[k])); }
    }
    if (children) {
      for (var i = 0; i < children.length; i++) {
        var child = children[i];
        if (child === null || child === undefined) { continue; }
        node.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
      }
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) { node.removeChild(node.firstChild); }
  }

  function detach(node) {
    if (node && node.parentNode) { node.parentNode.removeChild(node); }
  }

  // The nearest element (from node up to stop) carrying the attribute; Element.closest is not in IE11.
  function closestWith(node, attr, stop) {
    while (node && node !== stop && node.nodeType === 1) {
      if (node.hasAttribute(attr)) { return node; }
      node = node.parentNode;
    }
    return null;
  }

  function contains(list, item) {
    for (var i = 0; i < list.length; i++) { if (list[i] === item) { return true; } }
    return false;
  }

  function pad2(n) { return (n < 10 ? '0' : '') + n; }

  function clockTime(date) {
    return pad2(date.getHours()) + ':' + pad2(date.getMinutes()) + ':' + pad2(date.getSeconds());
  }

  function ago(ms) {
    var s = Math.max(0, Math.floor(ms / 1000));
    if (s < 90) { return s + ' s ago'; }
    var m = Math.floor(s / 60);
    if (m < 90) { return m + ' min ago'; }
    return Math.floor(m / 60) + ' h ago';
  }

  function formatMs(value) {
    return typeof value === 'number' ? value + ' ms' : '';
  }

  function serviceName(id) {
    if (!id) { return ''; }
    var services = app.views.services;
    var doc = services && services.get(id);
    return doc ? (doc.name || id) : id;
  }

  function display(value) {
    if (value === null || value === undefined) { return ''; }
    if (typeof value === 'object') { return JSON.stringify(value); }
    return String(value);
  }

  function parseQuery() {
    var out = {};
    var q = window.location.search.replace(/^\?/, '');
    if (!q) { return out; }
    var parts = q.split('&');
    for (var i = 0; i < parts.length; i++) {
      var kv = parts[i].split('=');
      try {
        out[decodeURIComponent(kv[0])] = decodeURIComponent((kv[1] || '').replace(/\+/g, ' '));
      } catch (e) { /* a malformed pair is ignored */ }
    }
    return out;
  }

  // ---------------------------------------------------------------- session storage

  function loadSession() {
    try {
      var raw = window.sessionStorage.getItem(SESSION_KEY);
      var data = raw ? JSON.parse(raw) : null;
      return data && data.access_token ? data : null;
    } catch (e) {
      return null;
    }
  }

  function saveSession(tokens) {
    var data = {
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token || (app.session && app.session.refresh_token) || null,
      expires_in: tokens.expires_in,
      obtained_at: new Date().getTime()
    };
    app.session = data;
    try { window.sessionStorage.setItem(SESSION_KEY, JSON.stringify(data)); } catch (e) { /* private mode */ }
  }

  function forgetSession() {
    app.session = null;
    try {
      window.sessionStorage.removeItem(SESSION_KEY);
      window.sessionStorage.removeItem(TENANT_KEY);
    } catch (e) { /* private mode */ }
  }

  // ---------------------------------------------------------------- login / logout

  function showLogin(notice) {
    show(byId('login'), true);
    show(byId('app'), false);
    show(byId('conn'), false);
    show(byId('session'), false);
    setText(byId('login-notice'), notice || '');
    byId('login-password').value = '';
    byId('login-username').focus();
  }

  function onLoginSubmit(event) {
    event.preventDefault();
    var username = byId('login-username').value;
    var password = byId('login-password').value;
    var errorBox = byId('login-error');
    var submit = byId('login-submit');
    setText(errorBox, '');
    if (!username || !password) {
      setText(errorBox, 'Enter your username and password.');
      (username ? byId('login-password') : byId('login-username')).focus();
      return;
    }
    submit.disabled = true;
    setText(submit, 'Signing in...');
    window.RealtimeClient.login({apiBase: API_BASE, username: username, password: password}, function (err, body) {
      submit.disabled = false;
      setText(submit, 'Sign in');
      if (err) {
        var message;
        if (err.status === 0) { message = 'Cannot reach the server. Check your connection and try again.'; }
        else if (err.status === 401 || err.status === 400) { message = 'Wrong username or password.'; }
        else if (err.status === 429) {
          var wait = err.response && err.response.header('Retry-After');
          message = 'Too many attempts.' + (wait ? ' Try again in ' + wait + ' s.' : ' Try again later.');
        } else { message = err.message; }
        setText(errorBox, message);
        byId('login-password').focus();
        return;
      }
      byId('login-password').value = '';
      saveSession(body);
      startSession();
    });
  }

  function logout(notice) {
    stopSession();
    forgetSession();
    showLogin(notice);
  }

  // ---------------------------------------------------------------- session lifecycle

  function startSession() {
    var session = app.session;
    var claims = window.RealtimeClient.decodeToken(session.access_token) || {};
    app.user = {name: claims.sub || '', tenant: claims.tenant || '', roles: claims.roles || []};
    app.isAdmin = contains(app.user.roles, 'admin');
    app.tenants = {};
    if (app.user.tenant) { app.tenants[app.user.tenant] = true; }
    app.tenant = '';
    if (app.isAdmin) {
      try { app.tenant = window.sessionStorage.getItem(TENANT_KEY) || ''; } catch (e) { app.tenant = ''; }
    }
    var roleWrites = app.isAdmin || contains(app.user.roles, 'editor');
    for (var i = 0; i < COLLECTION_NAMES.length; i++) { app.canWrite[COLLECTION_NAMES[i]] = roleWrites; }

    show(byId('login'), false);
    setText(byId('login-error'), '');
    setText(byId('login-notice'), '');
    show(byId('app'), true);
    show(byId('conn'), true);
    show(byId('session'), true);
    renderUser();
    renderTenantSwitcher();
    buildTables();
    applyWritePermissions();

    var ttl = null;
    if (typeof session.expires_in === 'number' && session.obtained_at) {
      ttl = session.expires_in * 1000 - (new Date().getTime() - session.obtained_at);
    }
    var query = parseQuery();
    var transport = query.transport && TRANSPORT_NAME.test(query.transport) ? query.transport : null;
    var client = new window.RealtimeClient({
      url: '/realtime',
      apiBase: API_BASE,
      token: session.access_token,
      refreshToken: session.refresh_token,
      tokenTtlMs: ttl,
      transports: transport ? [transport] : null,
      autoConnect: false
    });
    app.client = client;
    app.wasLiveOnce = false;
    client.on('state', onConnState);
    client.on('transport', renderConn);
    client.on('latency', renderConn);
    client.on('reconnect_scheduled', renderConn);
    client.on('token', function (tokens) { saveSession(tokens); });
    client.on('auth', onAuthOk);
    client.on('unauthorized', function () {
      logout('Your session has ended. Sign in again to continue.');
    });
    client.on('error', function (err) {
      if (err && err.code === 'forbidden') { toast('error', 'The server refused the live connection (forbidden).'); }
    });

    subscribeAll();
    client.connect();
    renderConn();
    loadCollectionsMeta();
    byId('main').focus();
  }

  function stopSession() {
    if (app.client) {
      app.client.close();
      app.client.off();
    }
    app.client = null;
    for (var name in app.views) {
      if (app.views.hasOwnProperty(name)) { app.views[name].off(); }
    }
    app.views = {};
    for (var i = 0; i < COLLECTION_NAMES.length; i++) {
      var n = COLLECTION_NAMES[i];
      closeForm(n, false);
      // Forms depend on the user's roles (admins get a tenant field): build them again next time.
      if (app.forms[n]) { detach(app.forms[n].node); }
      resetTable(n);
      setText(byId('status-' + n), '');
    }
    app.forms = {};
    clear(byId('feed'));
    clear(byId('toasts'));
    app.feedSkipped = 0;
    document.body.setAttribute('data-conn-state', 'closed');
    renderMetrics();
  }

  function onAuthOk(info) {
    if (!info) { return; }
    if (info.roles && info.roles.length) {
      app.user.roles = info.roles;
      app.isAdmin = contains(info.roles, 'admin');
    }
    if (info.user) { app.user.name = info.user; }
    if (info.tenant) {
      app.user.tenant = info.tenant;
      noteTenant(info.tenant);
    }
    renderUser();
  }

  // Write permission per collection comes from the server's own table; roles are the fallback.
  function loadCollectionsMeta() {
    var client = app.client;
    client.request('GET', 'collections', null, null, function (err, body) {
      if (err || client !== app.client || !body || !body.items) { return; }
      for (var i = 0; i < body.items.length; i++) {
        var meta = body.items[i];
        if (!COLLECTIONS[meta.name]) { continue; }
        var writers = (meta.permissions && meta.permissions.write) || [];
        var allowed = false;
        for (var r = 0; r < app.user.roles.length; r++) {
          if (contains(writers, app.user.roles[r])) { allowed = true; }
        }
        app.canWrite[meta.name] = allowed;
        adoptSchemaEnums(meta.name, meta.schema);
      }
      applyWritePermissions();
    });
  }

  function adoptSchemaEnums(name, schema) {
    var props = schema && schema.properties;
    if (!props) { return; }
    var fields = COLLECTIONS[name].fields;
    for (var i = 0; i < fields.length; i++) {
      var spec = props[fields[i].name];
      if (fields[i].type === 'select' && spec && spec['enum'] && spec['enum'].length) {
        fields[i].options = spec['enum'].slice();
      }
    }
  }

  function renderUser() {
    setText(byId('user-name'), app.user.name);
    var roles = app.user.roles.join(', ');
    setText(byId('user-roles'), '(' + roles + (app.user.tenant ? ' in ' + app.user.tenant : '') + ')');
  }

  function applyWritePermissions() {
    var anyWrite = false;
    for (var i = 0; i < COLLECTION_NAMES.length; i++) {
      var name = COLLECTION_NAMES[i];
      var can = !!app.canWrite[name];
      anyWrite = anyWrite || can;
      show(byId('new-' + name), can);
      var table = app.tables[name];
      if (table && table.canWrite !== can) {
        table.canWrite = can;
        rebuildTable(name);
      }
      if (!can) { closeForm(name, false); }
    }
    byId('app').setAttribute('data-can-write', anyWrite ? 'true' : 'false');
  }

  // ---------------------------------------------------------------- tenants (admins)

  function renderTenantSwitcher() {
    var wrap = byId('tenant-switcher');
    show(wrap, app.isAdmin);
    if (!app.isAdmin) { return; }
    var select = byId('tenant-select');
    var names = [];
    for (var t in app.tenants) { if (app.tenants.hasOwnProperty(t)) { names.push(t); } }
    if (app.tenant && !app.tenants[app.tenant]) { names.push(app.tenant); }
    names.sort();
    var wanted = [''].concat(names);
    var same = select.options.length === wanted.length;
    for (var i = 0; same && i < wanted.length; i++) { same = select.options[i].value === wanted[i]; }
    if (!same) {
      clear(select);
      select.appendChild(el('option', {value: ''}, ['All tenants']));
      for (i = 0; i < names.length; i++) { select.appendChild(el('option', {value: names[i]}, [names[i]])); }
    }
    select.value = app.tenant;
  }

  function noteTenant(tenant) {
    if (!tenant || app.tenants[tenant]) { return false; }
    app.tenants[tenant] = true;
    return true;
  }

  function onTenantChange() {
    app.tenant = byId('tenant-select').value;
    try { window.sessionStorage.setItem(TENANT_KEY, app.tenant); } catch (e) { /* private mode */ }
    for (var i = 0; i < COLLECTION_NAMES.length; i++) { closeForm(COLLECTION_NAMES[i], false); }
    subscribeAll();
    toast('info', app.tenant ? 'Showing tenant ' + app.tenant + '.' : 'Showing all tenants.');
  }

  // ---------------------------------------------------------------- subscriptions

  function subscribeAll() {
    var client = app.client;
    var filter = app.isAdmin && app.tenant ? {tenant: app.tenant} : null;
    for (var i = 0; i < COLLECTION_NAMES.length; i++) {
      var name = COLLECTION_NAMES[i];
      var old = app.views[name];
      if (old) {
        old.off();
        old.unsubscribe();
      }
      resetTable(name);
      setText(byId('status-' + name), 'Loading...');
      app.views[name] = subscribeOne(client, name, filter);
    }
    renderMetrics();
  }

  function subscribeOne(client, name, filter) {
    var view = client.subscribe(name, filter, {sort: COLLECTIONS[name].sort});
    var pending = {};
    view.on('change', function (ev) {
      if (ev.initial) { return; }
      if (ev.op !== 'removed') { pending[ev.id] = true; }
      if (ev.source !== 'local') {
        addFeedItem(name, ev);
        maybeToast(name, ev);
      }
    });
    view.on('update', function () {
      if (app.views[name] !== view) { return; }
      var flashes = pending;
      pending = {};
      setText(byId('status-' + name), '');
      var tenantsChanged = false;
      for (var i = 0; i < view.docs.length; i++) {
        if (noteTenant(view.docs[i].tenant)) { tenantsChanged = true; }
      }
      if (tenantsChanged) { renderTenantSwitcher(); }
      renderTable(name, flashes);
      if (name === 'services' && app.views.incidents) { renderTable('incidents', {}); }
      renderMetrics();
      noteFormDocChange(name);
      renderConn();
    });
    view.on('error', function (err) {
      if (app.views[name] !== view) { return; }
      var what = err.code === 'poll_failed' ? 'Could not refresh ' : 'Live query failed for ';
      setText(byId('status-' + name), what + name + ': ' + (err.message || err.code));
    });
    return view;
  }

  // ---------------------------------------------------------------- connection indicator

  function onConnState(state) {
    var client = app.client;
    document.body.setAttribute('data-conn-state', state);
    byId('conn-state').setAttribute('data-since', String(new Date().getTime()));
    if (state === 'live') {
      if (app.wasLiveOnce) {
        toast('ok', 'Live updates restored' + (client.transport ? ' (' + client.transport + ').' : '.'));
      }
      app.wasLiveOnce = true;
    } else if (state === 'polling') {
      toast('warn', 'Live updates are unavailable. Polling the server every ' +
        Math.round(client.options.pollIntervalMs / 1000) + ' s and still trying to reconnect.');
    } else if (state === 'offline') {
      toast('warn', 'You are offline. The tables show the last data received.');
    }
    renderConn();
  }

  function renderConn() {
    var client = app.client;
    var state = client ? client.state : 'closed';
    var stateNode = byId('conn-state');
    stateNode.setAttribute('data-state', state);
    setText(stateNode, STATE_LABELS[state] || state);

    var transportNode = byId('conn-transport');
    var transport = client && state === 'live' ? client.transport : null;
    if (state === 'polling') {
      transportNode.setAttribute('data-transport', 'rest-polling');
      setText(transportNode, 'REST polling');
    } else {
      transportNode.setAttribute('data-transport', transport || '');
      setText(transportNode, transport || 'none');
    }

    var latencyNode = byId('conn-latency');
    var latency = client && state === 'live' && typeof client.latency === 'number' ? client.latency : null;
    latencyNode.setAttribute('data-latency', latency === null ? '' : String(latency));
    setText(latencyNode, latency === null ? 'n/a' : latency + ' ms');

    show(byId('conn-retry'), state === 'reconnecting' || state === 'polling' || state === 'offline');
    renderUpdated();
  }

  // The ticking badge: "Live, updated 5 s ago". Not a live region: it changes every second.
  function renderUpdated() {
    var client = app.client;
    var node = byId('conn-updated');
    if (!client) {
      node.setAttribute('data-updated-at', '');
      setText(node, '');
      return;
    }
    var now = new Date().getTime();
    var at = client.lastDataAt;
    node.setAttribute('data-updated-at', at ? String(at) : '');
    var freshness = at ? 'updated ' + ago(now - at) : 'waiting for data';
    var text;
    switch (client.state) {
      case 'live': text = 'Live, ' + freshness; break;
      case 'polling': text = 'Polling, ' + freshness; break;
      case 'reconnecting':
        text = 'Reconnecting' + (client.nextRetryAt ? ' in ' + Math.max(0, Math.ceil((client.nextRetryAt - now) / 1000)) + ' s' : '') +
          (at ? ', data ' + ago(now - at) : '');
        break;
      case 'offline': text = 'Offline' + (at ? ', data ' + ago(now - at) : ''); break;
      case 'connecting': text = 'Connecting' + (at ? ', data ' + ago(now - at) : ''); break;
      default: text = 'Not connected';
    }
    setText(node, text);
  }

  // ---------------------------------------------------------------- tables

  function tableColumns(name) {
    var cols = COLLECTIONS[name].columns.slice();
    if (app.isAdmin) { cols.push({field: 'tenant', label: 'Tenant'}); }
    cols.push({field: 'updated_at', label: 'Updated', format: formatTime, title: true});
    return cols;
  }

  function formatTime(value) {
    if (!value) { return ''; }
    var d = new Date(value);
    return isNaN(d.getTime()) ? String(value) : clockTime(d);
  }

  function buildTables() {
    for (var i = 0; i < COLLECTION_NAMES.length; i++) {
      var name = COLLECTION_NAMES[i];
      app.tables[name] = {canWrite: !!app.canWrite[name]};
      rebuildTable(name);
    }
  }

  function rebuildTable(name) {
    var table = app.tables[name];
    var tableNode = byId('table-' + name);
    table.node = tableNode;
    table.tbody = tableNode.tBodies[0];
    table.columns = tableColumns(name);
    var headRow = tableNode.tHead.rows[0];
    clear(headRow);
    for (var i = 0; i < table.columns.length; i++) {
      var col = table.columns[i];
      headRow.appendChild(el('th', {scope: 'col', 'class': col.numeric ? 'num' : null}, [col.label]));
    }
    if (table.canWrite) {
      headRow.appendChild(el('th', {scope: 'col', 'class': 'actions'}, [el('span', {'class': 'visually-hidden'}, ['Actions'])]));
    }
    resetTable(name);
    if (app.views[name]) { renderTable(name, {}); }
  }

  function resetTable(name) {
    var table = app.tables[name];
    if (!table || !table.tbody) { return; }
    if (table.rows) {
      for (var id in table.rows) {
        if (table.rows.hasOwnProperty(id)) { clearRowTimers(table.rows[id]); }
      }
    }
    table.rows = {};
    clear(table.tbody);
    var span = table.columns.length + (table.canWrite ? 1 : 0);
    table.emptyRow = el('tr', {'class': 'empty-row'}, [el('td', {colspan: span}, ['Loading...'])]);
    table.tbody.appendChild(table.emptyRow);
  }

  function clearRowTimers(row) {
    if (row._flashTimer) { clearTimeout(row._flashTimer); }
    if (row._leaveTimer) { clearTimeout(row._leaveTimer); }
    row._flashTimer = null;
    row._leaveTimer = null;
  }

  function isLeaving(row) { return row.getAttribute('data-removing') === 'true'; }

  // Keyed reconciliation: rows follow view.docs; rows that left the view fade out in place.
  function renderTable(name, flashes) {
    var table = app.tables[name];
    var view = app.views[name];
    if (!table || !view) { return; }
    var docs = view.docs;
    var present = {};
    var tbody = table.tbody;
    var cursor = tbody.firstChild;
    for (var i = 0; i < docs.length; i++) {
      var doc = docs[i];
      present[doc.id] = true;
      var row = table.rows[doc.id];
      if (!row) {
        row = createRow(name, doc);
        table.rows[doc.id] = row;
      } else {
        if (isLeaving(row)) { cancelLeave(row); }
        updateRow(name, row, doc);
      }
      while (cursor && cursor !== row && (cursor === table.emptyRow || isLeaving(cursor))) { cursor = cursor.nextSibling; }
      if (cursor === row) {
        cursor = row.nextSibling;
      } else {
        tbody.insertBefore(row, cursor);
      }
    }
    for (var id in table.rows) {
      if (table.rows.hasOwnProperty(id) && !present[id] && !isLeaving(table.rows[id])) { startLeave(name, id); }
    }
    for (id in flashes) {
      if (flashes.hasOwnProperty(id) && table.rows[id] && present[id]) { flash(table.rows[id]); }
    }
    var emptyCell = table.emptyRow.cells[0];
    setText(emptyCell, view.ready ? 'No ' + name + (app.tenant && app.isAdmin ? ' in tenant ' + app.tenant : '') + '.' : 'Loading...');
    show(table.emptyRow, docs.length === 0);
    if (table.emptyRow.parentNode === tbody && table.emptyRow !== tbody.lastChild) { tbody.appendChild(table.emptyRow); }
    tbody.parentNode.setAttribute('data-count', String(docs.length));
  }

  function createRow(name, doc) {
    var table = app.tables[name];
    var row = el('tr', {'data-id': doc.id});
    row._cells = [];
    for (var i = 0; i < table.columns.length; i++) {
      var col = table.columns[i];
      var cell = el(i === 0 ? 'th' : 'td', {scope: i === 0 ? 'row' : null, 'class': col.numeric ? 'num' : null, 'data-field': col.field});
      row._cells.push(cell);
      row.appendChild(cell);
    }
    if (table.canWrite) {
      row._actions = el('td', {'class': 'actions'});
      row.appendChild(row._actions);
    }
    updateRow(name, row, doc, true);
    return row;
  }

  function updateRow(name, row, doc, force) {
    var table = app.tables[name];
    row.setAttribute('data-version', display(doc.version));
    row.setAttribute('data-tenant', display(doc.tenant));
    for (var i = 0; i < table.columns.length; i++) {
      var col = table.columns[i];
      var raw = doc[col.field];
      var text = col.format ? col.format(raw, doc) : display(raw);
      var cell = row._cells[i];
      if (col.badge) {
        var badge = cell.firstChild;
        if (!badge) { badge = cell.appendChild(el('span', {'class': 'badge'})); }
        var key = String(text).replace(/[^a-z0-9_-]/gi, '').toLowerCase();
        badge.className = 'badge badge-' + key;
        setText(badge, text);
      } else {
        setText(cell, text);
      }
      if (col.title) { cell.setAttribute('title', display(raw)); }
    }
    if (row._actions && (force || row._actionsVersion !== doc.version || row._actionsTitle !== COLLECTIONS[name].title(doc))) {
      if (!row._confirming) { renderActions(name, row, doc); }
    }
    row._doc = doc;
  }

  function renderActions(name, row, doc) {
    var cfg = COLLECTIONS[name];
    var title = cfg.title(doc);
    var cell = row._actions;
    var focused = document.activeElement && cell.contains(document.activeElement) ?
      document.activeElement.getAttribute('data-action') : null;
    clear(cell);
    row._confirming = false;
    row._actionsVersion = doc.version;
    row._actionsTitle = title;
    if (name === 'incidents') {
      cell.appendChild(el('button', {type: 'button', 'class': 'btn btn-small', 'data-action': 'toggle-resolved',
        'aria-label': (doc.resolved ? 'Reopen incident ' : 'Resolve incident ') + title}, [doc.resolved ? 'Reopen' : 'Resolve']));
    }
    cell.appendChild(el('button', {type: 'button', 'class': 'btn btn-small', 'data-action': 'edit',
      'aria-label': 'Edit ' + cfg.singular + ' ' + title}, ['Edit']));
    cell.appendChild(el('button', {type: 'button', 'class': 'btn btn-small btn-danger', 'data-action': 'delete',
      'aria-label': 'Delete ' + cfg.singular + ' ' + title}, ['Delete']));
    if (focused) { focusAction(cell, focused); }
  }

  function focusAction(container, action) {
    var buttons = container.getElementsByTagName('button');
    for (var i = 0; i < buttons.length; i++) {
      if (buttons[i].getAttribute('data-action') === action) { buttons[i].focus(); return; }
    }
  }

  function flash(row) {
    row.className = row.className.replace(/\bflash\b/g, '').replace(/^\s+|\s+$/g, '');
    void row.offsetWidth;
    row.className = (row.className ? row.className + ' ' : '') + 'flash';
    row.setAttribute('data-flash', 'true');
    if (row._flashTimer) { clearTimeout(row._flashTimer); }
    row._flashTimer = setTimeout(function () {
      row._flashTimer = null;
      row.className = row.className.replace(/\bflash\b/g, '').replace(/^\s+|\s+$/g, '');
      row.removeAttribute('data-flash');
    }, FLASH_MS);
  }

  function startLeave(name, id) {
    var table = app.tables[name];
    var row = table.rows[id];
    if (row._flashTimer) { clearTimeout(row._flashTimer); row._flashTimer = null; }
    row.className = 'removing';
    row.setAttribute('data-removing', 'true');
    row.removeAttribute('data-flash');
    var buttons = row.getElementsByTagName('button');
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
    row._leaveTimer = setTimeout(function () {
      row._leaveTimer = null;
      if (table.rows[id] === row) { delete table.rows[id]; }
      detach(row);
    }, REMOVE_MS);
  }

  function cancelLeave(row) {
    if (row._leaveTimer) { clearTimeout(row._leaveTimer); row._leaveTimer = null; }
    row.className = '';
    row.removeAttribute('data-removing');
    var buttons = row.getElementsByTagName('button');
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = false; }
  }

  // ---------------------------------------------------------------- row actions

  function onTableClick(event) {
    var tableNode = event.currentTarget;
    var target = event.target && event.target.nodeType === 3 ? event.target.parentNode : event.target;
    var button = closestWith(target, 'data-action', tableNode);
    if (!button || button.disabled) { return; }
    var row = closestWith(button, 'data-id', tableNode);
    if (!row) { return; }
    var name = tableNode.getAttribute('data-collection');
    var id = row.getAttribute('data-id');
    var doc = app.views[name] && app.views[name].get(id);
    if (!doc) { return; }
    switch (button.getAttribute('data-action')) {
      case 'edit': openForm(name, doc, button); break;
      case 'delete': askDelete(name, row, doc); break;
      case 'confirm-delete': doDelete(name, row, doc); break;
      case 'cancel-delete':
        renderActions(name, row, doc);
        focusAction(row._actions, 'delete');
        break;
      case 'toggle-resolved': toggleResolved(name, doc); break;
    }
  }

  function askDelete(name, row, doc) {
    var cfg = COLLECTIONS[name];
    var title = cfg.title(doc);
    var cell = row._actions;
    clear(cell);
    row._confirming = true;
    cell.appendChild(el('span', {'class': 'confirm-text'}, ['Delete?']));
    var yes = el('button', {type: 'button', 'class': 'btn btn-small btn-danger', 'data-action': 'confirm-delete',
      'aria-label': 'Confirm: delete ' + cfg.singular + ' ' + title}, ['Delete']);
    cell.appendChild(yes);
    cell.appendChild(el('button', {type: 'button', 'class': 'btn btn-small', 'data-action': 'cancel-delete',
      'aria-label': 'Keep ' + cfg.singular + ' ' + title}, ['Keep']));
    yes.focus();
  }

  function docPath(name, id) { return name + '/' + encodeURIComponent(id); }

  function doDelete(name, row, doc) {
    var cfg = COLLECTIONS[name];
    var title = cfg.title(doc);
    var buttons = row._actions.getElementsByTagName('button');
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = true; }
    app.client.request('DELETE', docPath(name, doc.id), null, {ifMatch: doc.version}, function (err) {
      var view = app.views[name];
      if (!err || err.status === 404) {
        toast('info', 'Deleted ' + cfg.singular + ' ' + title + '.');
        if (view && app.client && app.client.state !== 'live') { view.refresh(); }
        return;
      }
      row._confirming = false;
      if (err.status === 412) {
        toast('warn', 'The ' + cfg.singular + ' ' + title + ' was changed by someone else, so it was not deleted. ' +
          'The row now shows the latest version; delete it again if you still want to.');
        reloadDoc(name, doc.id, function () {});
      } else {
        toast('error', 'Could not delete ' + cfg.singular + ' ' + title + ': ' + err.message);
      }
      var current = view && view.get(doc.id);
      if (current && row._actions) { renderActions(name, row, current); focusAction(row._actions, 'delete'); }
    });
  }

  function toggleResolved(name, doc) {
    var cfg = COLLECTIONS[name];
    var title = cfg.title(doc);
    app.client.request('PATCH', docPath(name, doc.id), {resolved: !doc.resolved},
      {ifMatch: doc.version, headers: {'Content-Type': 'application/merge-patch+json'}}, function (err, body) {
        if (!err) {
          if (app.views[name]) { app.views[name].applyDoc(body); }
          return;
        }
        if (err.status === 412) {
          toast('warn', 'Incident ' + title + ' was changed by someone else; the row has been reloaded. Try again.');
          reloadDoc(name, doc.id, function () {});
        } else {
          toast('error', 'Could not update incident ' + title + ': ' + err.message);
        }
      });
  }

  // GETs one document and puts it in the view (the row re-renders); cb(err, doc).
  function reloadDoc(name, id, cb) {
    app.client.request('GET', docPath(name, id), null, null, function (err, doc) {
      var view = app.views[name];
      if (!err && view) { view.applyDoc(doc); }
      if (err && err.status === 404 && view) { view.refresh(); }
      cb(err, doc);
    });
  }

  // ---------------------------------------------------------------- forms

  function buildForm(name) {
    var cfg = COLLECTIONS[name];
    var prefix = name + '-field-';
    var form = el('form', {id: 'form-' + name, 'class': 'edit-form', novalidate: true, 'data-collection': name,
      'aria-labelledby': 'form-' + name + '-title'});
    var fieldset = el('fieldset');
    var legend = el('legend', {id: 'form-' + name + '-title'});
    fieldset.appendChild(legend);
    var inputs = {};
    var errors = {};
    var fields = cfg.fields.slice();
    if (app.isAdmin) { fields.push({name: 'tenant', label: 'Tenant', type: 'tenant', createOnly: true}); }
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      var id = prefix + f.name;
      var errorId = name + '-error-' + f.name;
      var input;
      if (f.type === 'select' || f.type === 'service' || f.type === 'tenant') {
        input = el('select', {id: id, name: f.name});
        if (f.type === 'select') {
          for (var o = 0; o < f.options.length; o++) { input.appendChild(el('option', {value: f.options[o]}, [f.options[o]])); }
        }
      } else if (f.type === 'textarea') {
        input = el('textarea', {id: id, name: f.name, rows: 2});
      } else if (f.type === 'checkbox') {
        input = el('input', {id: id, name: f.name, type: 'checkbox'});
      } else if (f.type === 'integer') {
        input = el('input', {id: id, name: f.name, type: 'number', min: f.min, step: 1, inputmode: 'numeric'});
      } else {
        input = el('input', {id: id, name: f.name, type: 'text'});
      }
      input.setAttribute('aria-describedby', errorId);
      if (f.required) { input.setAttribute('aria-required', 'true'); }
      var label = el('label', {'for': id}, [f.label + (f.required ? ' (required)' : '')]);
      var error = el('p', {id: errorId, 'class': 'field-error', 'data-error-for': f.name});
      var wrapper = el('div', {'class': 'field field-' + f.type, 'data-field': f.name},
        f.type === 'checkbox' ? [input, label, error] : [label, input, error]);
      fieldset.appendChild(wrapper);
      inputs[f.name] = input;
      errors[f.name] = error;
      f.wrapper = wrapper;
    }
    var general = el('p', {id: 'form-' + name + '-error', 'class': 'form-error', role: 'alert'});
    fieldset.appendChild(general);
    var submit = el('button', {id: 'form-' + name + '-submit', type: 'submit', 'class': 'btn btn-primary'}, ['Save']);
    var cancel = el('button', {id: 'form-' + name + '-cancel', type: 'button', 'class': 'btn'}, ['Cancel']);
    fieldset.appendChild(el('div', {'class': 'form-buttons'}, [submit, cancel]));
    form.appendChild(fieldset);
    form.setAttribute('hidden', '');
    var state = {name: name, node: form, legend: legend, inputs: inputs, errors: errors, general: general,
      submit: submit, fields: fields, mode: null, id: null, version: null, trigger: null, busy: false};
    form.addEventListener('submit', function (e) { e.preventDefault(); submitForm(state); }, false);
    cancel.addEventListener('click', function () { closeForm(name, true); }, false);
    form.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' || e.key === 'Esc' || e.keyCode === 27) { e.preventDefault(); closeForm(name, true); }
    }, false);
    byId('form-' + name + '-slot').appendChild(form);
    return state;
  }

  function fillOptions(select, options, value) {
    clear(select);
    for (var i = 0; i < options.length; i++) {
      select.appendChild(el('option', {value: options[i].value}, [options[i].label]));
    }
    select.value = value;
  }

  function serviceOptions(current) {
    var out = [{value: '', label: '(none)'}];
    var services = app.views.services ? app.views.services.docs : [];
    var seen = false;
    for (var i = 0; i < services.length; i++) {
      var s = services[i];
      if (s.id === current) { seen = true; }
      out.push({value: s.id, label: (s.name || s.id) + (app.isAdmin && !app.tenant ? ' (' + s.tenant + ')' : '')});
    }
    if (current && !seen) { out.push({value: current, label: current + ' (not in view)'}); }
    return out;
  }

  function tenantOptions() {
    var names = [];
    for (var t in app.tenants) { if (app.tenants.hasOwnProperty(t)) { names.push(t); } }
    names.sort();
    var out = [];
    for (var i = 0; i < names.length; i++) { out.push({value: names[i], label: names[i]}); }
    return out;
  }

  function openForm(name, doc, trigger) {
    if (!app.canWrite[name]) { return; }
    var form = app.forms[name] || (app.forms[name] = buildForm(name));
    form.mode = doc ? 'edit' : 'create';
    form.trigger = trigger || null;
    form.node.setAttribute('data-mode', form.mode);
    clearErrors(form);
    for (var i = 0; i < form.fields.length; i++) {
      var f = form.fields[i];
      var input = form.inputs[f.name];
      if (f.type === 'select' && input.options.length !== f.options.length) {
        var opts = [];
        for (var o = 0; o < f.options.length; o++) { opts.push({value: f.options[o], label: f.options[o]}); }
        fillOptions(input, opts, f.options[0]);
      }
      if (f.type === 'service') { fillOptions(input, serviceOptions(doc ? doc.service_id : ''), doc ? (doc.service_id || '') : ''); }
      if (f.type === 'tenant') {
        fillOptions(input, tenantOptions(), app.tenant || app.user.tenant);
        show(f.wrapper, !doc);
      }
    }
    fillForm(form, doc);
    show(form.node, true);
    form.inputs[form.fields[0].name].focus();
  }

  function fillForm(form, doc) {
    var cfg = COLLECTIONS[form.name];
    form.id = doc ? doc.id : null;
    form.version = doc ? doc.version : null;
    form.node.setAttribute('data-id', doc ? doc.id : '');
    form.node.setAttribute('data-version', doc ? display(doc.version) : '');
    form.general.removeAttribute('data-stale-version');
    setText(form.legend, doc ? 'Edit ' + cfg.singular + ' ' + cfg.title(doc) : 'New ' + cfg.singular);
    setText(form.submit, doc ? 'Save changes' : 'Create ' + cfg.singular);
    for (var i = 0; i < form.fields.length; i++) {
      var f = form.fields[i];
      var input = form.inputs[f.name];
      var value = doc ? doc[f.name] : undefined;
      if (f.type === 'checkbox') {
        input.checked = !!value;
      } else if (f.type === 'tenant') {
        continue;
      } else if (f.type === 'select') {
        input.value = value !== undefined && value !== null ? String(value) : f.options[0];
      } else if (f.type === 'service') {
        if (doc) { fillOptions(input, serviceOptions(value || ''), value || ''); }
      } else {
        input.value = value === undefined || value === null ? '' : String(value);
      }
    }
  }

  function closeForm(name, restoreFocus) {
    var form = app.forms[name];
    if (!form || form.node.hasAttribute('hidden')) { return; }
    show(form.node, false);
    clearErrors(form);
    var docId = form.id;
    form.mode = null;
    form.id = null;
    var trigger = form.trigger;
    form.trigger = null;
    if (!restoreFocus) { return; }
    if (trigger && document.body.contains(trigger) && !trigger.disabled && trigger.offsetParent !== null) {
      trigger.focus();
      return;
    }
    // A live update re-rendered the row's buttons while the form was open: focus the new one.
    var row = docId && app.tables[name] && app.tables[name].rows[docId];
    if (trigger && row && row._actions && !isLeaving(row)) {
      focusAction(row._actions, trigger.getAttribute('data-action'));
      if (row._actions.contains(document.activeElement)) { return; }
    }
    byId('new-' + name).focus();
  }

  function clearErrors(form) {
    for (var k in form.errors) {
      if (form.errors.hasOwnProperty(k)) {
        setText(form.errors[k], '');
        form.inputs[k].removeAttribute('aria-invalid');
      }
    }
    setText(form.general, '');
  }

  function fieldError(form, field, message) {
    var key = String(field || '').replace(/^\/+/, '').split(/[.\/]/)[0];
    if (form.errors[key]) {
      var box = form.errors[key];
      setText(box, box.textContent ? box.textContent + ' ' + message : message);
      form.inputs[key].setAttribute('aria-invalid', 'true');
      return key;
    }
    setText(form.general, (form.general.textContent ? form.general.textContent + ' ' : '') +
      (key && key !== '(document)' ? key + ': ' : '') + message);
    return null;
  }

  function focusFirstInvalid(form) {
    for (var i = 0; i < form.fields.length; i++) {
      var input = form.inputs[form.fields[i].name];
      if (input.getAttribute('aria-invalid') === 'true') { input.focus(); return; }
    }
  }

  // Reads the form into a body. Create omits empty optional fields; edit sends null to clear
  // them (merge-patch semantics). Returns null after showing errors when input is invalid.
  function readForm(form) {
    var body = {};
    var ok = true;
    for (var i = 0; i < form.fields.length; i++) {
      var f = form.fields[i];
      var input = form.inputs[f.name];
      var value;
      if (f.type === 'tenant') {
        if (form.mode === 'create' && input.value) { body.tenant = input.value; }
        continue;
      }
      if (f.type === 'checkbox') {
        body[f.name] = !!input.checked;
        continue;
      }
      value = f.type === 'textarea' ? input.value : input.value.replace(/^\s+|\s+$/g, '');
      if (value === '') {
        if (f.required) {
          fieldError(form, f.name, 'Enter a ' + f.label.toLowerCase() + '.');
          ok = false;
        } else if (form.mode === 'edit' && f.type !== 'textarea') {
          body[f.name] = null;
        } else if (f.type === 'textarea') {
          body[f.name] = '';
        }
        continue;
      }
      if (f.type === 'integer') {
        if (!/^\d+$/.test(value) || (typeof f.min === 'number' && parseInt(value, 10) < f.min)) {
          fieldError(form, f.name, 'Enter a whole number' + (typeof f.min === 'number' ? ', ' + f.min + ' or more' : '') + '.');
          ok = false;
          continue;
        }
        value = parseInt(value, 10);
      }
      body[f.name] = value;
    }
    if (form.mode === 'create') {
      for (var k in body) { if (body.hasOwnProperty(k) && body[k] === null) { delete body[k]; } }
    }
    return ok ? body : null;
  }

  function setBusy(form, busy) {
    form.busy = busy;
    form.submit.disabled = busy;
    form.node.setAttribute('aria-busy', busy ? 'true' : 'false');
  }

  function submitForm(form) {
    if (form.busy) { return; }
    clearErrors(form);
    var body = readForm(form);
    if (!body) {
      focusFirstInvalid(form);
      return;
    }
    var name = form.name;
    var cfg = COLLECTIONS[name];
    var editing = form.mode === 'edit';
    var id = form.id;
    setBusy(form, true);
    var done = function (err, doc) {
      var view = app.views[name];
      if (!err) {
        if (editing && view) { view.applyDoc(doc); }
        setBusy(form, false);
        if (!editing && view && app.client && app.client.state !== 'live') { view.refresh(); }
        toast('ok', (editing ? 'Saved ' : 'Created ') + cfg.singular + ' ' + cfg.title(doc || body) + '.');
        closeForm(name, true);
        return;
      }
      setBusy(form, false);
      handleWriteError(form, err, id);
    };
    if (editing) {
      app.client.request('PATCH', docPath(name, id), body,
        {ifMatch: form.version, headers: {'Content-Type': 'application/merge-patch+json'}}, done);
    } else {
      app.client.request('POST', name, body, null, done);
    }
  }

  function handleWriteError(form, err, id) {
    var cfg = COLLECTIONS[form.name];
    var problem = err.problem;
    if (err.status === 412 && id) {
      setText(form.general, 'This ' + cfg.singular + ' was changed by someone else while you were editing. ' +
        'Reloading the latest version...');
      reloadDoc(form.name, id, function (e, doc) {
        if (form.id !== id) { return; }
        if (e) {
          setText(form.general, e.status === 404 ? 'This ' + cfg.singular + ' has been deleted.' :
            'This ' + cfg.singular + ' was changed by someone else, and reloading it failed: ' + e.message);
          return;
        }
        fillForm(form, doc);
        setText(form.general, 'This ' + cfg.singular + ' was changed by someone else while you were editing. ' +
          'The form now shows the latest version (version ' + doc.version + '); review it and save again.');
        form.inputs[form.fields[0].name].focus();
      });
      return;
    }
    if (err.status === 404 && id) {
      setText(form.general, 'This ' + cfg.singular + ' no longer exists.');
      return;
    }
    var placed = false;
    if (problem && problem.errors && problem.errors.length) {
      for (var i = 0; i < problem.errors.length; i++) {
        if (fieldError(form, problem.errors[i].field, problem.errors[i].message)) { placed = true; }
      }
      if (!form.general.textContent && problem.detail) { setText(form.general, problem.detail); }
      if (placed) { focusFirstInvalid(form); }
      return;
    }
    var message = err.message;
    if (err.status === 429) {
      var wait = err.response && err.response.header('Retry-After');
      message = 'Too many requests.' + (wait ? ' Try again in ' + wait + ' s.' : '');
    } else if (err.status === 403) {
      message = 'You are not allowed to change this ' + cfg.singular + '.';
    } else if (err.status === 0) {
      message = 'Cannot reach the server; nothing was saved. Try again.';
    }
    setText(form.general, message);
  }

  // The document open in a form changed or vanished under the user: say so, keep their input.
  function noteFormDocChange(name) {
    var form = app.forms[name];
    if (!form || form.mode !== 'edit' || !form.id || form.busy) { return; }
    var doc = app.views[name].get(form.id);
    var cfg = COLLECTIONS[name];
    if (!doc) {
      setText(form.general, 'This ' + cfg.singular + ' is no longer in the list (deleted, or moved out of this view).');
    } else if (doc.version !== form.version && form.general.getAttribute('data-stale-version') !== String(doc.version)) {
      form.general.setAttribute('data-stale-version', String(doc.version));
      setText(form.general, 'Someone else has just changed this ' + cfg.singular + '. Saving will fail; cancel and edit again to see the change.');
    }
  }

  // ---------------------------------------------------------------- feed

  function fieldLabel(name, field) {
    var fields = COLLECTIONS[name].fields;
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].name === field) { return fields[i].label.replace(/ \(ms\)$/, '').toLowerCase(); }
    }
    return field;
  }

  function describeChange(name, ev) {
    var cfg = COLLECTIONS[name];
    var doc = ev.doc || ev.oldDoc || {};
    var title = cfg.title(doc);
    if (ev.op === 'added') {
      if (name === 'services') { return 'Service ' + title + ' added (' + display(doc.status) + ')'; }
      return 'Incident ' + title + ' opened (' + display(doc.severity) + ')';
    }
    if (ev.op === 'removed') {
      return (name === 'services' ? 'Service ' : 'Incident ') + title +
        (ev.cause === 'delete' || !ev.cause ? ' removed' : ' left this view');
    }
    var parts = [];
    var old = ev.oldDoc || {};
    for (var k in doc) {
      if (!doc.hasOwnProperty(k) || contains(SERVER_FIELDS, k)) { continue; }
      if (display(old[k]) !== display(doc[k])) {
        if (k === 'resolved' && typeof doc[k] === 'boolean') {
          parts.push(doc[k] ? 'resolved' : 'reopened');
          continue;
        }
        var from = k === 'response_time_ms' ? formatMs(old[k]) : display(old[k]);
        var to = k === 'response_time_ms' ? formatMs(doc[k]) : display(doc[k]);
        if (from.length > 40) { from = from.slice(0, 39) + '...'; }
        if (to.length > 40) { to = to.slice(0, 39) + '...'; }
        parts.push(fieldLabel(name, k) + ' ' + (from || '(empty)') + ' to ' + (to || '(empty)'));
      }
    }
    for (k in old) {
      if (old.hasOwnProperty(k) && !contains(SERVER_FIELDS, k) && !doc.hasOwnProperty(k)) { parts.push(fieldLabel(name, k) + ' cleared'); }
    }
    return (name === 'services' ? 'Service ' : 'Incident ') + title + ': ' + (parts.length ? parts.join(', ') : 'updated');
  }

  function addFeedItem(name, ev) {
    if (app.feedPaused) {
      app.feedSkipped++;
      return;
    }
    var feed = byId('feed');
    var date = new Date();
    var item = el('li', {'class': 'feed-item feed-' + ev.op, 'data-collection': name, 'data-op': ev.op, 'data-id': ev.id}, [
      el('time', {datetime: date.toISOString()}, [clockTime(date)]),
      ' ',
      el('span', {'class': 'feed-text'}, [describeChange(name, ev)])
    ]);
    feed.insertBefore(item, feed.firstChild);
    while (feed.childNodes.length > FEED_MAX) { feed.removeChild(feed.lastChild); }
  }

  function onFeedPause() {
    var button = byId('feed-pause');
    app.feedPaused = !app.feedPaused;
    button.setAttribute('aria-pressed', app.feedPaused ? 'true' : 'false');
    setText(button, app.feedPaused ? 'Resume' : 'Pause');
    byId('feed').setAttribute('aria-live', app.feedPaused ? 'off' : 'polite');
    if (!app.feedPaused && app.feedSkipped) {
      var feed = byId('feed');
      feed.insertBefore(el('li', {'class': 'feed-item feed-note'},
        [app.feedSkipped + ' change' + (app.feedSkipped === 1 ? '' : 's') + ' not shown while paused.']), feed.firstChild);
      app.feedSkipped = 0;
    }
  }

  // ---------------------------------------------------------------- toasts

  function maybeToast(name, ev) {
    if (name === 'services' && ev.op === 'changed' && ev.oldDoc && ev.doc && ev.oldDoc.status !== ev.doc.status) {
      var title = COLLECTIONS.services.title(ev.doc);
      var where = app.isAdmin && !app.tenant && ev.doc.tenant ? ' (' + ev.doc.tenant + ')' : '';
      if (ev.doc.status === 'down') {
        toast('down', 'Service ' + title + where + ' is down.');
      } else if (ev.doc.status === 'up' && (ev.oldDoc.status === 'down' || ev.oldDoc.status === 'degraded')) {
        toast('recovered', 'Service ' + title + where + ' recovered.');
      }
    }
    if (name === 'incidents' && ev.op === 'added' && ev.doc && ev.doc.severity === 'critical' && !ev.doc.resolved) {
      toast('down', 'Critical incident: ' + COLLECTIONS.incidents.title(ev.doc) + '.');
    }
  }

  function toast(kind, text) {
    var box = byId('toasts');
    var close = el('button', {type: 'button', 'class': 'toast-close', 'aria-label': 'Dismiss notification'}, ['\u00d7']);
    var node = el('div', {'class': 'toast toast-' + kind, 'data-kind': kind, role: kind === 'down' || kind === 'error' ? 'alert' : null},
      [el('span', {'class': 'toast-text'}, [text]), close]);
    var timer = null;
    function dismiss() {
      if (timer) { clearTimeout(timer); }
      detach(node);
    }
    close.addEventListener('click', dismiss, false);
    box.appendChild(node);
    while (box.childNodes.length > TOASTS_MAX) { box.removeChild(box.firstChild); }
    timer = setTimeout(dismiss, TOAST_MS);
    node.addEventListener('mouseenter', function () { if (timer) { clearTimeout(timer); timer = null; } }, false);
    node.addEventListener('mouseleave', function () { if (!timer) { timer = setTimeout(dismiss, TOAST_MS / 2); } }, false);
    return node;
  }

  // ---------------------------------------------------------------- metrics

  function setMetric(id, value) {
    var node = byId(id);
    node.setAttribute('data-value', String(value));
    setText(node, value);
  }

  function renderMetrics() {
    var services = app.views.services ? app.views.services.docs : [];
    var incidents = app.views.incidents ? app.views.incidents.docs : [];
    var counts = {up: 0, degraded: 0, down: 0};
    for (var i = 0; i < services.length; i++) {
      if (counts.hasOwnProperty(services[i].status)) { counts[services[i].status]++; }
    }
    var open = 0;
    for (i = 0; i < incidents.length; i++) { if (!incidents[i].resolved) { open++; } }
    setMetric('metric-total', services.length);
    setMetric('metric-up', counts.up);
    setMetric('metric-degraded', counts.degraded);
    setMetric('metric-down', counts.down);
    setMetric('metric-open-incidents', open);
  }

  // ---------------------------------------------------------------- boot

  function boot() {
    if (!window.RealtimeClient || !window.SockJS) {
      setText(byId('login-error'), 'The page did not load completely (missing scripts). Reload to try again.');
    }
    byId('login-form').addEventListener('submit', onLoginSubmit, false);
    byId('logout').addEventListener('click', function () { logout('You have signed out.'); }, false);
    byId('conn-retry').addEventListener('click', function () { if (app.client) { app.client.retry(); } }, false);
    byId('tenant-select').addEventListener('change', onTenantChange, false);
    byId('feed-pause').addEventListener('click', onFeedPause, false);
    for (var i = 0; i < COLLECTION_NAMES.length; i++) {
      (function (name) {
        byId('new-' + name).addEventListener('click', function (e) { openForm(name, null, e.currentTarget); }, false);
        byId('table-' + name).addEventListener('click', onTableClick, false);
      }(COLLECTION_NAMES[i]));
    }
    setInterval(renderUpdated, 1000);
    app.session = loadSession();
    if (app.session && window.RealtimeClient) {
      startSession();
    } else {
      showLogin();
    }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', boot, false);
  } else {
    boot();
  }
}());
