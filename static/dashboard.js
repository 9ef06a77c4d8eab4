/*
 * Dashboard part 10, loaded last: the session's life (sign-in to sign-out), the collections it
 * shows (GET /api/v1/collections), one live view per collection, and the start-up.
 */
(function (D) {
  'use strict';

  var TRANSPORT_NAME = /^[a-z][a-z0-9-]{0,40}$/;
  // Retrying GET /api/v1/collections: the first wait, and the longest.
  var META_RETRY_MS = 2000;
  var META_RETRY_MAX_MS = 30000;
  var app = D.app;
  var dom = D.dom;
  var byId = dom.byId;
  var setText = dom.setText;
  var contains = D.util.contains;
  var metaTimer = null;
  var metaRetryMs = META_RETRY_MS;

  // ---------------------------------------------------------------- session lifecycle

  function startSession() {
    var session = app.session;
    var claims = window.RealtimeClient.decodeToken(session.access_token) || {};
    app.user = {name: claims.sub || '', tenant: claims.tenant || '', roles: claims.roles || []};
    app.isAdmin = contains(app.user.roles, 'admin');
    app.tenants = {};
    if (app.user.tenant) { app.tenants[app.user.tenant] = true; }
    app.tenant = app.isAdmin ? D.session.savedTenant() : '';

    D.session.hideLogin();
    dom.show(byId('app'), true);
    dom.show(byId('conn'), true);
    dom.show(byId('session'), true);
    renderUser();
    renderTenantSwitcher();

    var ttl = null;
    if (typeof session.expires_in === 'number' && session.obtained_at) {
      ttl = session.expires_in * 1000 - (new Date().getTime() - session.obtained_at);
    }
    var query = D.util.parseQuery();
    var transport = query.transport && TRANSPORT_NAME.test(query.transport) ? query.transport : null;
    var client = new window.RealtimeClient({
      url: '/realtime',
      apiBase: D.API_BASE,
      token: session.access_token,
      refreshToken: session.refresh_token,
      tokenTtlMs: ttl,
      transports: transport ? [transport] : null,
      autoConnect: false
    });
    app.client = client;
    app.wasLiveOnce = false;
    client.on('state', D.conn.onState);
    client.on('transport', D.conn.render);
    client.on('latency', D.conn.render);
    client.on('reconnect_scheduled', D.conn.render);
    client.on('token', function (tokens) { D.session.save(tokens); });
    client.on('auth', onAuthOk);
    client.on('unauthorized', function () {
      logout('Your session has ended. Sign in again to continue.');
    });
    client.on('error', function (err) {
      if (err && err.code === 'forbidden') { D.feed.toast('error', 'The server refused the live connection (forbidden).'); }
    });

    client.connect();
    D.conn.render();
    metaRetryMs = META_RETRY_MS;
    loadCollections();
    byId('main').focus();
  }

  function stopSession() {
    if (app.client) {
      app.client.close();
      app.client.off();
    }
    app.client = null;
    if (metaTimer) { clearTimeout(metaTimer); }
    metaTimer = null;
    D.util.each(app.views, function (view) { view.off(); });
    app.views = {};
    D.forms.removeAll();
    D.tables.removePanels();
    D.chart.stop();
    app.collections = {};
    app.names = [];
    D.feed.reset();
    setText(byId('app-status'), '');
    document.body.setAttribute('data-conn-state', 'closed');
    D.demo.renderTiles();
    dom.show(byId('metrics'), false);
  }

  /** The sign-out button: the server ends the login session too, so the tokens this tab held
   *  stop working even if copied elsewhere; the page signs out whatever the server answers. */
  function signOut() {
    var client = app.client;
    if (client) {
      client.off();
      client.logout(function (err) {
        if (err) { D.feed.toast('error', 'Signed out here, but the server could not be told: ' + err.message); }
      });
    }
    logout('You have signed out.');
  }

  function logout(notice) {
    stopSession();
    D.session.forget();
    D.session.showLogin(notice);
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

  function renderUser() {
    setText(byId('user-name'), app.user.name);
    var roles = app.user.roles.join(', ');
    setText(byId('user-roles'), '(' + roles + (app.user.tenant ? ' in ' + app.user.tenant : '') + ')');
  }

  // ---------------------------------------------------------------- collections

  function loadCollections() {
    var client = app.client;
    metaTimer = null;
    client.request('GET', 'collections', null, null, function (err, body) {
      if (client !== app.client) { return; }
      if (!err && body && body.items) {
        setText(byId('app-status'), '');
        adoptCollections(body.items);
        return;
      }
      if (err && err.status === 401) { return; }  // the client signs out ('unauthorized')
      setText(byId('app-status'), 'Could not load the list of collections (' + (err ? err.message : 'unexpected reply') +
        '). Trying again in ' + Math.round(metaRetryMs / 1000) + ' s.');
      metaTimer = setTimeout(loadCollections, metaRetryMs);
      metaRetryMs = Math.min(META_RETRY_MAX_MS, metaRetryMs * 2);
    });
  }

  function adoptCollections(items) {
    app.collections = {};
    app.names = [];
    for (var i = 0; i < items.length; i++) {
      var desc = D.schema.describe(items[i]);
      app.collections[desc.name] = desc;
      app.names.push(desc.name);
    }
    if (!app.names.length) { setText(byId('app-status'), 'Your roles may not read any collection.'); }
    D.demo.decorate();
    for (i = 0; i < app.names.length; i++) { D.tables.buildPanel(app.collections[app.names[i]]); }
    D.tables.showWriteControls();
    D.chart.attach();
    subscribeAll();
  }

  // The collections whose tables show documents of `name` by reference.
  function referrersOf(name) {
    var out = [];
    for (var i = 0; i < app.names.length; i++) {
      var refs = app.collections[app.names[i]].references;
      for (var field in refs) {
        if (refs.hasOwnProperty(field) && refs[field] === name && !contains(out, app.names[i])) { out.push(app.names[i]); }
      }
    }
    return out;
  }

  // ---------------------------------------------------------------- tenants (admins)

  function renderTenantSwitcher() {
    dom.show(byId('tenant-switcher'), app.isAdmin);
    if (!app.isAdmin) { return; }
    var select = byId('tenant-select');
    var names = [];
    D.util.each(app.tenants, function (yes, t) { names.push(t); });
    if (app.tenant && !app.tenants[app.tenant]) { names.push(app.tenant); }
    names.sort();
    var wanted = [''].concat(names);
    var same = select.options.length === wanted.length;
    for (var i = 0; same && i < wanted.length; i++) { same = select.options[i].value === wanted[i]; }
    if (!same) {
      dom.clear(select);
      select.appendChild(dom.el('option', {value: ''}, ['All tenants']));
      for (i = 0; i < names.length; i++) { select.appendChild(dom.el('option', {value: names[i]}, [names[i]])); }
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
    D.session.saveTenant(app.tenant);
    for (var i = 0; i < app.names.length; i++) { D.forms.close(app.names[i], false); }
    subscribeAll();
    D.feed.toast('info', app.tenant ? 'Showing tenant ' + app.tenant + '.' : 'Showing all tenants.');
  }

  // ---------------------------------------------------------------- subscriptions

  function subscribeAll() {
    var filter = app.isAdmin && app.tenant ? {tenant: app.tenant} : null;
    D.chart.reset();
    for (var i = 0; i < app.names.length; i++) {
      var name = app.names[i];
      var old = app.views[name];
      if (old) {
        old.off();
        old.unsubscribe();
      }
      D.tables.reset(name);
      setText(byId('status-' + name), 'Loading...');
      app.views[name] = subscribeOne(name, filter);
    }
    D.demo.renderTiles();
  }

  function subscribeOne(name, filter) {
    var view = app.client.subscribe(name, filter, {sort: app.collections[name].sort});
    var referrers = referrersOf(name);
    var pending = {};
    view.on('change', function (ev) {
      if (name === 'services') { D.chart.onChange(ev); }
      if (ev.initial) { return; }
      if (ev.op !== 'removed') { pending[ev.id] = true; }
      if (ev.source !== 'local') {
        D.feed.add(name, ev);
        D.demo.onChange(name, ev);
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
      D.tables.render(name, flashes);
      for (i = 0; i < referrers.length; i++) {
        if (referrers[i] !== name) { D.tables.render(referrers[i], {}); }
      }
      if (name === 'services') { D.chart.renderLegend(); }
      D.demo.renderTiles();
      D.forms.noteDocChange(name);
      D.conn.render();
    });
    view.on('error', function (err) {
      if (app.views[name] !== view) { return; }
      var what = err.code === 'poll_failed' ? 'Could not refresh ' : 'Live query failed for ';
      setText(byId('status-' + name), what + name + ': ' + (err.message || err.code));
    });
    return view;
  }

  // ---------------------------------------------------------------- boot

  function boot() {
    if (!window.RealtimeClient || !window.SockJS) {
      setText(byId('login-error'), 'The page did not load completely (missing scripts). Reload to try again.');
    }
    D.session.bindLogin(startSession);
    byId('logout').addEventListener('click', signOut, false);
    byId('conn-retry').addEventListener('click', function () { if (app.client) { app.client.retry(); } }, false);
    byId('tenant-select').addEventListener('change', onTenantChange, false);
    byId('feed-pause').addEventListener('click', D.feed.onPause, false);
    setInterval(D.conn.renderUpdated, 1000);
    app.session = D.session.load();
    if (app.session && window.RealtimeClient) {
      startSession();
    } else {
      D.session.showLogin();
    }
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', boot, false);
  } else {
    boot();
  }
}(window.Dashboard));
