/*
 * The realtime-app dashboard, part 1 of 10: the Dashboard namespace, the shared state and the
 * DOM helpers. The dashboard is plain ES5 scripts that index.html loads in order, each adding
 * to window.Dashboard; dashboard.js, the last, starts it. Document fields only ever reach the
 * page through textContent / text nodes: never innerHTML with data.
 */
(function (root) {
  'use strict';

  var D = root.Dashboard = {};

  D.API_BASE = '/api/v1';

  // Everything one signed-in session knows; dashboard.js resets it on sign-out.
  D.app = {
    session: null,
    user: null,
    client: null,
    // Collection descriptors (schema.js) by name, and their names in the server's order.
    collections: {},
    names: [],
    views: {},
    tables: {},
    forms: {},
    isAdmin: false,
    tenant: '',
    tenants: {},
    feedPaused: false,
    feedSkipped: 0,
    wasLiveOnce: false
  };

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

  function each(object, fn) {
    for (var k in object) { if (object.hasOwnProperty(k)) { fn(object[k], k); } }
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

  function display(value) {
    if (value === null || value === undefined) { return ''; }
    if (typeof value === 'object') { return JSON.stringify(value); }
    return String(value);
  }

  function shorten(text, max) {
    return text.length > max ? text.slice(0, max - 1) + '...' : text;
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

  // Buttons inside a container whose data-action is `action`: the first gets the focus.
  function focusAction(container, action) {
    var buttons = container.getElementsByTagName('button');
    for (var i = 0; i < buttons.length; i++) {
      if (buttons[i].getAttribute('data-action') === action) { buttons[i].focus(); return; }
    }
  }

  function docPath(name, id) { return name + '/' + encodeURIComponent(id); }

  D.dom = {
    byId: byId, setText: setText, show: show, el: el, clear: clear, detach: detach,
    closestWith: closestWith, focusAction: focusAction
  };
  D.util = {
    contains: contains, each: each, clockTime: clockTime, ago: ago, display: display, shorten: shorten,
    parseQuery: parseQuery, docPath: docPath
  };
}(window));
