/*
 * Dashboard part 8: extras for the demo's collections, when the server declares them: the
 * status tiles of services and open incidents, toasts when a service goes down or recovers or
 * a critical incident opens, and incidents shown as open/resolved with a Resolve button.
 * Every collection, these included, gets its table and form from the generic parts.
 */
(function (D) {
  'use strict';

  var STATUSES = ['up', 'degraded', 'down'];
  var app = D.app;
  var byId = D.dom.byId;

  function hasField(name, field, kind) {
    var desc = app.collections[name];
    var f = desc && D.schema.fieldNamed(desc, field);
    return !!f && (!kind || f.kind === kind) ? f : null;
  }

  function hasServices() {
    var status = hasField('services', 'status', 'enum');
    return !!status && D.util.contains(status.options, 'down');
  }

  function hasIncidents() { return !!hasField('incidents', 'resolved', 'boolean'); }

  // Called once the collections are known, before tables and forms are built from them.
  function decorate() {
    var resolved = hasIncidents() && hasField('incidents', 'resolved');
    if (resolved) {
      resolved.format = function (v) { return v ? 'resolved' : 'open'; };
      resolved.badge = true;
      resolved.columnLabel = 'State';
      app.collections.incidents.rowActions = [{
        action: 'toggle-resolved',
        label: function (doc) { return doc.resolved ? 'Reopen' : 'Resolve'; },
        ariaLabel: function (doc, title) { return (doc.resolved ? 'Reopen incident ' : 'Resolve incident ') + title; },
        run: toggleResolved
      }];
    }
    D.dom.show(byId('metrics'), hasServices());
    D.dom.show(byId('tile-open-incidents'), hasIncidents());
  }

  function toggleResolved(doc) {
    var title = D.schema.title(app.collections.incidents, doc);
    app.client.request('PATCH', D.util.docPath('incidents', doc.id), {resolved: !doc.resolved},
      {ifMatch: doc.version, headers: {'Content-Type': 'application/merge-patch+json'}}, function (err, body) {
        if (!err) {
          if (app.views.incidents) { app.views.incidents.applyDoc(body); }
          return;
        }
        if (err.status === 412) {
          D.feed.toast('warn', 'Incident ' + title + ' was changed by someone else; the row has been reloaded. Try again.');
          D.tables.reloadDoc('incidents', doc.id, function () {});
        } else {
          D.feed.toast('error', 'Could not update incident ' + title + ': ' + err.message);
        }
      });
  }

  // A change another client made, in any collection.
  function onChange(name, ev) {
    if (name === 'services' && hasServices() && ev.op === 'changed' && ev.oldDoc && ev.doc && ev.oldDoc.status !== ev.doc.status) {
      var title = D.schema.title(app.collections.services, ev.doc);
      var where = app.isAdmin && !app.tenant && ev.doc.tenant ? ' (' + ev.doc.tenant + ')' : '';
      if (ev.doc.status === 'down') {
        D.feed.toast('down', 'Service ' + title + where + ' is down.');
      } else if (ev.doc.status === 'up' && (ev.oldDoc.status === 'down' || ev.oldDoc.status === 'degraded')) {
        D.feed.toast('recovered', 'Service ' + title + where + ' recovered.');
      }
    }
    if (name === 'incidents' && hasIncidents() && ev.op === 'added' && ev.doc && ev.doc.severity === 'critical' && !ev.doc.resolved) {
      D.feed.toast('down', 'Critical incident: ' + D.schema.title(app.collections.incidents, ev.doc) + '.');
    }
  }

  function setMetric(id, value) {
    var node = byId(id);
    node.setAttribute('data-value', String(value));
    D.dom.setText(node, value);
  }

  function renderTiles() {
    var services = app.views.services && hasServices() ? app.views.services.docs : [];
    var incidents = app.views.incidents && hasIncidents() ? app.views.incidents.docs : [];
    var counts = {};
    var i;
    for (i = 0; i < STATUSES.length; i++) { counts[STATUSES[i]] = 0; }
    for (i = 0; i < services.length; i++) {
      if (counts.hasOwnProperty(services[i].status)) { counts[services[i].status]++; }
    }
    var open = 0;
    for (i = 0; i < incidents.length; i++) { if (!incidents[i].resolved) { open++; } }
    setMetric('metric-total', services.length);
    for (i = 0; i < STATUSES.length; i++) { setMetric('metric-' + STATUSES[i], counts[STATUSES[i]]); }
    setMetric('metric-open-incidents', open);
  }

  D.demo = {decorate: decorate, onChange: onChange, renderTiles: renderTiles};
}(window.Dashboard));
