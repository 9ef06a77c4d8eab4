/*
 * Dashboard part 6: a panel per collection with its live table. Rows follow the live view by
 * id (keyed reconciliation), flash when they change, fade out when they leave; writers get
 * Edit and Delete (with an inline confirmation) on each row.
 */
(function (D) {
  'use strict';

  // How long a changed row stays highlighted; matches the CSS animation.
  var FLASH_MS = 1600;
  // How long a removed row takes to fade before it leaves the table; matches the CSS transition.
  var REMOVE_MS = 700;
  var app = D.app;
  var dom = D.dom;
  var el = dom.el;
  var byId = dom.byId;
  var setText = dom.setText;
  var display = D.util.display;

  function formatTime(value) {
    if (!value) { return ''; }
    var d = new Date(value);
    return isNaN(d.getTime()) ? String(value) : D.util.clockTime(d);
  }

  var TENANT_COLUMN = {name: 'tenant', label: 'Tenant', kind: 'string'};
  var UPDATED_COLUMN = {name: 'updated_at', label: 'Updated', kind: 'string', format: formatTime, hover: true};

  function columnsOf(desc) {
    var cols = desc.columns.slice();
    if (app.isAdmin) { cols.push(TENANT_COLUMN); }
    cols.push(UPDATED_COLUMN);
    return cols;
  }

  function isNumeric(col) { return col.kind === 'integer' || col.kind === 'number'; }

  function cellClass(col) {
    if (isNumeric(col)) { return 'num'; }
    return col.kind === 'text' || col.kind === 'json' ? 'long' : null;
  }

  function buildPanel(desc) {
    var name = desc.name;
    var newButton = el('button', {id: 'new-' + name, type: 'button', 'class': 'btn btn-small', 'data-action': 'new',
      'data-collection': name, hidden: true}, ['New ' + desc.singular]);
    var table = el('table', {id: 'table-' + name, 'class': 'data-table', 'data-collection': name}, [
      el('caption', {'class': 'visually-hidden'}, [desc.label + ', live']),
      el('thead', {}, [el('tr')]),
      el('tbody')
    ]);
    var section = el('section', {id: 'section-' + name, 'class': 'panel', 'data-collection': name, 'aria-labelledby': name + '-title'}, [
      el('div', {'class': 'panel-head'}, [el('h2', {id: name + '-title'}, [desc.label]), newButton]),
      el('div', {id: 'form-' + name + '-slot'}),
      el('p', {id: 'status-' + name, 'class': 'panel-status', role: 'status'}),
      el('div', {'class': 'table-wrap'}, [table])
    ]);
    newButton.addEventListener('click', function (e) { D.forms.open(name, null, e.currentTarget); }, false);
    table.addEventListener('click', onTableClick, false);
    byId('tables').appendChild(section);
    app.tables[name] = {canWrite: desc.mayWrite, node: table, tbody: table.tBodies[0], section: section};
    buildColumns(name);
  }

  function removePanels() {
    D.util.each(app.tables, function (table) {
      clearAllRowTimers(table);
      dom.detach(table.section);
    });
    app.tables = {};
  }

  function buildColumns(name) {
    var table = app.tables[name];
    table.columns = columnsOf(app.collections[name]);
    var headRow = table.node.tHead.rows[0];
    dom.clear(headRow);
    for (var i = 0; i < table.columns.length; i++) {
      var col = table.columns[i];
      headRow.appendChild(el('th', {scope: 'col', 'class': isNumeric(col) ? 'num' : null, 'data-field': col.name}, [col.columnLabel || col.label]));
    }
    if (table.canWrite) {
      headRow.appendChild(el('th', {scope: 'col', 'class': 'actions'}, [el('span', {'class': 'visually-hidden'}, ['Actions'])]));
    }
    reset(name);
    if (app.views[name]) { render(name, {}); }
  }

  function clearAllRowTimers(table) {
    if (table.rows) { D.util.each(table.rows, clearRowTimers); }
  }

  function reset(name) {
    var table = app.tables[name];
    if (!table) { return; }
    clearAllRowTimers(table);
    table.rows = {};
    dom.clear(table.tbody);
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
  function render(name, flashes) {
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
    D.util.each(table.rows, function (leftRow, id) {
      if (!present[id] && !isLeaving(leftRow)) { startLeave(name, id); }
    });
    D.util.each(flashes, function (yes, id) {
      if (table.rows[id] && present[id]) { flash(table.rows[id]); }
    });
    var desc = app.collections[name];
    setText(table.emptyRow.cells[0], view.ready ? 'No ' + desc.label.toLowerCase() + (app.tenant && app.isAdmin ? ' in tenant ' + app.tenant : '') + '.' : 'Loading...');
    dom.show(table.emptyRow, docs.length === 0);
    if (table.emptyRow.parentNode === tbody && table.emptyRow !== tbody.lastChild) { tbody.appendChild(table.emptyRow); }
    table.node.setAttribute('data-count', String(docs.length));
  }

  function createRow(name, doc) {
    var table = app.tables[name];
    var row = el('tr', {'data-id': doc.id});
    row._cells = [];
    for (var i = 0; i < table.columns.length; i++) {
      var col = table.columns[i];
      var cell = el(i === 0 ? 'th' : 'td', {scope: i === 0 ? 'row' : null, 'class': cellClass(col), 'data-field': col.name});
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
      var raw = doc[col.name];
      var text = D.schema.text(col, raw);
      var cell = row._cells[i];
      if (col.badge && text !== '') {
        var badge = cell.firstChild;
        if (!badge || badge.nodeType !== 1) {
          dom.clear(cell);
          badge = cell.appendChild(el('span', {'class': 'badge'}));
        }
        badge.className = 'badge badge-' + String(text).replace(/[^a-z0-9_-]/gi, '').toLowerCase();
        setText(badge, text);
      } else {
        setText(cell, text);
      }
      if (col.hover || col.reference) {
        if (raw === undefined || raw === null) { cell.removeAttribute('title'); } else { cell.setAttribute('title', display(raw)); }
      }
    }
    var title = D.schema.title(app.collections[name], doc);
    if (row._actions && (force || row._actionsVersion !== doc.version || row._actionsTitle !== title) && !row._confirming) {
      renderActions(name, row, doc);
    }
    row._doc = doc;
  }

  function renderActions(name, row, doc) {
    var desc = app.collections[name];
    var title = D.schema.title(desc, doc);
    var cell = row._actions;
    var focused = document.activeElement && cell.contains(document.activeElement) ?
      document.activeElement.getAttribute('data-action') : null;
    dom.clear(cell);
    row._confirming = false;
    row._actionsVersion = doc.version;
    row._actionsTitle = title;
    var extras = desc.rowActions || [];
    for (var i = 0; i < extras.length; i++) {
      cell.appendChild(el('button', {type: 'button', 'class': 'btn btn-small', 'data-action': extras[i].action,
        'aria-label': extras[i].ariaLabel(doc, title)}, [extras[i].label(doc)]));
    }
    cell.appendChild(el('button', {type: 'button', 'class': 'btn btn-small', 'data-action': 'edit',
      'aria-label': 'Edit ' + desc.singular + ' ' + title}, ['Edit']));
    cell.appendChild(el('button', {type: 'button', 'class': 'btn btn-small btn-danger', 'data-action': 'delete',
      'aria-label': 'Delete ' + desc.singular + ' ' + title}, ['Delete']));
    if (focused) { dom.focusAction(cell, focused); }
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

  function setButtonsDisabled(row, disabled) {
    var buttons = row.getElementsByTagName('button');
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = disabled; }
  }

  function startLeave(name, id) {
    var table = app.tables[name];
    var row = table.rows[id];
    if (row._flashTimer) { clearTimeout(row._flashTimer); row._flashTimer = null; }
    row.className = 'removing';
    row.setAttribute('data-removing', 'true');
    row.removeAttribute('data-flash');
    setButtonsDisabled(row, true);
    row._leaveTimer = setTimeout(function () {
      row._leaveTimer = null;
      if (table.rows[id] === row) { delete table.rows[id]; }
      dom.detach(row);
    }, REMOVE_MS);
  }

  function cancelLeave(row) {
    if (row._leaveTimer) { clearTimeout(row._leaveTimer); row._leaveTimer = null; }
    row.className = '';
    row.removeAttribute('data-removing');
    setButtonsDisabled(row, false);
  }

  // ---------------------------------------------------------------- row actions

  function onTableClick(event) {
    var tableNode = event.currentTarget;
    var target = event.target && event.target.nodeType === 3 ? event.target.parentNode : event.target;
    var button = dom.closestWith(target, 'data-action', tableNode);
    if (!button || button.disabled) { return; }
    var row = dom.closestWith(button, 'data-id', tableNode);
    if (!row) { return; }
    var name = tableNode.getAttribute('data-collection');
    var doc = app.views[name] && app.views[name].get(row.getAttribute('data-id'));
    if (!doc) { return; }
    var action = button.getAttribute('data-action');
    switch (action) {
      case 'edit': D.forms.open(name, doc, button); return;
      case 'delete': askDelete(name, row, doc); return;
      case 'confirm-delete': doDelete(name, row, doc); return;
      case 'cancel-delete':
        renderActions(name, row, doc);
        dom.focusAction(row._actions, 'delete');
        return;
    }
    var extras = app.collections[name].rowActions || [];
    for (var i = 0; i < extras.length; i++) {
      if (extras[i].action === action) { extras[i].run(doc); }
    }
  }

  function askDelete(name, row, doc) {
    var desc = app.collections[name];
    var title = D.schema.title(desc, doc);
    var cell = row._actions;
    dom.clear(cell);
    row._confirming = true;
    cell.appendChild(el('span', {'class': 'confirm-text'}, ['Delete?']));
    var yes = el('button', {type: 'button', 'class': 'btn btn-small btn-danger', 'data-action': 'confirm-delete',
      'aria-label': 'Confirm: delete ' + desc.singular + ' ' + title}, ['Delete']);
    cell.appendChild(yes);
    cell.appendChild(el('button', {type: 'button', 'class': 'btn btn-small', 'data-action': 'cancel-delete',
      'aria-label': 'Keep ' + desc.singular + ' ' + title}, ['Keep']));
    yes.focus();
  }

  function doDelete(name, row, doc) {
    var desc = app.collections[name];
    var title = D.schema.title(desc, doc);
    setButtonsDisabled(row._actions, true);
    app.client.request('DELETE', D.util.docPath(name, doc.id), null, {ifMatch: doc.version}, function (err) {
      var view = app.views[name];
      if (!err || err.status === 404) {
        D.feed.toast('info', 'Deleted ' + desc.singular + ' ' + title + '.');
        if (view && app.client && app.client.state !== 'live') { view.refresh(); }
        return;
      }
      row._confirming = false;
      if (err.status === 412) {
        D.feed.toast('warn', 'The ' + desc.singular + ' ' + title + ' was changed by someone else, so it was not deleted. ' +
          'The row now shows the latest version; delete it again if you still want to.');
        reloadDoc(name, doc.id, function () {});
      } else {
        D.feed.toast('error', 'Could not delete ' + desc.singular + ' ' + title + ': ' + err.message);
      }
      var current = view && view.get(doc.id);
      if (current && row._actions) { renderActions(name, row, current); dom.focusAction(row._actions, 'delete'); }
    });
  }

  // GETs one document and puts it in the view (the row re-renders); cb(err, doc).
  function reloadDoc(name, id, cb) {
    app.client.request('GET', D.util.docPath(name, id), null, null, function (err, doc) {
      var view = app.views[name];
      if (!err && view) { view.applyDoc(doc); }
      if (err && err.status === 404 && view) { view.refresh(); }
      cb(err, doc);
    });
  }

  // After a write button re-rendered a row under an open form: focus its new button.
  function focusRowAction(name, id, action) {
    var table = app.tables[name];
    var row = id && table && table.rows[id];
    if (row && row._actions && !isLeaving(row)) {
      dom.focusAction(row._actions, action);
      return row._actions.contains(document.activeElement);
    }
    return false;
  }

  // The "New" buttons, and the page's data-can-write, follow the server's may_write.
  function showWriteControls() {
    var anyWrite = false;
    for (var i = 0; i < app.names.length; i++) {
      var can = app.collections[app.names[i]].mayWrite;
      anyWrite = anyWrite || can;
      dom.show(byId('new-' + app.names[i]), can);
    }
    byId('app').setAttribute('data-can-write', anyWrite ? 'true' : 'false');
  }

  D.tables = {
    buildPanel: buildPanel, removePanels: removePanels, reset: reset, render: render,
    reloadDoc: reloadDoc, focusRowAction: focusRowAction, showWriteControls: showWriteControls
  };
}(window.Dashboard));
