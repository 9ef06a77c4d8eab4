/*
 * Dashboard part 7: the create/edit form of a collection, built from its schema: a select for
 * an enum or a reference, a checkbox for a boolean, a number input (with the schema's bounds)
 * for numbers, a text area for long text and for objects and lists (as JSON). The form checks
 * only what it needs to build a body; the server checks the rest, and each entry of a 422's
 * errors[] shows next to its field.
 */
(function (D) {
  'use strict';

  var SAFE_ID = /^[A-Za-z0-9_-]+$/;
  var NUMBER = /^-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/;
  var app = D.app;
  var dom = D.dom;
  var el = dom.el;
  var setText = dom.setText;
  var display = D.util.display;

  function describeBounds(f) {
    if (f.min !== null && f.max !== null) { return f.min + ' to ' + f.max; }
    if (f.min !== null) { return f.min + ' or more'; }
    if (f.max !== null) { return f.max + ' or less'; }
    return '';
  }

  function hintOf(f) {
    var parts = [];
    if (f.unit) { parts.push('in ' + f.unit); }
    if (f.kind === 'integer' || f.kind === 'number') {
      var bounds = describeBounds(f);
      if (bounds) { parts.push(bounds); }
    }
    if (f.kind === 'json') { parts.push('JSON'); }
    if (f.description) { parts.push(f.description); }
    return parts.join('; ');
  }

  function inputFor(f, id) {
    switch (f.kind) {
      case 'enum':
      case 'reference':
      case 'tenant':
        return el('select', {id: id, name: f.name});
      case 'boolean':
        return el('input', {id: id, name: f.name, type: 'checkbox'});
      case 'integer':
        return el('input', {id: id, name: f.name, type: 'number', min: f.min, max: f.max, step: 1, inputmode: 'numeric'});
      case 'number':
        return el('input', {id: id, name: f.name, type: 'number', min: f.min, max: f.max, step: 'any', inputmode: 'decimal'});
      case 'text':
      case 'json':
        return el('textarea', {id: id, name: f.name, rows: 2, maxlength: f.maxLength});
      default:
        return el('input', {id: id, name: f.name, type: 'text', maxlength: f.maxLength});
    }
  }

  function build(name) {
    var desc = app.collections[name];
    var form = el('form', {id: 'form-' + name, 'class': 'edit-form', novalidate: true, 'data-collection': name,
      'aria-labelledby': 'form-' + name + '-title'});
    var fieldset = el('fieldset');
    var legend = el('legend', {id: 'form-' + name + '-title'});
    fieldset.appendChild(legend);
    var inputs = {};
    var errors = {};
    var wrappers = {};
    var fields = desc.fields.slice();
    if (app.isAdmin) { fields.push({name: 'tenant', label: 'Tenant', kind: 'tenant', required: false}); }
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      var key = SAFE_ID.test(f.name) ? f.name : String(i);
      var id = name + '-field-' + key;
      var errorId = name + '-error-' + key;
      var hint = f.kind === 'tenant' ? '' : hintOf(f);
      var hintId = hint ? name + '-hint-' + key : null;
      var input = inputFor(f, id);
      input.setAttribute('aria-describedby', (hintId ? hintId + ' ' : '') + errorId);
      // A checkbox always sends true or false: "required" would say nothing.
      var required = f.required && f.kind !== 'boolean';
      if (required) { input.setAttribute('aria-required', 'true'); }
      var label = el('label', {'for': id}, [f.label + (f.unit ? ' (' + f.unit + ')' : '') + (required ? ' (required)' : '')]);
      var hintNode = hint ? el('span', {id: hintId, 'class': 'field-hint'}, [hint]) : null;
      var error = el('p', {id: errorId, 'class': 'field-error', 'data-error-for': f.name});
      var wide = f.kind === 'text' || f.kind === 'json';
      wrappers[f.name] = el('div', {'class': 'field field-' + f.kind + (wide ? ' field-wide' : ''), 'data-field': f.name},
        f.kind === 'boolean' ? [input, label, hintNode, error] : [label, input, hintNode, error]);
      fieldset.appendChild(wrappers[f.name]);
      inputs[f.name] = input;
      errors[f.name] = error;
    }
    var general = el('p', {id: 'form-' + name + '-error', 'class': 'form-error', role: 'alert'});
    fieldset.appendChild(general);
    var submit = el('button', {id: 'form-' + name + '-submit', type: 'submit', 'class': 'btn btn-primary'}, ['Save']);
    var cancel = el('button', {id: 'form-' + name + '-cancel', type: 'button', 'class': 'btn'}, ['Cancel']);
    fieldset.appendChild(el('div', {'class': 'form-buttons'}, [submit, cancel]));
    form.appendChild(fieldset);
    form.setAttribute('hidden', '');
    var state = {name: name, desc: desc, node: form, legend: legend, inputs: inputs, errors: errors, wrappers: wrappers,
      general: general, submit: submit, fields: fields, mode: null, id: null, version: null, trigger: null, busy: false};
    form.addEventListener('submit', function (e) { e.preventDefault(); send(state); }, false);
    cancel.addEventListener('click', function () { close(name, true); }, false);
    form.addEventListener('keydown', function (e) {
      if (e.key === 'Escape' || e.key === 'Esc' || e.keyCode === 27) { e.preventDefault(); close(name, true); }
    }, false);
    dom.byId('form-' + name + '-slot').appendChild(form);
    return state;
  }

  // ---------------------------------------------------------------- options

  function fillOptions(select, options, selected) {
    dom.clear(select);
    for (var i = 0; i < options.length; i++) {
      select.appendChild(el('option', {value: options[i].value}, [options[i].label]));
    }
    select.selectedIndex = selected;
  }

  // An enum's options: "(none)" first unless required; returns the index showing `value`.
  function fillEnum(f, select, value) {
    var options = f.required ? [] : [{value: '', label: '(none)'}];
    var selected = 0;
    for (var i = 0; i < f.options.length; i++) {
      if (f.options[i] === value) { selected = options.length; }
      options.push({value: display(f.options[i]), label: display(f.options[i])});
    }
    fillOptions(select, options, selected);
  }

  // The referenced collection's documents in its live view, by title.
  function fillReference(f, select, current) {
    var view = app.views[f.reference];
    var target = app.collections[f.reference];
    var options = f.required && current ? [] : [{value: '', label: '(none)'}];
    var selected = 0;
    var docs = view ? view.docs : [];
    for (var i = 0; i < docs.length; i++) {
      if (docs[i].id === current) { selected = options.length; }
      options.push({value: docs[i].id, label: D.schema.title(target, docs[i]) +
        (app.isAdmin && !app.tenant && docs[i].tenant ? ' (' + docs[i].tenant + ')' : '')});
    }
    if (current && !(view && view.has(current))) {
      selected = options.length;
      options.push({value: current, label: current + ' (not in view)'});
    }
    fillOptions(select, options, selected);
  }

  function fillTenants(select) {
    var names = [];
    D.util.each(app.tenants, function (yes, t) { names.push(t); });
    names.sort();
    var options = [];
    var selected = 0;
    var wanted = app.tenant || app.user.tenant;
    for (var i = 0; i < names.length; i++) {
      if (names[i] === wanted) { selected = i; }
      options.push({value: names[i], label: names[i]});
    }
    fillOptions(select, options, selected);
  }

  // ---------------------------------------------------------------- open, fill, close

  function open(name, doc, trigger) {
    if (!app.collections[name].mayWrite) { return; }
    var form = app.forms[name] || (app.forms[name] = build(name));
    form.mode = doc ? 'edit' : 'create';
    form.trigger = trigger || null;
    form.node.setAttribute('data-mode', form.mode);
    clearErrors(form);
    fill(form, doc);
    dom.show(form.node, true);
    form.inputs[form.fields[0].name].focus();
  }

  function fill(form, doc) {
    var desc = form.desc;
    form.id = doc ? doc.id : null;
    form.version = doc ? doc.version : null;
    form.node.setAttribute('data-id', doc ? doc.id : '');
    form.node.setAttribute('data-version', doc ? display(doc.version) : '');
    form.general.removeAttribute('data-stale-version');
    setText(form.legend, doc ? 'Edit ' + desc.singular + ' ' + D.schema.title(desc, doc) : 'New ' + desc.singular);
    setText(form.submit, doc ? 'Save changes' : 'Create ' + desc.singular);
    for (var i = 0; i < form.fields.length; i++) {
      var f = form.fields[i];
      var input = form.inputs[f.name];
      var value = doc ? doc[f.name] : undefined;
      switch (f.kind) {
        case 'tenant':
          fillTenants(input);
          dom.show(form.wrappers[f.name], !doc);
          break;
        case 'enum': fillEnum(f, input, value); break;
        case 'reference':
          if (app.views[f.reference]) {
            fillReference(f, input, typeof value === 'string' ? value : '');
          } else {
            fillOptions(input, [{value: value ? String(value) : '', label: value ? String(value) : '(none)'}], 0);
          }
          break;
        case 'boolean': input.checked = value === true; break;
        case 'json': input.value = value === undefined ? '' : JSON.stringify(value); break;
        default: input.value = value === undefined || value === null ? '' : String(value);
      }
    }
  }

  function close(name, restoreFocus) {
    var form = app.forms[name];
    if (!form || form.node.hasAttribute('hidden')) { return; }
    dom.show(form.node, false);
    clearErrors(form);
    var docId = form.id;
    var trigger = form.trigger;
    form.mode = null;
    form.id = null;
    form.trigger = null;
    if (!restoreFocus) { return; }
    if (trigger && document.body.contains(trigger) && !trigger.disabled && trigger.offsetParent !== null) {
      trigger.focus();
      return;
    }
    // A live update re-rendered the row's buttons while the form was open: focus the new one.
    if (trigger && D.tables.focusRowAction(name, docId, trigger.getAttribute('data-action'))) { return; }
    dom.byId('new-' + name).focus();
  }

  // Forms depend on the user's roles (admins get a tenant field): a new session builds them again.
  function removeAll() {
    D.util.each(app.forms, function (form, name) {
      close(name, false);
      dom.detach(form.node);
    });
    app.forms = {};
  }

  // ---------------------------------------------------------------- errors

  function clearErrors(form) {
    D.util.each(form.errors, function (box, k) {
      setText(box, '');
      form.inputs[k].removeAttribute('aria-invalid');
    });
    setText(form.general, '');
  }

  // Shows a message next to the field a path starts with ("meta.size" -> meta), or above the buttons.
  function fieldError(form, field, message) {
    var path = String(field || '');
    var key = form.errors.hasOwnProperty(path) ? path : path.split('.')[0];
    if (form.errors.hasOwnProperty(key)) {
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

  // ---------------------------------------------------------------- reading and sending

  // One field's value; undefined when left empty; throws a message when it cannot be read.
  function readField(f, input) {
    if (f.kind === 'boolean') { return input.checked; }
    if (f.kind === 'enum') {
      var index = input.selectedIndex - (f.required ? 0 : 1);
      return index >= 0 ? f.options[index] : undefined;
    }
    var text = f.kind === 'text' ? input.value : input.value.replace(/^\s+|\s+$/g, '');
    if (text === '') { return undefined; }
    if (f.kind === 'integer' && !/^-?\d+$/.test(text)) { throw 'Enter a whole number.'; }
    if (f.kind === 'number' && !NUMBER.test(text)) { throw 'Enter a number.'; }
    if (f.kind === 'integer' || f.kind === 'number') { return Number(text); }
    if (f.kind === 'json') {
      try { return JSON.parse(text); } catch (e) { throw 'Enter JSON, such as {"key": "value"}, [1, 2] or "text".'; }
    }
    return text;
  }

  // The body to send: create leaves out empty optional fields, edit sends null to remove them
  // (merge-patch). Returns null after showing errors when input cannot be read.
  function read(form) {
    var body = {};
    var ok = true;
    for (var i = 0; i < form.fields.length; i++) {
      var f = form.fields[i];
      var input = form.inputs[f.name];
      if (f.kind === 'tenant') {
        if (form.mode === 'create' && input.value) { body.tenant = input.value; }
        continue;
      }
      var value;
      try {
        value = readField(f, input);
      } catch (message) {
        fieldError(form, f.name, String(message));
        ok = false;
        continue;
      }
      if (value !== undefined) {
        body[f.name] = value;
      } else if (f.required) {
        fieldError(form, f.name, (input.tagName === 'SELECT' ? 'Choose a ' : 'Enter a ') + f.label.toLowerCase() + '.');
        ok = false;
      } else if (form.mode === 'edit') {
        body[f.name] = null;
      }
    }
    return ok ? body : null;
  }

  function setBusy(form, busy) {
    form.busy = busy;
    form.submit.disabled = busy;
    form.node.setAttribute('aria-busy', busy ? 'true' : 'false');
  }

  function send(form) {
    if (form.busy) { return; }
    clearErrors(form);
    var body = read(form);
    if (!body) {
      focusFirstInvalid(form);
      return;
    }
    var name = form.name;
    var desc = form.desc;
    var editing = form.mode === 'edit';
    var id = form.id;
    setBusy(form, true);
    var done = function (err, doc) {
      var view = app.views[name];
      setBusy(form, false);
      if (err) {
        handleWriteError(form, err, id);
        return;
      }
      if (editing && view) { view.applyDoc(doc); }
      if (!editing && view && app.client && app.client.state !== 'live') { view.refresh(); }
      D.feed.toast('ok', (editing ? 'Saved ' : 'Created ') + desc.singular + ' ' + D.schema.title(desc, doc || body) + '.');
      close(name, true);
    };
    if (editing) {
      app.client.request('PATCH', D.util.docPath(name, id), body,
        {ifMatch: form.version, headers: {'Content-Type': 'application/merge-patch+json'}}, done);
    } else {
      app.client.request('POST', name, body, null, done);
    }
  }

  function handleWriteError(form, err, id) {
    var desc = form.desc;
    var problem = err.problem;
    var changedBySomeone = 'This ' + desc.singular + ' was changed by someone else while you were editing. ';
    if (err.status === 412 && id) {
      setText(form.general, changedBySomeone + 'Reloading the latest version...');
      D.tables.reloadDoc(form.name, id, function (e, doc) {
        if (form.id !== id) { return; }
        if (e) {
          setText(form.general, e.status === 404 ? 'This ' + desc.singular + ' has been deleted.' :
            'This ' + desc.singular + ' was changed by someone else, and reloading it failed: ' + e.message);
          return;
        }
        fill(form, doc);
        setText(form.general, changedBySomeone + 'The form now shows the latest version (version ' + doc.version +
          '); review it and save again.');
        form.inputs[form.fields[0].name].focus();
      });
      return;
    }
    if (err.status === 404 && id) {
      setText(form.general, 'This ' + desc.singular + ' no longer exists.');
      return;
    }
    if (problem && problem.errors && problem.errors.length) {
      var placed = false;
      for (var i = 0; i < problem.errors.length; i++) {
        if (fieldError(form, problem.errors[i].field, problem.errors[i].message)) { placed = true; }
      }
      if (placed) {
        focusFirstInvalid(form);
      } else if (problem.detail) {
        setText(form.general, problem.detail);
      }
      return;
    }
    var message = err.message;
    if (err.status === 429) {
      var wait = err.response && err.response.header('Retry-After');
      message = 'Too many requests.' + (wait ? ' Try again in ' + wait + ' s.' : '');
    } else if (err.status === 403) {
      message = 'You are not allowed to change this ' + desc.singular + '.';
    } else if (err.status === 0) {
      message = 'Cannot reach the server; nothing was saved. Try again.';
    }
    setText(form.general, message);
  }

  // The document open in a form changed or vanished under the user: say so, keep their input.
  function noteDocChange(name) {
    var form = app.forms[name];
    if (!form || form.mode !== 'edit' || !form.id || form.busy) { return; }
    var doc = app.views[name].get(form.id);
    var desc = form.desc;
    if (!doc) {
      setText(form.general, 'This ' + desc.singular + ' is no longer in the list (deleted, or moved out of this view).');
    } else if (doc.version !== form.version && form.general.getAttribute('data-stale-version') !== String(doc.version)) {
      form.general.setAttribute('data-stale-version', String(doc.version));
      setText(form.general, 'Someone else has just changed this ' + desc.singular + '. Saving will fail; cancel and edit again to see the change.');
    }
  }

  D.forms = {open: open, close: close, removeAll: removeAll, noteDocChange: noteDocChange};
}(window.Dashboard));
