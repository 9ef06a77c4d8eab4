/*
 * Dashboard part 5: the activity feed (one line per change another client made, in any
 * collection) and the toasts.
 */
(function (D) {
  'use strict';

  var TOAST_MS = 7000;
  var TOASTS_MAX = 4;
  var FEED_MAX = 50;
  // Values longer than this are cut in feed lines.
  var VALUE_MAX = 40;
  var SERVER_FIELDS = ['id', 'tenant', 'version', 'created_at', 'updated_at'];
  var app = D.app;
  var byId = D.dom.byId;
  var el = D.dom.el;
  var setText = D.dom.setText;

  function fieldText(desc, name, value) {
    var field = D.schema.fieldNamed(desc, name);
    return D.util.shorten(field ? D.schema.text(field, value) : D.util.display(value), VALUE_MAX);
  }

  function fieldLabel(desc, name) {
    var field = D.schema.fieldNamed(desc, name);
    return field ? field.label.toLowerCase() : name;
  }

  // "Service api added (up)": the first enum field says what kind of thing arrived.
  function addedNote(desc, doc) {
    for (var i = 0; i < desc.fields.length; i++) {
      var field = desc.fields[i];
      if (field.kind === 'enum' && doc[field.name] !== undefined) { return ' (' + fieldText(desc, field.name, doc[field.name]) + ')'; }
    }
    return '';
  }

  function describe(desc, ev) {
    var doc = ev.doc || ev.oldDoc || {};
    var subject = desc.Singular + ' ' + D.schema.title(desc, doc);
    if (ev.op === 'added') { return subject + ' added' + addedNote(desc, doc); }
    if (ev.op === 'removed') { return subject + (ev.cause === 'delete' || !ev.cause ? ' removed' : ' left this view'); }
    var parts = [];
    var old = ev.oldDoc || {};
    var k;
    for (k in doc) {
      if (!doc.hasOwnProperty(k) || D.util.contains(SERVER_FIELDS, k)) { continue; }
      if (D.util.display(old[k]) !== D.util.display(doc[k])) {
        var field = D.schema.fieldNamed(desc, k);
        if (field && field.kind === 'boolean' && field.format) {
          parts.push(field.format(doc[k]));  // "resolved" says it all
          continue;
        }
        var from = old.hasOwnProperty(k) ? fieldText(desc, k, old[k]) : '';
        parts.push(fieldLabel(desc, k) + ' ' + (from || '(empty)') + ' to ' + (fieldText(desc, k, doc[k]) || '(empty)'));
      }
    }
    for (k in old) {
      if (old.hasOwnProperty(k) && !D.util.contains(SERVER_FIELDS, k) && !doc.hasOwnProperty(k)) { parts.push(fieldLabel(desc, k) + ' cleared'); }
    }
    return subject + ': ' + (parts.length ? parts.join(', ') : 'updated');
  }

  function add(name, ev) {
    if (app.feedPaused) {
      app.feedSkipped++;
      return;
    }
    var feed = byId('feed');
    var date = new Date();
    var item = el('li', {'class': 'feed-item feed-' + ev.op, 'data-collection': name, 'data-op': ev.op, 'data-id': ev.id}, [
      el('time', {datetime: date.toISOString()}, [D.util.clockTime(date)]),
      ' ',
      el('span', {'class': 'feed-text'}, [describe(app.collections[name], ev)])
    ]);
    feed.insertBefore(item, feed.firstChild);
    while (feed.childNodes.length > FEED_MAX) { feed.removeChild(feed.lastChild); }
  }

  function onPause() {
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

  function toast(kind, text) {
    var box = byId('toasts');
    var close = el('button', {type: 'button', 'class': 'toast-close', 'aria-label': 'Dismiss notification'}, ['\u00d7']);
    var node = el('div', {'class': 'toast toast-' + kind, 'data-kind': kind, role: kind === 'down' || kind === 'error' ? 'alert' : null},
      [el('span', {'class': 'toast-text'}, [text]), close]);
    var timer = null;
    function dismiss() {
      if (timer) { clearTimeout(timer); }
      D.dom.detach(node);
    }
    close.addEventListener('click', dismiss, false);
    box.appendChild(node);
    while (box.childNodes.length > TOASTS_MAX) { box.removeChild(box.firstChild); }
    timer = setTimeout(dismiss, TOAST_MS);
    node.addEventListener('mouseenter', function () { if (timer) { clearTimeout(timer); timer = null; } }, false);
    node.addEventListener('mouseleave', function () { if (!timer) { timer = setTimeout(dismiss, TOAST_MS / 2); } }, false);
    return node;
  }

  function reset() {
    D.dom.clear(byId('feed'));
    D.dom.clear(byId('toasts'));
    app.feedSkipped = 0;
  }

  D.feed = {add: add, onPause: onPause, toast: toast, reset: reset};
}(window.Dashboard));
