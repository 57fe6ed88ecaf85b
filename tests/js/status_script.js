// Runs the status page's inline script against a small stand-in for the DOM
// and checks what a person using the page relies on: the filter hides rows
// that do not match, headers sort (numbers as numbers) and say which way,
// and the filter and the sort survive the 30-second reload.
//
// Usage: node status_script.js SCRIPT.js TABLE.json
// TABLE.json: {"headers": [...], "rows": [[cell, ...], ...]} as rendered.
'use strict';

const fs = require('fs');
const vm = require('vm');
const assert = require('assert');

const script = fs.readFileSync(process.argv[2], 'utf8');
const table = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));

// Rows that tell numeric from text sorting apart ("10" > "9").
const extra = [10, 9].map((n) => table.headers.map((h, i) => (i === 7 ? String(n) : 'zz-extra-' + n)));
const allRows = table.rows.concat(extra);

function element(text) {
  return {
    textContent: text,
    attributes: {},
    listeners: {},
    hidden: false,
    setAttribute(k, v) { this.attributes[k] = String(v); },
    removeAttribute(k) { delete this.attributes[k]; },
    addEventListener(type, f) { this.listeners[type] = f; },
  };
}

// Builds a fresh page (as after a reload) sharing one sessionStorage.
function page(storage) {
  const heads = table.headers.map(element);
  const rows = allRows.map((cells) => {
    const row = element(cells.join(''));
    row.cells = cells.map(element);
    row.key = cells[3] + '|' + cells[7];
    return row;
  });
  const body = {
    rows,
    appendChild(r) {
      const i = this.rows.indexOf(r);
      assert(i >= 0, 'appendChild of a foreign row');
      this.rows.splice(i, 1);
      this.rows.push(r);
    },
  };
  const input = element('');
  input.value = '';
  const dom = {
    tBodies: [body],
    tHead: { rows: [{ cells: heads }] },
  };
  const timers = [];
  let reloads = 0;
  const context = {
    document: {
      getElementById(id) {
        if (id === 'targets') return dom;
        if (id === 'filter') return input;
        return null;
      },
    },
    sessionStorage: {
      getItem(k) { return Object.prototype.hasOwnProperty.call(storage, k) ? storage[k] : null; },
      setItem(k, v) { storage[k] = String(v); },
    },
    location: { reload() { reloads += 1; } },
    setTimeout(f, ms) { timers.push({ f, ms }); },
    Array, String, Number, parseInt, isNaN,
  };
  vm.runInNewContext(script, context, { filename: 'status-inline.js' });
  return { heads, body, input, timers, reloads: () => reloads };
}

const storage = {};
let p = page(storage);

// Initial state: server order kept, nothing hidden, one reload in 30 s.
assert.deepStrictEqual(p.body.rows.map((r) => r.key), allRows.map((c) => c[3] + '|' + c[7]));
assert(p.body.rows.every((r) => !r.hidden));
assert.strictEqual(p.timers.length, 1);
assert.strictEqual(p.timers[0].ms, 30000);
p.timers[0].f();
assert.strictEqual(p.reloads(), 1);

// Filter: case-insensitive substring over the whole row.
const needle = table.rows[table.rows.length - 1][3]; // a user
p.input.value = needle.toUpperCase();
p.input.listeners.input();
for (const r of p.body.rows) {
  assert.strictEqual(r.hidden, !r.textContent.toLowerCase().includes(needle.toLowerCase()), r.key);
}
assert(p.body.rows.some((r) => !r.hidden) && p.body.rows.some((r) => r.hidden));

// Sort by user: ascending, then descending on a second click; by keyboard too.
const userCol = table.headers.indexOf('User');
assert(userCol >= 0, 'a User column');
function column(col) { return p.body.rows.map((r) => r.cells[col].textContent); }
p.heads[userCol].listeners.click();
let users = column(userCol);
assert.deepStrictEqual(users, users.slice().sort((a, b) => a.localeCompare(b)));
assert.strictEqual(p.heads[userCol].attributes['aria-sort'], 'ascending');
let prevented = false;
p.heads[userCol].listeners.keydown({ key: 'Enter', preventDefault() { prevented = true; } });
assert(prevented);
users = column(userCol);
assert.deepStrictEqual(users, users.slice().sort((a, b) => b.localeCompare(a)));
assert.strictEqual(p.heads[userCol].attributes['aria-sort'], 'descending');

// Numbers sort as numbers, and only one header shows a direction.
const lostCol = table.headers.indexOf('Seats lost');
assert.strictEqual(lostCol, 7);
p.heads[lostCol].listeners.click();
const lost = column(lostCol).map(Number);
assert.deepStrictEqual(lost, lost.slice().sort((a, b) => a - b));
assert.strictEqual(lost[lost.length - 1], 10);
assert.strictEqual(p.heads.filter((h) => h.attributes['aria-sort']).length, 1);

// After the reload: same filter, same sort.
p = page(storage);
assert.strictEqual(p.input.value, needle.toUpperCase());
assert.deepStrictEqual(column(lostCol).map(Number), lost);
assert.strictEqual(p.heads[lostCol].attributes['aria-sort'], 'ascending');
for (const r of p.body.rows) {
  assert.strictEqual(r.hidden, !r.textContent.toLowerCase().includes(needle.toLowerCase()), r.key);
}

// A tampered sort entry is ignored rather than throwing.
storage['msfb-sort'] = '99:1';
p = page(storage);
assert.strictEqual(p.heads.filter((h) => h.attributes['aria-sort']).length, 0);

console.log('status script: all checks passed');
