/*
 * Dashboard part 2: what the dashboard shows of a collection, worked out from its entry in
 * GET /api/v1/collections (JSON Schema, may_write, sortable, references). A descriptor lists
 * the form's fields and the table's columns; nothing here touches the page.
 */
(function (D) {
  'use strict';

  var util = D.util;
  // Columns past this many stay in the form only: a table wider than a screen is not read.
  var MAX_COLUMNS = 7;
  // A string field allowed to be longer than this is edited in a text area.
  var TEXTAREA_MIN_LENGTH = 500;
  // A field name ending in a unit: the table shows the unit after the number.
  var UNIT_SUFFIX = /_(ms|s|kb|mb|gb|pct)$/;
  var UNIT_LABELS = {ms: 'ms', s: 's', kb: 'KB', mb: 'MB', gb: 'GB', pct: '%'};

  function capitalize(text) { return text.charAt(0).toUpperCase() + text.slice(1); }

  function humanize(name) { return capitalize(name.replace(/_/g, ' ').replace(/\s+/g, ' ').replace(/^\s+|\s+$/g, '')); }

  // "services" -> "service", "categories" -> "category"; a schema "title" says it better.
  function singularOf(name) {
    var words = name.replace(/_/g, ' ');
    if (/ies$/.test(words)) { return words.slice(0, -3) + 'y'; }
    if (/(ss|us)$/.test(words)) { return words; }
    if (/(ches|shes|sses|xes)$/.test(words)) { return words.slice(0, -2); }
    return words.replace(/s$/, '');
  }

  // The one JSON type a property holds (null aside), or null when it may hold several.
  function typeOf(spec) {
    var kinds = spec.type;
    if (typeof kinds === 'string') { return kinds; }
    if (Object.prototype.toString.call(kinds) === '[object Array]') {
      var rest = [];
      for (var i = 0; i < kinds.length; i++) { if (kinds[i] !== 'null') { rest.push(kinds[i]); } }
      return rest.length === 1 ? rest[0] : null;
    }
    return null;
  }

  function fieldOf(name, spec, required, references) {
    var type = typeOf(spec);
    var options = spec['enum'] ? spec['enum'].slice() : (spec.hasOwnProperty('const') ? [spec['const']] : null);
    var unit = UNIT_SUFFIX.exec(name);
    var field = {
      name: name,
      label: spec.title || humanize(references[name] ? name.replace(/_?ids?$/, '') || name : name.replace(UNIT_SUFFIX, '')),
      unit: unit ? UNIT_LABELS[unit[1]] : null,
      required: util.contains(required, name),
      description: typeof spec.description === 'string' ? spec.description : '',
      reference: references[name] || null,
      options: options,
      min: typeof spec.minimum === 'number' ? spec.minimum : null,
      max: typeof spec.maximum === 'number' ? spec.maximum : null,
      maxLength: typeof spec.maxLength === 'number' ? spec.maxLength : null,
      // How a value shows in the table and the feed, when not as text(), and the column's
      // heading when not the label: the demo sets them for some fields.
      format: null,
      columnLabel: null,
      badge: !!options
    };
    if (options) {
      field.kind = 'enum';
    } else if (type === 'boolean') {
      field.kind = 'boolean';
    } else if (type === 'integer' || type === 'number') {
      field.kind = type;
    } else if (type === 'string') {
      field.kind = field.maxLength === null || field.maxLength > TEXTAREA_MIN_LENGTH ? 'text' : 'string';
      if (field.reference) { field.kind = 'reference'; }
    } else {
      field.kind = 'json';
    }
    return field;
  }

  // The field that names a document: "name" or "title" when declared as strings, else the first
  // required string, else the first string.
  function titleFieldOf(fields) {
    var i;
    var strings = [];
    for (i = 0; i < fields.length; i++) {
      if (fields[i].kind === 'string' || fields[i].kind === 'text') { strings.push(fields[i]); }
    }
    for (i = 0; i < strings.length; i++) { if (strings[i].name === 'name' || strings[i].name === 'title') { return strings[i].name; } }
    for (i = 0; i < strings.length; i++) { if (strings[i].required) { return strings[i].name; } }
    return strings.length ? strings[0].name : null;
  }

  // The live view's order: by the title when the server can sort by it, else newest first.
  function defaultSort(titleField, sortable) {
    if (titleField && util.contains(sortable, titleField)) { return titleField; }
    if (util.contains(sortable, 'created_at')) { return '-created_at'; }
    if (util.contains(sortable, 'updated_at')) { return '-updated_at'; }
    return null;
  }

  /** A descriptor of one collection from its GET /api/v1/collections entry. */
  function describe(meta) {
    var schema = meta.schema || {};
    var props = schema.properties || {};
    var required = schema.required || [];
    var references = meta.references || {};
    var fields = [];
    for (var name in props) {
      if (props.hasOwnProperty(name)) { fields.push(fieldOf(name, props[name] || {}, required, references)); }
    }
    var titleField = titleFieldOf(fields);
    var columns = [];
    for (var i = 0; i < fields.length; i++) { if (fields[i].name === titleField) { columns.push(fields[i]); } }
    for (i = 0; i < fields.length && columns.length < MAX_COLUMNS; i++) {
      if (fields[i].name !== titleField) { columns.push(fields[i]); }
    }
    var singular = schema.title ? String(schema.title) : singularOf(meta.name);
    return {
      name: meta.name,
      label: humanize(meta.name),
      singular: singular.toLowerCase(),
      Singular: capitalize(singular),
      mayWrite: meta.may_write === true,
      sortable: meta.sortable || [],
      references: references,
      fields: fields,
      columns: columns,
      titleField: titleField,
      sort: defaultSort(titleField, meta.sortable || [])
    };
  }

  function title(desc, doc) {
    var value = desc.titleField ? doc[desc.titleField] : null;
    return value === null || value === undefined || value === '' ? String(doc.id) : String(value);
  }

  // A referenced document's title, from the live view of its collection; its id when not in view.
  function referenceTitle(collection, id) {
    var desc = D.app.collections[collection];
    var view = D.app.views[collection];
    var doc = desc && view ? view.get(String(id)) : null;
    return doc ? title(desc, doc) : String(id);
  }

  /** The text a field's value shows as: references by name, units after numbers. */
  function text(field, value) {
    if (field.format) { return field.format(value); }
    if (value === null || value === undefined) { return ''; }
    if (field.reference && typeof value === 'string') { return referenceTitle(field.reference, value); }
    if (field.kind === 'boolean' && typeof value === 'boolean') { return value ? 'yes' : 'no'; }
    if (field.unit && typeof value === 'number') { return value + ' ' + field.unit; }
    return util.display(value);
  }

  function fieldNamed(desc, name) {
    for (var i = 0; i < desc.fields.length; i++) { if (desc.fields[i].name === name) { return desc.fields[i]; } }
    return null;
  }

  D.schema = {describe: describe, title: title, text: text, fieldNamed: fieldNamed};
}(window.Dashboard));
