/*
 * Dashboard part 4: the connection indicator in the top bar (state, transport, latency, and
 * the ticking "Live, updated 5 s ago" badge).
 */
(function (D) {
  'use strict';

  var STATE_LABELS = {
    connecting: 'Connecting',
    live: 'Live',
    reconnecting: 'Reconnecting',
    polling: 'Polling (fallback)',
    offline: 'Offline',
    closed: 'Not connected'
  };
  var app = D.app;
  var byId = D.dom.byId;
  var setText = D.dom.setText;

  function onState(state) {
    var client = app.client;
    document.body.setAttribute('data-conn-state', state);
    byId('conn-state').setAttribute('data-since', String(new Date().getTime()));
    if (state === 'live') {
      if (app.wasLiveOnce) {
        D.feed.toast('ok', 'Live updates restored' + (client.transport ? ' (' + client.transport + ').' : '.'));
      }
      app.wasLiveOnce = true;
    } else if (state === 'polling') {
      D.feed.toast('warn', 'Live updates are unavailable. Polling the server every ' +
        Math.round(client.options.pollIntervalMs / 1000) + ' s and still trying to reconnect.');
    } else if (state === 'offline') {
      D.feed.toast('warn', 'You are offline. The tables show the last data received.');
    }
    render();
  }

  function render() {
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

    D.dom.show(byId('conn-retry'), state === 'reconnecting' || state === 'polling' || state === 'offline');
    renderUpdated();
  }

  // Not a live region: it changes every second.
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
    var ago = D.util.ago;
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

  D.conn = {onState: onState, render: render, renderUpdated: renderUpdated};
}(window.Dashboard));
