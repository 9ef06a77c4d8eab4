/*
 * Dashboard part 3: the tokens kept for this tab (sessionStorage) and the sign-in form.
 */
(function (D) {
  'use strict';

  var SESSION_KEY = 'realtime-app.session';
  var TENANT_KEY = 'realtime-app.tenant';
  var app = D.app;
  var byId = D.dom.byId;
  var setText = D.dom.setText;
  var show = D.dom.show;

  function load() {
    try {
      var raw = window.sessionStorage.getItem(SESSION_KEY);
      var data = raw ? JSON.parse(raw) : null;
      return data && data.access_token ? data : null;
    } catch (e) {
      return null;
    }
  }

  function save(tokens) {
    var data = {
      access_token: tokens.access_token,
      refresh_token: tokens.refresh_token || (app.session && app.session.refresh_token) || null,
      expires_in: tokens.expires_in,
      obtained_at: new Date().getTime()
    };
    app.session = data;
    try { window.sessionStorage.setItem(SESSION_KEY, JSON.stringify(data)); } catch (e) { /* private mode */ }
  }

  function forget() {
    app.session = null;
    try {
      window.sessionStorage.removeItem(SESSION_KEY);
      window.sessionStorage.removeItem(TENANT_KEY);
    } catch (e) { /* private mode */ }
  }

  function savedTenant() {
    try { return window.sessionStorage.getItem(TENANT_KEY) || ''; } catch (e) { return ''; }
  }

  function saveTenant(tenant) {
    try { window.sessionStorage.setItem(TENANT_KEY, tenant); } catch (e) { /* private mode */ }
  }

  function showLogin(notice) {
    show(byId('login'), true);
    show(byId('app'), false);
    show(byId('conn'), false);
    show(byId('session'), false);
    setText(byId('login-notice'), notice || '');
    byId('login-password').value = '';
    byId('login-username').focus();
  }

  function hideLogin() {
    show(byId('login'), false);
    setText(byId('login-error'), '');
    setText(byId('login-notice'), '');
  }

  function loginMessage(err) {
    if (err.status === 0) { return 'Cannot reach the server. Check your connection and try again.'; }
    if (err.status === 401 || err.status === 400) { return 'Wrong username or password.'; }
    if (err.status === 429) {
      var wait = err.response && err.response.header('Retry-After');
      return 'Too many attempts.' + (wait ? ' Try again in ' + wait + ' s.' : ' Try again later.');
    }
    return err.message;
  }

  // Binds the sign-in form; onSignedIn() runs once the tokens are saved.
  function bindLogin(onSignedIn) {
    byId('login-form').addEventListener('submit', function (event) {
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
      window.RealtimeClient.login({apiBase: D.API_BASE, username: username, password: password}, function (err, body) {
        submit.disabled = false;
        setText(submit, 'Sign in');
        if (err) {
          setText(errorBox, loginMessage(err));
          byId('login-password').focus();
          return;
        }
        byId('login-password').value = '';
        save(body);
        onSignedIn();
      });
    }, false);
  }

  D.session = {
    load: load, save: save, forget: forget, savedTenant: savedTenant, saveTenant: saveTenant,
    showLogin: showLogin, hideLogin: hideLogin, bindLogin: bindLogin
  };
}(window.Dashboard));
