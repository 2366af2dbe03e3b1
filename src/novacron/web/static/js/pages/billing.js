// Budgets and prices on the usage page: a list and a form each. Who may set which is the API's
// (budget:write for a project's budget, platform admins for a tenant's and for prices).

import { listAll, get, request } from '../api.js';
import { h, clear, card, table, toast } from '../ui.js';
import { field, onSubmit } from './common.js';
import { projectOptions } from './networks.js';

/** An amount with the price list's currency ("100.00 USD"); bare when the caller may not read prices. */
const money = (v, cur = '') => `${Number(v).toFixed(2)}${cur ? ` ${cur}` : ''}`;
const currency = () => get('/v1/prices').then((p) => p.items[0]?.currency || '', () => '');

/**
 * Budgets (each with what was spent against it this month) and a form to set one: a tenant's
 * (platform admins) or a project's, for one month or every month.
 */
export async function budgetCard(ctx, done) {
  const canWrite = ctx.can('budget:write');
  const [projects, tenants] = await Promise.all([
    canWrite ? projectOptions(ctx) : [],
    ctx.me.tenant_id ? [] : listAll('/v1/tenants', { sort: 'name' }),
  ]);
  const tenantName = Object.fromEntries(tenants.map((t) => [t.id, t.name]));
  const box = h('div', { 'aria-live': 'polite' });
  const load = async () => {
    const [budgets, cur] = await Promise.all([listAll('/v1/budgets'), currency()]);
    clear(box, table([
      { label: 'Tenant', cell: (b) => tenantName[b.tenant_id] || b.tenant_id },
      { label: 'Quota node', cell: (b) => h('code', {}, b.node_id) },
      { label: 'Month', cell: (b) => b.month || 'every month' },
      { label: 'Budget', cell: (b) => money(b.amount, cur), sortKey: (b) => b.amount },
      { label: 'Spent', cell: (b) => money(b.spent, cur), sortKey: (b) => b.spent },
    ], budgets, { caption: 'Budgets', empty: 'No budgets set.', rowAttrs: (b) => ({ 'data-budget': b.node_id, 'data-month': b.month || '' }) }));
  };
  await load();
  if (!canWrite) return card('Budgets', box);

  // one control for the scope; its value says which of tenant_id and project_id it is
  const scope = h('select', { id: 'bud-scope' },
    tenants.length ? h('optgroup', { label: 'Tenants' }, tenants.map((t) => h('option', { value: `tenant:${t.id}` }, t.name))) : null,
    h('optgroup', { label: 'Projects' }, projects.map(([v, t]) => h('option', { value: `project:${v}` }, t))));
  const c = {
    tenant_id: scope,
    project_id: scope,
    month: h('input', { id: 'bud-month', type: 'month' }),
    amount: h('input', { id: 'bud-amount', type: 'number', inputmode: 'decimal', step: '0.01' }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Set budget');
  const form = h('form', { novalidate: true, 'aria-label': 'Set a budget' }, formError,
    field('bud-scope', 'For', scope),
    field('bud-month', 'Month', c.month, 'Empty: every month.'),
    field('bud-amount', 'Amount', c.amount, 'In the price list\'s currency.'),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const [kind, id] = scope.value.split(':');
    const body = { [`${kind}_id`]: id, amount: c.amount.value === '' ? null : Number(c.amount.value) };
    if (c.month.value) body.month = c.month.value;
    const b = await request('/v1/budgets', { method: 'PUT', body });
    toast(`Budget of ${money(b.data.amount)} set.`);
    c.amount.value = '';
    await load();
    await done();
  });
  return card('Budgets', box, h('h3', {}, 'Set a budget'), form);
}

/** The price of each resource per billing unit and hour, and (platform admins) a form to change one. */
export async function priceCard(ctx, done) {
  const box = h('div', { 'aria-live': 'polite' });
  let prices = [];
  const load = async () => {
    prices = (await get('/v1/prices')).items;
    clear(box, table([
      { label: 'Resource', cell: (p) => p.resource },
      { label: 'Billing unit', cell: (p) => p.billing_unit },
      { label: 'Per hour', cell: (p) => `${p.per_hour}${p.currency ? ` ${p.currency}` : ''}`, sortKey: (p) => p.per_hour },
    ], prices, { caption: 'Prices', rowAttrs: (p) => ({ 'data-price': p.resource }) }));
  };
  await load();
  if (!ctx.can('price:write')) return card('Prices', box);
  const c = {
    resource: h('select', { id: 'price-resource' }, prices.map((p) => h('option', { value: p.resource }, `${p.resource} (${p.billing_unit})`))),
    per_hour: h('input', { id: 'price-per_hour', type: 'number', inputmode: 'decimal', step: 'any' }),
  };
  const formError = h('div', { role: 'alert' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Set price');
  const form = h('form', { novalidate: true, 'aria-label': 'Set a price' }, formError,
    field('price-resource', 'Resource', c.resource),
    field('price-per_hour', 'Price per unit and hour', c.per_hour, 'Metering uses it from its next run.'),
    submit);
  onSubmit(form, { controls: c, submit, formError }, async () => {
    const body = { per_hour: c.per_hour.value === '' ? null : Number(c.per_hour.value) };
    await request(`/v1/prices/${encodeURIComponent(c.resource.value)}`, { method: 'PUT', body });
    toast(`Price of ${c.resource.value} set.`);
    c.per_hour.value = '';
    await load();
    await done();
  });
  return card('Prices', box, h('h3', {}, 'Set a price'), form);
}
