// Checks a request body before it is sent, against the operation's schema in /openapi.json, with the
// API's own sentences (issue 17). The server writes the sentence of each constraint into the schema
// (`x-errors`, api/schema_errors.py, made by api/validation_text.py), so nothing here words an error:
// one source of truth. Only what pydantic would refuse in any mode is checked (required, pattern,
// lengths, bounds, enum); types are left to the server, which coerces some ("5" for 5). The server
// stays the authority: a body that passes here and fails there shows the server's answer.

let documentPromise = null;

/** The OpenAPI document, fetched once per page load (null when it cannot be read: no check then). */
export function loadSchema() {
  documentPromise ??= fetch('/openapi.json', { headers: { Accept: 'application/json' } })
    .then((r) => (r.ok ? r.json() : null))
    .catch(() => null)
    .then((doc) => { if (!doc) documentPromise = null; return doc; });
  return documentPromise;
}

function resolve(doc, node) {
  let n = node;
  for (let i = 0; n && n.$ref && i < 20; i++) {
    n = n.$ref.replace(/^#\//, '').split('/').reduce((o, k) => (o ? o[k] : undefined), doc);
  }
  return n || {};
}

/** The request-body schema of `method path` (path with ids, query ignored), or null. */
function bodySchema(doc, method, path) {
  const bare = path.split('?')[0].replace(/\/+$/, '');
  for (const [template, ops] of Object.entries(doc.paths || {})) {
    const re = new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}$`);
    if (!re.test(bare)) continue;
    const schema = ops[method.toLowerCase()]?.requestBody?.content?.['application/json']?.schema;
    if (schema) return schema;
  }
  return null;
}

/** pydantic searches the pattern (not a full match), as RegExp.test does; a pattern JavaScript
 * cannot read is left to the server. */
function matches(pattern, value) {
  try { return new RegExp(pattern, 'u').test(value); } catch { return true; }
}

const STRING_KEYS = ['minLength', 'maxLength', 'pattern'];
const NUMBER_KEYS = ['multipleOf', 'minimum', 'exclusiveMinimum', 'maximum', 'exclusiveMaximum'];

/** The first constraint `value` breaks in this one node (pydantic's order), or null. */
function broken(node, value) {
  if (typeof value === 'string') {
    for (const k of STRING_KEYS) {
      if (!(k in node)) continue;
      const n = [...value].length;
      if ((k === 'minLength' && n < node[k]) || (k === 'maxLength' && n > node[k])) return k;
      if (k === 'pattern' && !matches(node[k], value)) return k;
    }
  }
  if (typeof value === 'number') {
    for (const k of NUMBER_KEYS) {
      if (!(k in node)) continue;
      const b = node[k];
      if ((k === 'multipleOf' && value % b !== 0) || (k === 'minimum' && value < b)
        || (k === 'exclusiveMinimum' && value <= b) || (k === 'maximum' && value > b)
        || (k === 'exclusiveMaximum' && value >= b)) return k;
    }
  }
  if (Array.isArray(value)) {
    if ('minItems' in node && value.length < node.minItems) return 'minItems';
    if ('maxItems' in node && value.length > node.maxItems) return 'maxItems';
  }
  if (node.enum && !node.enum.some((v) => v === value)) return 'enum';
  return null;
}

function fitsType(node, value) {
  const t = node.type;
  if (!t) return true;
  const kind = value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
  const types = [].concat(t);
  return types.includes(kind) || (kind === 'number' && types.includes('integer'));
}

/**
 * The errors of `value` against `node`, as problem+json `errors[]` items ({field, reason}).
 * `xerror`: the property's own sentence (`x-error`), which wins for any error of it, as on the server.
 */
function check(doc, node, value, field, xerror, out) {
  const n = resolve(doc, node);
  const branches = n.anyOf || n.oneOf;
  if (branches) {
    // a union: fine when some branch of the value's type takes it, else the first such branch says why
    const fitting = branches.map((b) => resolve(doc, b)).filter((b) => fitsType(b, value));
    if (!fitting.length) return;
    const tries = fitting.map((b) => { const errs = []; check(doc, b, value, field, xerror, errs); return errs; });
    if (tries.some((e) => !e.length)) return;
    out.push(...tries[0]);
    return;
  }
  for (const part of n.allOf || []) check(doc, part, value, field, xerror, out);
  const bad = broken(n, value);
  if (bad) {
    out.push({ field, reason: xerror || n['x-errors']?.[bad] || 'does not have the expected form', client: true });
    return;
  }
  if (Array.isArray(value) && n.items) {
    value.forEach((v, i) => check(doc, n.items, v, `${field}.${i}`, xerror, out));
  } else if (value && typeof value === 'object' && !Array.isArray(value) && n.properties) {
    checkObject(doc, n, value, field, out);
  }
}

function checkObject(doc, n, value, field, out) {
  for (const name of n.required || []) {
    if (value[name] === undefined) {
      const prop = n.properties[name] || {};
      out.push({ field: `${field}.${name}`, reason: prop['x-error'] || prop['x-errors']?.required || 'required', client: true });
    }
  }
  for (const [name, v] of Object.entries(value)) {
    const prop = n.properties[name];
    if (prop && v !== undefined) check(doc, prop, v, `${field}.${name}`, prop['x-error'], out);
  }
}

/**
 * The errors the API would give `body` sent as `method path`, as problem+json `errors[]`, or []
 * when it passes (or when the document or the operation's schema is unknown: the server decides).
 */
export async function checkBody(method, path, body) {
  if (body === undefined || body === null || typeof body !== 'object') return [];
  const doc = await loadSchema();
  const schema = doc && bodySchema(doc, method, path);
  if (!schema) return [];
  const out = [];
  check(doc, schema, body, 'body', undefined, out);
  return out;
}
