/*!
 * realtime-client.js: live views of realtime-app collections over SockJS (wire protocol 1,
 * docs/PROTOCOL.md).
 *
 * ES5 on purpose: it is served as is, with no build step, and must run in the oldest browsers
 * that sockjs-client still supports. Needs the global SockJS (or options.SockJS).
 *
 *   var client = new RealtimeClient({token: t, refreshToken: r});
 *   var view = client.subscribe('services', {status: 'down'}, {sort: 'name'});
 *   view.on('update', function () { render(view.docs); });
 *
 * Client: connect(), close(), logout(cb), retry(), ping(), subscribe(collection, filter, options),
 *   unsubscribe(viewOrId), getViews(), setTokens({access_token, refresh_token, expires_in}),
 *   request(method, path, body, {ifMatch, headers}, cb(err, body, res)), on/off/once.
 *   Properties: state, transport, latency, user, server, failures, nextRetryAt, lastDataAt,
 *   lastCloseCode, token, refreshToken.
 *   Events: state (new, old), connecting | live | reconnecting | polling | offline | closed,
 *   transport, welcome, auth, latency, token, unauthorized, error, goodbye, disconnect,
 *   reconnect_scheduled, fallback, poll, data, reauth_required.
 * LiveView: docs (ordered), get(id), has(id), size(), refresh(), applyDoc(doc), unsubscribe();
 *   position, ready, source ('live' | 'poll'), updatedAt, error.
 *   Events: added, changed, removed, change ({op, id, doc, oldDoc, cause, source, initial,
 *   index, collection}), update ({source, changes, initial}), snapshot, resumed, ready, error.
 * Statics: RealtimeClient.login({apiBase, username, password}, cb), decodeToken(jwt), http(),
 *   STATES, LiveView, HttpError.
 */
(function (root, factory) {
  if (typeof define === 'function' && define.amd) {
    define([], function () { return factory(root); });
  } else if (typeof module === 'object' && module.exports) {
    module.exports = factory(root);
  } else {
    root.RealtimeClient = factory(root);
  }
}(typeof self !== 'undefined' ? self : this, function (root) {
  'use strict';

  var PROTOCOL_VERSION = 1;

  var STATES = {
    CONNECTING: 'connecting',
    LIVE: 'live',
    RECONNECTING: 'reconnecting',
    POLLING: 'polling',
    OFFLINE: 'offline',
    CLOSED: 'closed'
  };

  var DEFAULTS = {
    url: '/realtime',
    apiBase: '/api/v1',
    token: null,
    refreshToken: null,
    // Milliseconds the access token stays valid, when known (login's expires_in * 1000);
    // preferred over the JWT's exp because it does not depend on the local clock.
    tokenTtlMs: null,
    getToken: null,
    transports: null,
    sockjsOptions: null,
    // Latency probe, and the proof that a quiet link is still alive.
    pingIntervalMs: 10000,
    // A link that answers no ping for this long is half-open: drop it and reconnect.
    pongTimeoutMs: 25000,
    // SockJS may walk through several transports; give up on one attempt after this long.
    connectTimeoutMs: 20000,
    backoffBaseMs: 1000,
    backoffCapMs: 30000,
    // A connection that stays live this long resets the backoff; shorter ones look like flapping.
    stableAfterMs: 10000,
    // Wait for the server's own close after a goodbye frame, then close it ourselves.
    goodbyeGraceMs: 2000,
    pollAfterFailures: 3,
    pollIntervalMs: 5000,
    pollLimit: 100,
    pollMaxPages: 10,
    httpTimeoutMs: 15000,
    // Refresh the access token this long before it expires.
    tokenRefreshMarginMs: 30000,
    autoConnect: true,
    watchNetwork: true,
    SockJS: null,
    random: null
  };

  // ---------------------------------------------------------------- small helpers

  var hasOwn = Object.prototype.hasOwnProperty;
  var slice = Array.prototype.slice;

  function now() { return new Date().getTime(); }

  function extend(target) {
    for (var i = 1; i < arguments.length; i++) {
      var src = arguments[i];
      if (!src) { continue; }
      for (var k in src) {
        if (hasOwn.call(src, k) && src[k] !== undefined) { target[k] = src[k]; }
      }
    }
    return target;
  }

  function isArray(x) { return Object.prototype.toString.call(x) === '[object Array]'; }

  function isEmptyObject(o) {
    if (!o) { return true; }
    for (var k in o) { if (hasOwn.call(o, k)) { return false; } }
    return true;
  }

  function rethrowLater(e) { setTimeout(function () { throw e; }, 0); }

  function base64UrlDecode(s) {
    s = s.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) { s += '='; }
    var bin = root.atob ? root.atob(s) : null;
    if (bin === null) { return null; }
    var pct = '';
    for (var i = 0; i < bin.length; i++) {
      pct += '%' + ('00' + bin.charCodeAt(i).toString(16)).slice(-2);
    }
    return decodeURIComponent(pct);
  }

  // Reads a JWT's claims without verifying it: for display and expiry only, never for trust.
  function decodeToken(token) {
    if (typeof token !== 'string') { return null; }
    var parts = token.split('.');
    if (parts.length < 2) { return null; }
    try { return JSON.parse(base64UrlDecode(parts[1])); } catch (e) { return null; }
  }

  // Whether two JSON values are equal, whatever the order of their keys.
  function sameValue(a, b) {
    if (a === b) { return true; }
    if (!a || !b || typeof a !== 'object' || typeof b !== 'object' || isArray(a) !== isArray(b)) { return false; }
    var k;
    if (isArray(a)) {
      if (a.length !== b.length) { return false; }
      for (k = 0; k < a.length; k++) { if (!sameValue(a[k], b[k])) { return false; } }
      return true;
    }
    for (k in a) { if (hasOwn.call(a, k) && (!hasOwn.call(b, k) || !sameValue(a[k], b[k]))) { return false; } }
    for (k in b) { if (hasOwn.call(b, k) && !hasOwn.call(a, k)) { return false; } }
    return true;
  }

  // A different version is a different document; the same version is compared field by field,
  // because a program writing straight to MongoDB may change a document without bumping it.
  function sameDoc(a, b) {
    if (typeof a.version === 'number' && typeof b.version === 'number' && a.version !== b.version) {
      return false;
    }
    return sameValue(a, b);
  }

  // True when `doc` is older than what we hold: replays after a poll or a local apply
  // must not move a row back in time.
  function isStale(held, doc) {
    return typeof held.version === 'number' && typeof doc.version === 'number' &&
      doc.version < held.version;
  }

  function compareValues(a, b) {
    if (a === b) { return 0; }
    if (a === undefined || a === null) { return -1; }
    if (b === undefined || b === null) { return 1; }
    if (typeof a === 'string' && typeof b === 'string') {
      var la = a.toLowerCase(), lb = b.toLowerCase();
      if (la !== lb) { return la < lb ? -1 : 1; }
    }
    return a < b ? -1 : (a > b ? 1 : 0);
  }

  function makeComparator(sort) {
    if (typeof sort === 'function') { return sort; }
    if (typeof sort !== 'string' || !sort) { return null; }
    var desc = sort.charAt(0) === '-';
    var field = desc || sort.charAt(0) === '+' ? sort.slice(1) : sort;
    return function (a, b) {
      var c = compareValues(a[field], b[field]);
      if (c === 0) { c = compareValues(a.id, b.id); }
      return desc ? -c : c;
    };
  }

  function problemMessage(status, problem) {
    if (problem && (problem.detail || problem.title)) { return problem.detail || problem.title; }
    if (status === 0) { return 'Network error'; }
    return 'HTTP ' + status;
  }

  // ---------------------------------------------------------------- event emitter

  function Emitter() {}

  Emitter.prototype.on = function (type, fn) {
    var all = this._listeners || (this._listeners = {});
    (all[type] || (all[type] = [])).push(fn);
    return this;
  };

  Emitter.prototype.off = function (type, fn) {
    var all = this._listeners;
    if (!all) { return this; }
    if (!type) { this._listeners = {}; return this; }
    if (!fn) { delete all[type]; return this; }
    var list = all[type] || [];
    for (var i = list.length - 1; i >= 0; i--) {
      if (list[i] === fn || list[i]._original === fn) { list.splice(i, 1); }
    }
    return this;
  };

  Emitter.prototype.once = function (type, fn) {
    var self = this;
    function wrapper() {
      self.off(type, wrapper);
      return fn.apply(this, arguments);
    }
    wrapper._original = fn;
    return this.on(type, wrapper);
  };

  // A throwing listener must not break the client's own bookkeeping: report it asynchronously.
  Emitter.prototype.emit = function (type) {
    var list = this._listeners && this._listeners[type];
    if (!list || !list.length) { return false; }
    var args = slice.call(arguments, 1);
    list = list.slice();
    for (var i = 0; i < list.length; i++) {
      try { list[i].apply(this, args); } catch (e) { rethrowLater(e); }
    }
    return true;
  };

  function mixinEmitter(Ctor) {
    for (var k in Emitter.prototype) {
      if (hasOwn.call(Emitter.prototype, k)) { Ctor.prototype[k] = Emitter.prototype[k]; }
    }
  }

  // ---------------------------------------------------------------- HTTP

  function HttpError(status, problem, response, message) {
    this.name = 'HttpError';
    this.status = status;
    this.problem = problem || null;
    this.response = response || null;
    this.message = message || problemMessage(status, problem);
  }
  HttpError.prototype = new Error();
  HttpError.prototype.constructor = HttpError;

  function parseHeaders(xhr) {
    return function (name) {
      try { return xhr.getResponseHeader(name); } catch (e) { return null; }
    };
  }

  // opts: method, url, headers, body (serialised as JSON unless a string), timeoutMs.
  // cb(err, body, response): err is an HttpError for network failures (status 0) and >= 400.
  function http(opts, cb) {
    var XHR = opts.XMLHttpRequest || root.XMLHttpRequest;
    var xhr = new XHR();
    var done = false;
    var timer = null;
    function finish(err, body, res) {
      if (done) { return; }
      done = true;
      if (timer) { clearTimeout(timer); }
      cb(err, body, res);
    }
    xhr.open(opts.method || 'GET', opts.url, true);
    var headers = extend({Accept: 'application/json'}, opts.headers);
    var body = opts.body;
    if (body !== undefined && body !== null && typeof body !== 'string') {
      body = JSON.stringify(body);
      if (!headers['Content-Type']) { headers['Content-Type'] = 'application/json'; }
    }
    for (var h in headers) {
      if (hasOwn.call(headers, h) && headers[h] !== null) { xhr.setRequestHeader(h, headers[h]); }
    }
    xhr.onreadystatechange = function () {
      if (xhr.readyState !== 4 || done) { return; }
      var status = xhr.status;
      var header = parseHeaders(xhr);
      var text = xhr.responseText;
      var data = null;
      if (text) {
        try { data = JSON.parse(text); } catch (e) { data = text; }
      }
      var res = {status: status, body: data, header: header, etag: header('ETag')};
      if (status === 0) {
        finish(new HttpError(0, null, res, 'Network error'), null, res);
      } else if (status >= 400) {
        var problem = data && typeof data === 'object' ? data : null;
        finish(new HttpError(status, problem, res), data, res);
      } else {
        finish(null, data, res);
      }
    };
    if (opts.timeoutMs) {
      timer = setTimeout(function () {
        try { xhr.abort(); } catch (e) { /* already finished */ }
        finish(new HttpError(0, null, null, 'Request timed out'), null, null);
      }, opts.timeoutMs);
    }
    xhr.send(body === undefined ? null : body);
    return xhr;
  }

  function joinUrl(base, path) {
    if (/^https?:\/\//.test(path) || path.charAt(0) === '/') { return path; }
    return base.replace(/\/+$/, '') + '/' + path;
  }

  function absoluteUrl(url) {
    if (/^https?:\/\//.test(url) || !root.location) { return url; }
    var loc = root.location;
    var origin = loc.protocol + '//' + loc.host;
    if (url.charAt(0) === '/') { return origin + url; }
    return origin + loc.pathname.replace(/[^\/]*$/, '') + url;
  }

  // ---------------------------------------------------------------- live view

  /**
   * The live result of one subscription: `docs` is the ordered list, kept current from
   * snapshots, changes and (in fallback) REST polls. Events: added, changed, removed, change
   * (any of the three), update (after each batch), snapshot, resumed, ready, error.
   */
  function LiveView(client, id, collection, filter, options) {
    this.client = client;
    this.id = id;
    this.collection = collection;
    this.filter = filter && !isEmptyObject(filter) ? filter : null;
    this.options = options || {};
    this.docs = [];
    this.position = null;
    this.ready = false;
    this.active = true;
    this.error = null;
    this.source = null;
    this.updatedAt = null;
    this._byId = {};
    this._compare = makeComparator(this.options.sort);
    this._resync = false;
    this._retryTimer = null;
  }
  mixinEmitter(LiveView);

  LiveView.prototype.get = function (id) {
    return hasOwn.call(this._byId, id) ? this._byId[id] : null;
  };

  LiveView.prototype.has = function (id) { return hasOwn.call(this._byId, id); };

  LiveView.prototype.size = function () { return this.docs.length; };

  LiveView.prototype.unsubscribe = function () { this.client.unsubscribe(this); };

  // Asks for the full result again: a refresh frame when live, a poll in fallback.
  LiveView.prototype.refresh = function () { this.client._refreshView(this); };

  /**
   * Applies a document fetched over REST (after a write, or to reload a row after a 412) so the
   * page does not wait for the live change. Only for documents already in the view, and never
   * older than the one held. Returns true when the view changed.
   */
  LiveView.prototype.applyDoc = function (doc) {
    if (!doc || !this.has(doc.id)) { return false; }
    var changes = [];
    this._upsert(doc, 'local', null, changes);
    this._finish(changes, 'local');
    return changes.length > 0;
  };

  LiveView.prototype._sort = function () {
    if (this._compare) { this.docs.sort(this._compare); }
  };

  LiveView.prototype._indexOf = function (id) {
    for (var i = 0; i < this.docs.length; i++) {
      if (this.docs[i].id === id) { return i; }
    }
    return -1;
  };

  LiveView.prototype._upsert = function (doc, source, cause, changes) {
    var held = this.get(doc.id);
    if (!held) {
      this._byId[doc.id] = doc;
      this.docs.push(doc);
      changes.push({op: 'added', id: doc.id, doc: doc, oldDoc: null, cause: cause, source: source});
      return;
    }
    if (isStale(held, doc) || sameDoc(held, doc)) { return; }
    this._byId[doc.id] = doc;
    this.docs[this._indexOf(doc.id)] = doc;
    changes.push({op: 'changed', id: doc.id, doc: doc, oldDoc: held, cause: cause, source: source});
  };

  LiveView.prototype._remove = function (id, source, cause, changes) {
    var held = this.get(id);
    if (!held) { return; }
    delete this._byId[id];
    this.docs.splice(this._indexOf(id), 1);
    changes.push({op: 'removed', id: id, doc: null, oldDoc: held, cause: cause, source: source});
  };

  // Replaces the whole result (a snapshot or a poll), emitting only what differs.
  LiveView.prototype._applyFull = function (docs, source) {
    var initial = !this.ready;
    var changes = [];
    var incoming = {};
    var i;
    for (i = 0; i < docs.length; i++) { incoming[docs[i].id] = true; }
    var heldIds = this.docs.slice();
    for (i = 0; i < heldIds.length; i++) {
      if (!incoming[heldIds[i].id]) { this._remove(heldIds[i].id, source, null, changes); }
    }
    var order = [];
    for (i = 0; i < docs.length; i++) {
      var doc = docs[i];
      var held = this.get(doc.id);
      if (held && isStale(held, doc)) {
        order.push(held);
        continue;
      }
      if (!held) {
        this._byId[doc.id] = doc;
        changes.push({op: 'added', id: doc.id, doc: doc, oldDoc: null, cause: null, source: source});
      } else if (!sameDoc(held, doc)) {
        this._byId[doc.id] = doc;
        changes.push({op: 'changed', id: doc.id, doc: doc, oldDoc: held, cause: null, source: source});
      }
      order.push(this._byId[doc.id]);
    }
    this.docs = order;
    this._finish(changes, source, initial);
  };

  LiveView.prototype._finish = function (changes, source, initial) {
    this._sort();
    var wasReady = this.ready;
    if (source !== 'local') {
      this.updatedAt = now();
      this.ready = true;
      this.source = source === 'poll' ? 'poll' : 'live';
      this.error = null;
    }
    for (var i = 0; i < changes.length; i++) {
      var ev = changes[i];
      ev.initial = !!initial;
      ev.collection = this.collection;
      ev.index = ev.op === 'removed' ? -1 : this._indexOf(ev.id);
      this.emit(ev.op, ev);
      this.emit('change', ev);
    }
    if (!wasReady && this.ready) { this.emit('ready', this); }
    this.emit('update', {source: source, changes: changes, initial: !!initial});
    if (source !== 'local') { this.client._noteData(this, changes); }
  };

  LiveView.prototype._onSnapshot = function (frame) {
    this.position = frame.position === undefined ? this.position : frame.position;
    var docs = isArray(frame.docs) ? frame.docs : [];
    var initial = !this.ready;
    this._applyFull(docs, 'snapshot');
    this.emit('snapshot', {recovered: frame.recovered, initial: initial, count: docs.length});
  };

  LiveView.prototype._onChange = function (frame) {
    if (frame.position !== undefined) { this.position = frame.position; }
    var changes = [];
    if (frame.op === 'removed') {
      this._remove(frame.id, 'live', frame.cause || null, changes);
    } else if (frame.doc && (frame.op === 'added' || frame.op === 'changed')) {
      this._upsert(frame.doc, 'live', frame.cause || null, changes);
    }
    this._finish(changes, 'live', false);
  };

  LiveView.prototype._onResumed = function (frame) {
    if (frame.position !== undefined) { this.position = frame.position; }
    this.updatedAt = now();
    this.ready = true;
    this.source = 'live';
    this.emit('resumed', {position: this.position});
    this.client._noteData(this, []);
  };

  LiveView.prototype._onError = function (err) {
    this.error = err;
    this.emit('error', err);
  };

  // ---------------------------------------------------------------- client

  /**
   * Options: see DEFAULTS above. Token sources, in order of use when the server asks for a new
   * token: options.getToken(callback, info) (may also return a token or a thenable), else the
   * REST refresh endpoint with the refresh token.
   */
  function RealtimeClient(options) {
    if (!(this instanceof RealtimeClient)) { return new RealtimeClient(options); }
    this.options = extend({}, DEFAULTS, options);
    if (typeof this.options.transports === 'string') {
      this.options.transports = [this.options.transports];
    }
    this.state = STATES.CLOSED;
    this.transport = null;
    this.latency = null;
    this.user = null;
    this.server = null;
    this.failures = 0;
    this.nextRetryAt = null;
    this.lastDataAt = null;
    this.lastCloseCode = null;
    this.token = this.options.token || null;
    this.refreshToken = this.options.refreshToken || null;
    this._tokenExpiresAt = this.options.tokenTtlMs ? now() + this.options.tokenTtlMs : null;
    this._views = [];
    this._viewsById = {};
    this._nextSubId = 1;
    this._sock = null;
    this._authed = false;
    this._attempt = 0;
    this._backoffAttempt = 0;
    this._everLive = false;
    this._wanted = false;
    this._liveSince = null;
    this._consecutiveAuthCloses = 0;
    this._goodbye = null;
    this._timers = {};
    this._pingSentAt = null;
    this._polling = false;
    this._pollRound = 0;
    this._tokenWaiters = null;
    var self = this;
    this._onOnline = function () { self._networkUp(); };
    this._onOffline = function () { self._networkDown(); };
    if (this.options.autoConnect) { this.connect(); }
  }
  mixinEmitter(RealtimeClient);

  RealtimeClient.STATES = STATES;
  RealtimeClient.PROTOCOL_VERSION = PROTOCOL_VERSION;
  RealtimeClient.LiveView = LiveView;
  RealtimeClient.HttpError = HttpError;
  RealtimeClient.decodeToken = decodeToken;
  RealtimeClient.http = http;

  /** POST {username,password} to the login endpoint; cb(err, tokens). */
  RealtimeClient.login = function (opts, cb) {
    var base = (opts && opts.apiBase) || DEFAULTS.apiBase;
    http({
      method: 'POST',
      url: joinUrl(base, 'auth/login'),
      body: {username: opts.username, password: opts.password},
      timeoutMs: DEFAULTS.httpTimeoutMs
    }, cb);
  };

  // ------------------------------------------------ timers

  RealtimeClient.prototype._setTimer = function (name, fn, ms, repeat) {
    this._clearTimer(name);
    var self = this;
    var wrapped = function () {
      if (!repeat) { delete self._timers[name]; }
      fn.call(self);
    };
    this._timers[name] = {id: repeat ? setInterval(wrapped, ms) : setTimeout(wrapped, ms), repeat: repeat};
  };

  RealtimeClient.prototype._clearTimer = function (name) {
    var t = this._timers[name];
    if (!t) { return; }
    if (t.repeat) { clearInterval(t.id); } else { clearTimeout(t.id); }
    delete this._timers[name];
  };

  RealtimeClient.prototype._random = function () {
    return (this.options.random || Math.random)();
  };

  // ------------------------------------------------ state

  RealtimeClient.prototype._setState = function (state, info) {
    var old = this.state;
    if (old === state) { return; }
    this.state = state;
    this.emit('state', state, old, info || null);
    this.emit(state, old, info || null);
  };

  RealtimeClient.prototype._navigatorOffline = function () {
    return !!(root.navigator && root.navigator.onLine === false);
  };

  RealtimeClient.prototype._watchNetwork = function (on) {
    if (!this.options.watchNetwork || !root.addEventListener) { return; }
    var method = on ? 'addEventListener' : 'removeEventListener';
    root[method]('online', this._onOnline, false);
    root[method]('offline', this._onOffline, false);
  };

  // ------------------------------------------------ public lifecycle

  /** Starts connecting (no-op when already wanted). */
  RealtimeClient.prototype.connect = function () {
    if (this._wanted) { return this; }
    this._wanted = true;
    this._watchNetwork(true);
    if (this._navigatorOffline()) {
      this._setState(STATES.OFFLINE);
      return this;
    }
    this._openSocket(STATES.CONNECTING);
    return this;
  };

  /** Closes the connection and stops every timer; views keep their last data. */
  RealtimeClient.prototype.close = function () {
    this._wanted = false;
    this._watchNetwork(false);
    this._attempt++;
    for (var name in this._timers) {
      if (hasOwn.call(this._timers, name)) { this._clearTimer(name); }
    }
    this._stopPolling();
    this._dropSocket(1000, 'client closed');
    this.nextRetryAt = null;
    this._setState(STATES.CLOSED);
    return this;
  };

  /**
   * Signs out: closes the connection, then ends the login session on the server, so its refresh
   * token and the access tokens issued with it stop working everywhere; cb(err) when done.
   */
  RealtimeClient.prototype.logout = function (cb) {
    var refreshToken = this.refreshToken;
    this.close();
    if (!refreshToken) {
      if (cb) { cb(null); }
      return this;
    }
    http({
      method: 'POST',
      url: joinUrl(this.options.apiBase, 'auth/logout'),
      body: {refresh_token: refreshToken},
      timeoutMs: this.options.httpTimeoutMs
    }, function (e) { if (cb) { cb(e || null); } });
    return this;
  };

  /** Tries the socket now, whatever the backoff, offline flag or fallback says. */
  RealtimeClient.prototype.retry = function () {
    if (!this._wanted) {
      this._wanted = true;
      this._watchNetwork(true);
    }
    this._clearTimer('reconnect');
    this._backoffAttempt = 0;
    this._dropSocket(1000, 'manual retry');
    this._openSocket(STATES.CONNECTING);
    return this;
  };

  /** Sends a ping now; the pong updates `latency`. */
  RealtimeClient.prototype.ping = function () {
    if (!this._authed) { return false; }
    if (this._pingSentAt === null) { this._pingSentAt = now(); }
    return this._send({type: 'ping', ts: now()});
  };

  /** Replaces the tokens (for example after a new login); the next auth uses them. */
  RealtimeClient.prototype.setTokens = function (tokens) {
    tokens = tokens || {};
    if (tokens.access_token) { this.token = tokens.access_token; }
    if (tokens.refresh_token) { this.refreshToken = tokens.refresh_token; }
    this._tokenExpiresAt = typeof tokens.expires_in === 'number' ? now() + tokens.expires_in * 1000 : null;
    if (this._authed && tokens.access_token) { this._send({type: 'auth', token: this.token}); }
    return this;
  };

  RealtimeClient.prototype.getViews = function () { return this._views.slice(); };

  // ------------------------------------------------ subscriptions

  /**
   * Opens a live query. options: sort ('field' | '-field' | comparator), throttle_ms,
   * limit (page size for the REST fallback), id (a subscription id of your own, max 64 chars).
   */
  RealtimeClient.prototype.subscribe = function (collection, filter, options) {
    options = options || {};
    var id = options.id ? String(options.id) : 's' + (this._nextSubId++);
    if (id.length > 64) { throw new Error('subscription id longer than 64 characters'); }
    if (hasOwn.call(this._viewsById, id)) { throw new Error('subscription id in use: ' + id); }
    var view = new LiveView(this, id, collection, filter, options);
    this._views.push(view);
    this._viewsById[id] = view;
    if (this._authed) {
      this._sendSubscribe(view);
    } else if (this._polling) {
      this._pollView(view, this._pollRound);
    }
    return view;
  };

  RealtimeClient.prototype.unsubscribe = function (viewOrId) {
    var view = typeof viewOrId === 'string' ? this._viewsById[viewOrId] : viewOrId;
    if (!view || !view.active) { return false; }
    view.active = false;
    if (view._retryTimer) { clearTimeout(view._retryTimer); view._retryTimer = null; }
    delete this._viewsById[view.id];
    for (var i = 0; i < this._views.length; i++) {
      if (this._views[i] === view) { this._views.splice(i, 1); break; }
    }
    if (this._authed) { this._send({type: 'unsubscribe', id: view.id}); }
    view.emit('unsubscribed', view);
    return true;
  };

  RealtimeClient.prototype._sendSubscribe = function (view) {
    var frame = {type: 'subscribe', id: view.id, collection: view.collection};
    if (view.filter) { frame.filter = view.filter; }
    if (view.position !== null && view.position !== undefined && !view._resync) {
      frame.since = view.position;
    }
    var throttle = view.options.throttle_ms !== undefined ? view.options.throttle_ms : view.options.throttleMs;
    if (typeof throttle === 'number') { frame.throttle_ms = throttle; }
    view._resync = false;
    this._send(frame);
  };

  // The server dropped the subscription because the database did not answer: ask again soon,
  // spread out so a recovering database is not hit by every client at once.
  RealtimeClient.prototype._resubscribeLater = function (view) {
    var sock = this._sock;
    var self = this;
    var delay = this.options.backoffBaseMs + Math.floor(this._random() * 4 * this.options.backoffBaseMs);
    if (view._retryTimer) { clearTimeout(view._retryTimer); }
    view._retryTimer = setTimeout(function () {
      view._retryTimer = null;
      if (view.active && self._authed && sock === self._sock) { self._sendSubscribe(view); }
    }, delay);
  };

  RealtimeClient.prototype._refreshView = function (view) {
    if (!view.active) { return; }
    if (this._authed) {
      this._send({type: 'refresh', id: view.id});
    } else if (this._polling) {
      this._pollView(view, this._pollRound);
    }
  };

  RealtimeClient.prototype._noteData = function (view, changes) {
    this.lastDataAt = now();
    this.emit('data', {view: view, changes: changes});
  };

  // ------------------------------------------------ tokens

  RealtimeClient.prototype._tokenExpiring = function () {
    if (!this.token) { return true; }
    var expiresAt = this._tokenExpiresAt;
    if (!expiresAt) {
      var claims = decodeToken(this.token);
      expiresAt = claims && typeof claims.exp === 'number' ? claims.exp * 1000 : null;
    }
    return expiresAt !== null && expiresAt - now() < this.options.tokenRefreshMarginMs;
  };

  /**
   * cb(err, token) with a usable access token. `force` skips the expiry check (the server said
   * the token is bad or about to expire). Concurrent callers share one refresh.
   * err.fatal means no retry can succeed without a new login.
   */
  RealtimeClient.prototype._withToken = function (force, reason, cb) {
    if (!force && this.token && !this._tokenExpiring()) { cb(null, this.token); return; }
    if (this._tokenWaiters) { this._tokenWaiters.push(cb); return; }
    this._tokenWaiters = [cb];
    var self = this;
    var settled = false;
    function done(err, tokens) {
      if (settled) { return; }
      settled = true;
      if (!err) {
        if (typeof tokens === 'string') { tokens = {access_token: tokens}; }
        if (!tokens || !tokens.access_token) {
          err = new Error('no token');
          err.fatal = true;
        } else {
          self.token = tokens.access_token;
          if (tokens.refresh_token) { self.refreshToken = tokens.refresh_token; }
          self._tokenExpiresAt = typeof tokens.expires_in === 'number' ? now() + tokens.expires_in * 1000 : null;
          self.emit('token', {
            access_token: self.token,
            refresh_token: self.refreshToken,
            expires_in: tokens.expires_in
          });
        }
      }
      var waiters = self._tokenWaiters;
      self._tokenWaiters = null;
      for (var i = 0; i < waiters.length; i++) { waiters[i](err || null, err ? null : self.token); }
    }
    var getToken = this.options.getToken;
    if (typeof getToken === 'function') {
      var result;
      try {
        result = getToken(done, {reason: reason, token: this.token});
      } catch (e) {
        done(e);
        return;
      }
      if (result && typeof result.then === 'function') {
        result.then(function (t) { done(null, t); }, function (e) { done(e || new Error('getToken failed')); });
      } else if (result !== undefined) {
        done(null, result);
      }
      return;
    }
    if (!this.refreshToken) {
      var err = new Error('token expired and no refresh token or getToken callback');
      err.fatal = true;
      done(err);
      return;
    }
    http({
      method: 'POST',
      url: joinUrl(this.options.apiBase, 'auth/refresh'),
      body: {refresh_token: this.refreshToken},
      timeoutMs: this.options.httpTimeoutMs
    }, function (e, body) {
      if (e) {
        e.fatal = e.status === 400 || e.status === 401 || e.status === 403;
        done(e);
      } else {
        done(null, body);
      }
    });
  };

  RealtimeClient.prototype._unauthorized = function (err) {
    this.close();
    this.emit('unauthorized', err);
  };

  /** Re-sends auth on the open socket with a new token (reauth_required, token errors). */
  RealtimeClient.prototype._reauth = function (reason) {
    var sock = this._sock;
    var self = this;
    this._withToken(true, reason, function (err, token) {
      if (err) {
        if (err.fatal) { self._unauthorized(err); } else { self.emit('error', {code: 'token_refresh_failed', message: err.message}); }
        return;
      }
      if (sock && sock === self._sock) { self._send({type: 'auth', token: token}); }
    });
  };

  // ------------------------------------------------ HTTP with auth

  /**
   * An authenticated REST call. path is relative to apiBase unless it starts with '/'.
   * options: headers, ifMatch (a version number or an ETag). A 401 refreshes the token once and
   * retries. cb(err, body, response): err is an HttpError (err.status, err.problem).
   */
  RealtimeClient.prototype.request = function (method, path, body, options, cb) {
    if (typeof options === 'function') { cb = options; options = null; }
    options = options || {};
    cb = cb || function () {};
    var self = this;
    var url = joinUrl(this.options.apiBase, path);
    function attempt(token, retried) {
      var headers = extend({}, options.headers);
      if (token) { headers.Authorization = 'Bearer ' + token; }
      if (options.ifMatch !== undefined && options.ifMatch !== null) {
        var tag = String(options.ifMatch);
        headers['If-Match'] = tag.charAt(0) === '"' || tag.slice(0, 2) === 'W/' ? tag : '"' + tag + '"';
      }
      http({method: method, url: url, headers: headers, body: body, timeoutMs: self.options.httpTimeoutMs},
        function (err, data, res) {
          if (err && err.status === 401 && !retried) {
            self._withToken(true, 'rejected', function (tokErr, fresh) {
              if (tokErr) {
                if (tokErr.fatal) { self._unauthorized(tokErr); }
                cb(err, data, res);
                return;
              }
              attempt(fresh, true);
            });
            return;
          }
          cb(err, data, res);
        });
    }
    this._withToken(false, 'expired', function (err, token) {
      if (err) {
        if (err.fatal) { self._unauthorized(err); }
        cb(err instanceof HttpError ? err : new HttpError(401, null, null, err.message), null, null);
        return;
      }
      attempt(token, false);
    });
  };

  // ------------------------------------------------ socket

  RealtimeClient.prototype._send = function (frame) {
    var sock = this._sock;
    if (!sock || sock.readyState !== 1) { return false; }
    try {
      sock.send(JSON.stringify(frame));
      return true;
    } catch (e) {
      return false;
    }
  };

  // The state shown while an attempt runs: the fallback keeps saying "polling" because data
  // still flows; a manual retry says "connecting" so the user sees it act.
  RealtimeClient.prototype._openSocket = function (requestedState) {
    var attemptId = ++this._attempt;
    var self = this;
    this.nextRetryAt = null;
    var state = requestedState;
    if (!state) {
      state = this._polling ? STATES.POLLING : (this._everLive ? STATES.RECONNECTING : STATES.CONNECTING);
    }
    this._setState(state);
    this._withToken(false, 'expired', function (err) {
      if (attemptId !== self._attempt || !self._wanted) { return; }
      if (err) {
        if (err.fatal) { self._unauthorized(err); return; }
        self._attemptFailed(null);
        return;
      }
      self._createSocket(attemptId);
    });
  };

  RealtimeClient.prototype._createSocket = function (attemptId) {
    var self = this;
    var SockJSCtor = this.options.SockJS || root.SockJS;
    if (typeof SockJSCtor !== 'function') { throw new Error('RealtimeClient needs SockJS'); }
    var sockOptions = extend({}, this.options.sockjsOptions);
    if (this.options.transports) { sockOptions.transports = this.options.transports; }
    var sock;
    try {
      sock = new SockJSCtor(absoluteUrl(this.options.url), null, sockOptions);
    } catch (e) {
      this.emit('error', {code: 'socket_error', message: e.message});
      this._attemptFailed(null);
      return;
    }
    this._sock = sock;
    this._authed = false;
    this._goodbye = null;
    this._setTimer('connect', function () {
      if (sock === this._sock && !this._authed) {
        this._dropSocket(4000, 'connect timeout');
        this._attemptFailed(null);
      }
    }, this.options.connectTimeoutMs);
    sock.onopen = function () {
      if (sock !== self._sock) { return; }
      self.transport = sock.transport || null;
      self.emit('transport', self.transport);
      self._send({type: 'auth', token: self.token});
    };
    sock.onmessage = function (e) {
      if (sock !== self._sock) { return; }
      self._onFrame(e.data);
    };
    sock.onclose = function (e) {
      if (sock !== self._sock) { return; }
      self._onSocketClose(e && e.code, e && e.reason);
    };
  };

  // Forgets the socket first, so its close event (delivered later) is ignored.
  RealtimeClient.prototype._dropSocket = function (code, reason) {
    var sock = this._sock;
    this._teardownSocket();
    if (!sock) { return; }
    try { sock.close(code, reason); } catch (e) { /* already closed */ }
  };

  RealtimeClient.prototype._teardownSocket = function () {
    this._sock = null;
    this._authed = false;
    this.transport = null;
    this._pingSentAt = null;
    this._clearTimer('connect');
    this._clearTimer('ping');
    this._clearTimer('goodbye');
  };

  RealtimeClient.prototype._onFrame = function (data) {
    var frame;
    try { frame = typeof data === 'string' ? JSON.parse(data) : data; } catch (e) { frame = null; }
    if (!frame || typeof frame !== 'object') {
      this.emit('error', {code: 'bad_frame', message: 'unparseable frame from server'});
      return;
    }
    var view = frame.sub !== undefined ? this._viewsById[frame.sub] : null;
    switch (frame.type) {
      case 'welcome':
        this.server = frame;
        if (frame.protocol !== PROTOCOL_VERSION) {
          this.emit('error', {code: 'protocol_mismatch', message: 'server speaks protocol ' + frame.protocol});
        }
        this.emit('welcome', frame);
        break;
      case 'auth_ok':
        this.user = {user: frame.user, tenant: frame.tenant, roles: frame.roles, expires_at: frame.expires_at};
        this.emit('auth', this.user);
        if (!this._authed) { this._onLive(); }
        break;
      case 'snapshot':
        if (view) { view._onSnapshot(frame); }
        break;
      case 'change':
        if (view) { view._onChange(frame); }
        break;
      case 'resumed':
        if (view) { view._onResumed(frame); }
        break;
      case 'reauth_required':
        this.emit('reauth_required', frame);
        this._reauth('reauth_required');
        break;
      case 'pong':
        this._onPong(frame);
        break;
      case 'error':
        this._onErrorFrame(frame);
        break;
      case 'goodbye':
        this._goodbye = frame;
        this.emit('goodbye', frame);
        this._setTimer('goodbye', function () {
          if (this._sock) {
            var code = typeof frame.code === 'number' ? frame.code : 1000;
            var wasLive = this._authed;
            this._dropSocket(1000, 'goodbye');
            this._afterClose(code, frame.reason, wasLive);
          }
        }, this.options.goodbyeGraceMs);
        break;
      default:
        this.emit('frame', frame);
    }
  };

  RealtimeClient.prototype._onErrorFrame = function (frame) {
    var err = {code: frame.code, message: frame.message, ref: frame.ref};
    var view = frame.ref !== undefined ? this._viewsById[frame.ref] : null;
    if (view) {
      view._onError(err);
      if (frame.code === 'unavailable') { this._resubscribeLater(view); }
    }
    if (this._authed && (frame.code === 'token_expired' || frame.code === 'auth_required' ||
        frame.code === 'auth_failed')) {
      this._reauth(frame.code);
    }
    this.emit('error', err);
  };

  RealtimeClient.prototype._onLive = function () {
    this._authed = true;
    this._clearTimer('connect');
    this._consecutiveAuthCloses = 0;
    this.failures = 0;
    this.nextRetryAt = null;
    this._everLive = true;
    this._liveSince = now();
    this._stopPolling();
    this._setState(STATES.LIVE, {transport: this.transport});
    for (var i = 0; i < this._views.length; i++) { this._sendSubscribe(this._views[i]); }
    this._pingSentAt = null;
    this.ping();
    this._setTimer('ping', this._pingTick, this.options.pingIntervalMs, true);
  };

  RealtimeClient.prototype._pingTick = function () {
    if (this._pingSentAt !== null && now() - this._pingSentAt > this.options.pongTimeoutMs) {
      this.emit('error', {code: 'pong_timeout', message: 'no pong from the server'});
      this._dropSocket(4000, 'pong timeout');
      this._afterClose(4000, 'pong timeout', true);
      return;
    }
    this.ping();
  };

  RealtimeClient.prototype._onPong = function (frame) {
    this._pingSentAt = null;
    if (typeof frame.ts === 'number') {
      this.latency = Math.max(0, now() - frame.ts);
      this.emit('latency', this.latency);
    }
  };

  RealtimeClient.prototype._onSocketClose = function (code, reason) {
    var wasLive = this._authed;
    this._teardownSocket();
    this._afterClose(code, reason, wasLive);
  };

  RealtimeClient.prototype._afterClose = function (code, reason, wasLive) {
    var goodbye = this._goodbye;
    this._goodbye = null;
    if (goodbye && typeof goodbye.code === 'number' && (!code || code === 1000 || code === 1006)) {
      code = goodbye.code;
    }
    this.lastCloseCode = code || null;
    this.emit('disconnect', {code: code, reason: reason, wasLive: wasLive, goodbye: goodbye});
    if (!this._wanted) { return; }
    if (wasLive && this._liveSince !== null && now() - this._liveSince >= this.options.stableAfterMs) {
      this._backoffAttempt = 0;
    }
    this._liveSince = null;
    var serverDelay = goodbye && typeof goodbye.reconnect_after_ms === 'number' ? goodbye.reconnect_after_ms : null;
    var self = this;
    var i;
    switch (code) {
      case 4001:
        // Authentication failed or timed out: a fresh token, then straight back (once).
        this._consecutiveAuthCloses++;
        this._withToken(true, 'rejected', function (err) {
          if (!self._wanted) { return; }
          if (err && err.fatal) { self._unauthorized(err); return; }
          if (err || self._consecutiveAuthCloses > 1) {
            self._attemptFailed(serverDelay);
          } else {
            self._scheduleReconnect(serverDelay !== null ? serverDelay : 0);
          }
        });
        return;
      case 4003:
        this.emit('error', {code: 'forbidden', message: reason || 'forbidden by the server'});
        this._attemptFailed(Math.max(serverDelay || 0, this.options.backoffCapMs));
        return;
      case 4008:
        this._attemptFailed(serverDelay);
        return;
      case 4009:
        // Too far behind: a fresh snapshot is cheaper than replaying what we could not read.
        for (i = 0; i < this._views.length; i++) { this._views[i]._resync = true; }
        this._scheduleReconnect(serverDelay);
        return;
      default:
        if (wasLive) {
          this._scheduleReconnect(serverDelay);
        } else {
          this._attemptFailed(serverDelay);
        }
    }
  };

  // An attempt that never went live. `minDelayMs` from the server, when it said so.
  RealtimeClient.prototype._attemptFailed = function (minDelayMs) {
    this._dropSocket(1000, 'attempt failed');
    this.failures++;
    if (this.failures >= this.options.pollAfterFailures) { this._startPolling(); }
    this._scheduleReconnect(minDelayMs);
  };

  /** Full jitter: uniformly random in [0, min(cap, base * 2^attempt)). */
  RealtimeClient.prototype._backoffDelay = function () {
    var ceiling = Math.min(this.options.backoffCapMs, this.options.backoffBaseMs * Math.pow(2, this._backoffAttempt));
    if (this.options.backoffBaseMs * Math.pow(2, this._backoffAttempt) < this.options.backoffCapMs) {
      this._backoffAttempt++;
    }
    return Math.floor(this._random() * ceiling);
  };

  // serverDelay: reconnect_after_ms from a goodbye (plus up to one base of jitter, so a restart
  // does not bring every client back in the same millisecond), else the backoff.
  RealtimeClient.prototype._scheduleReconnect = function (serverDelay) {
    if (!this._wanted) { return; }
    if (this._navigatorOffline()) {
      this._networkDown();
      return;
    }
    var delay;
    if (serverDelay !== null && serverDelay !== undefined) {
      delay = serverDelay + (serverDelay > 0 ? Math.floor(this._random() * this.options.backoffBaseMs) : 0);
    } else {
      delay = this._backoffDelay();
    }
    this.nextRetryAt = now() + delay;
    this._setState(this._polling ? STATES.POLLING : STATES.RECONNECTING);
    this.emit('reconnect_scheduled', {delay: delay, at: this.nextRetryAt, failures: this.failures});
    this._setTimer('reconnect', function () { this._openSocket(null); }, delay);
  };

  // ------------------------------------------------ network events

  RealtimeClient.prototype._networkDown = function () {
    if (!this._wanted) { return; }
    this._attempt++;
    this._clearTimer('reconnect');
    this._stopPolling();
    this._dropSocket(1000, 'offline');
    this.nextRetryAt = null;
    this._setState(STATES.OFFLINE);
  };

  RealtimeClient.prototype._networkUp = function () {
    if (!this._wanted || this.state !== STATES.OFFLINE) { return; }
    this._backoffAttempt = 0;
    if (this.failures >= this.options.pollAfterFailures) { this._startPolling(); }
    this._openSocket(null);
  };

  // ------------------------------------------------ REST fallback

  RealtimeClient.prototype._startPolling = function () {
    if (this._polling) { return; }
    this._polling = true;
    this._pollRound++;
    this.emit('fallback', {polling: true});
    this._pollAll();
  };

  RealtimeClient.prototype._stopPolling = function () {
    if (!this._polling) { return; }
    this._polling = false;
    this._pollRound++;
    this._clearTimer('poll');
    this.emit('fallback', {polling: false});
  };

  RealtimeClient.prototype._pollAll = function () {
    if (!this._polling) { return; }
    var round = this._pollRound;
    var pending = this._views.length;
    var self = this;
    var ok = 0;
    function next() {
      if (round !== self._pollRound) { return; }
      self.emit('poll', {views: self._views.length, ok: ok});
      self._setTimer('poll', self._pollAll, self.options.pollIntervalMs);
    }
    if (!pending) { next(); return; }
    var views = this._views.slice();
    for (var i = 0; i < views.length; i++) {
      this._pollView(views[i], round, function (success) {
        if (success) { ok++; }
        if (--pending === 0) { next(); }
      });
    }
  };

  RealtimeClient.prototype._pollView = function (view, round, cb) {
    var self = this;
    var limit = view.options.limit || this.options.pollLimit;
    var sort = typeof view.options.sort === 'string' ? view.options.sort : null;
    var items = [];
    var pages = 0;
    function page(after) {
      var q = ['limit=' + encodeURIComponent(limit)];
      if (view.filter) { q.push('filter=' + encodeURIComponent(JSON.stringify(view.filter))); }
      if (sort) { q.push('sort=' + encodeURIComponent(sort)); }
      if (after !== null && after !== undefined) { q.push('after=' + encodeURIComponent(after)); }
      self.request('GET', encodeURIComponent(view.collection) + '?' + q.join('&'), null, null,
        function (err, body) {
          if (round !== self._pollRound || !view.active) { return; }
          if (err) {
            view._onError({code: 'poll_failed', status: err.status, message: err.message});
            if (cb) { cb(false); }
            return;
          }
          var got = body && isArray(body.items) ? body.items : [];
          items.push.apply(items, got);
          pages++;
          if (body && body.next && pages < self.options.pollMaxPages) {
            page(body.next);
            return;
          }
          view._applyFull(items, 'poll');
          if (cb) { cb(true); }
        });
    }
    page(null);
  };

  return RealtimeClient;
}));
