/*
 * Dashboard part 9: response time per service over the last minutes, drawn live from the
 * services' live view by smoothie (node_modules/smoothie, served at /vendor/smoothie.js): a
 * point at each change as it arrives, each line held level until the next change. The legend
 * under the canvas says the same in text (latest value per service) for screen readers.
 */
(function (D) {
  'use strict';

  var FIELD = 'response_time_ms';
  var WINDOW_MS = 3 * 60 * 1000;
  // Room at the right edge for the value labels smoothie draws there, so the newest points show.
  var LABEL_ROOM_PX = 52;
  // A time label needs this much of the window to its left.
  var LABEL_EDGE_MS = 25 * 1000;
  // Lines are extended to "now" this often, so a steady service still shows as a level line.
  var HOLD_MS = 1000;
  // The chart scrolls about a pixel every half second: a few frames a second look smooth.
  var FRAMES_PER_SECOND = 5;
  // Okabe-Ito: told apart by colour-blind people too. A line each for this many services; the
  // legend counts the others.
  var PALETTE = ['#0072b2', '#e69f00', '#009e73', '#cc79a7', '#d55e00', '#56b4e9', '#6b4f9e', '#999933'];
  var LABEL_COLOR = '#4a5563';
  var BASELINE_COLOR = '#b8c2cf';
  // The share of the value range below zero, where the time labels are.
  var BOTTOM_ROOM = 0.16;
  var app = D.app;
  var dom = D.dom;
  var el = dom.el;

  var chart = null;
  // By service id: {series, color, value, changes}.
  var lines = {};
  var holdTimer = null;

  function available() {
    var field = app.collections.services && D.schema.fieldNamed(app.collections.services, FIELD);
    return !!field && (field.kind === 'integer' || field.kind === 'number') && !!window.SmoothieChart;
  }

  function formatMs(value) { return Math.round(value) + ' ms'; }

  // From below zero, so the time labels along the bottom stay clear of the lines; room on top.
  function valueRange(range) {
    var top = Math.max(range.max, 1) * 1.15;
    return {min: -top * BOTTOM_ROOM, max: top};
  }

  // A grid line's time, except in the labels' room (the future) and at the left edge, where
  // smoothie would clip it.
  function formatGridTime(date) {
    var age = new Date().getTime() - date.getTime();
    return age < 0 || age > WINDOW_MS - LABEL_EDGE_MS ? '' : window.SmoothieChart.timeFormatter(date);
  }

  // The window fits the canvas's width; "now" sits LABEL_ROOM_PX left of the right edge.
  function fitWindow() {
    if (!chart) { return; }
    var canvas = dom.byId('chart');
    var width = Math.max(2 * LABEL_ROOM_PX, canvas.offsetWidth);
    chart.options.millisPerPixel = WINDOW_MS / (width - LABEL_ROOM_PX);
    chart.streamTo(canvas, -LABEL_ROOM_PX * chart.options.millisPerPixel);
  }

  function attach() {
    dom.show(dom.byId('chart-panel'), available());
    if (!available() || chart) { return; }
    chart = new window.SmoothieChart({
      responsive: true,
      limitFPS: FRAMES_PER_SECOND,
      interpolation: 'step',
      yRangeFunction: valueRange,
      horizontalLines: [{value: 0, color: BASELINE_COLOR, lineWidth: 1}],
      tooltip: false,
      grid: {fillStyle: '#ffffff', strokeStyle: '#e4e8ee', lineWidth: 1, millisPerLine: 60000, verticalSections: 4, borderVisible: false},
      labels: {fillStyle: LABEL_COLOR, fontSize: 11, precision: 0},
      yMaxFormatter: formatMs,
      yMinFormatter: function () { return ''; },
      timestampFormatter: formatGridTime
    });
    fitWindow();
    holdTimer = setInterval(hold, HOLD_MS);
  }

  function stop() {
    clearLines();
    if (chart) { chart.stop(); }
    chart = null;
    if (holdTimer) { clearInterval(holdTimer); }
    holdTimer = null;
    dom.show(dom.byId('chart-panel'), false);
  }

  function clearLines() {
    D.util.each(lines, function (line) { if (chart) { chart.removeTimeSeries(line.series); } });
    lines = {};
    renderLegend();
  }

  function freeColor() {
    var used = {};
    D.util.each(lines, function (line) { used[line.color] = true; });
    for (var i = 0; i < PALETTE.length; i++) { if (!used[PALETTE[i]]) { return PALETTE[i]; } }
    return null;
  }

  // Smoothie trims old points as it draws, which a hidden tab does not: nor does it hold then.
  function hold() {
    if (document.hidden) { return; }
    var now = new Date().getTime();
    D.util.each(lines, function (line) { if (line.value !== null) { line.series.append(now, line.value); } });
  }

  // A change of the services' view, as it arrives (the snapshot's documents included).
  function onChange(ev) {
    if (!chart) { return; }
    var line = lines[ev.id];
    if (ev.op === 'removed') {
      if (line) {
        chart.removeTimeSeries(line.series);
        delete lines[ev.id];
      }
      return;
    }
    var value = ev.doc[FIELD];
    if (typeof value !== 'number') {
      if (line) { line.value = null; }
      return;
    }
    if (!line) {
      var color = freeColor();
      if (!color) { return; }
      line = lines[ev.id] = {series: new window.TimeSeries(), color: color, value: null, changes: 0};
      chart.addTimeSeries(line.series, {strokeStyle: color, lineWidth: 2});
    }
    line.value = value;
    line.changes++;
    line.series.append(new Date().getTime(), value);
  }

  function renderLegend() {
    var legend = dom.byId('chart-legend');
    var docs = app.views.services ? app.views.services.docs : [];
    var left = 0;
    dom.clear(legend);
    for (var i = 0; i < docs.length; i++) {
      var line = lines[docs[i].id];
      if (!line) {
        if (typeof docs[i][FIELD] === 'number') { left++; }
        continue;
      }
      var swatch = el('span', {'class': 'chart-swatch', 'aria-hidden': 'true'});
      swatch.style.backgroundColor = line.color;
      legend.appendChild(el('li', {'data-id': docs[i].id, 'data-value': line.value === null ? '' : String(line.value),
        'data-changes': String(line.changes), 'data-color': line.color}, [
        swatch,
        el('span', {'class': 'chart-name'}, [D.schema.title(app.collections.services, docs[i])]),
        ' ',
        el('span', {'class': 'chart-value'}, [line.value === null ? 'no data' : formatMs(line.value)])
      ]));
    }
    if (left) { legend.appendChild(el('li', {'class': 'chart-more'}, ['+' + left + ' more, not charted'])); }
  }

  window.addEventListener('resize', fitWindow, false);

  D.chart = {attach: attach, stop: stop, reset: clearLines, onChange: onChange, renderLegend: renderLegend};
}(window.Dashboard));
