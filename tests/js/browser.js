// Loads the status page in headless Chromium at several widths and reports,
// as one JSON line on stdout, what a person would see: sideways overflow,
// timestamps that wrap, the legend's badges and their colours, the rows the
// filter leaves (typed into the box, and from ?filter= in the address), and
// where the error column ends. Screenshots go to OUTDIR.
//
// Chromium is driven over the DevTools protocol on a pipe
// (--remote-debugging-pipe: fd 3 in, fd 4 out, messages ended by NUL), so
// no WebSocket client and no port are needed.
//
// Usage: node browser.js CHROMIUM URL OUTDIR WIDTH...
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const [chromium, url, outDir, ...widths] = process.argv.slice(2);
fs.mkdirSync(outDir, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'msfb-chromium-'));

const chrome = spawn(chromium, [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--hide-scrollbars', `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank',
], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
let chromeErr = '';
chrome.stdio[2].on('data', (d) => { chromeErr = (chromeErr + d).slice(-4000); });

// Ends the run: Chromium is stopped first, and its profile removed once it
// has exited (it writes there until then).
let ending = false;
function finish(code, message) {
  if (ending) { return; }
  ending = true;
  if (message) { process.stderr.write(message + '\n' + chromeErr + '\n'); }
  const done = () => {
    try { fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5 }); } catch (e) { /* a temp dir */ }
    process.exit(code);
  };
  if (chrome.exitCode !== null || chrome.signalCode !== null) { done(); return; }
  chrome.once('exit', done);
  chrome.kill('SIGKILL');
}
const deadline = setTimeout(() => finish(2, 'browser test: no answer within 90 s'), 90000);
chrome.on('exit', (code) => finish(3, `chromium exited (${code}) before the test ended`));

let nextId = 1;
const pending = new Map();
const waiters = [];
let buffer = '';
chrome.stdio[4].on('data', (chunk) => {
  buffer += chunk.toString('utf8');
  let end;
  while ((end = buffer.indexOf('\0')) >= 0) {
    const message = JSON.parse(buffer.slice(0, end));
    buffer = buffer.slice(end + 1);
    if (message.id && pending.has(message.id)) {
      const { resolve, reject } = pending.get(message.id);
      pending.delete(message.id);
      if (message.error) { reject(new Error(JSON.stringify(message.error))); } else { resolve(message.result); }
    } else if (message.method) {
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i].method === message.method) { waiters.splice(i, 1)[0].resolve(message.params); }
      }
    }
  }
});

function send(method, params, sessionId) {
  const id = nextId++;
  chrome.stdio[3].write(JSON.stringify({ id, method, params: params || {}, sessionId }) + '\0');
  return new Promise((resolve, reject) => pending.set(id, { resolve, reject }));
}
function event(method) {
  return new Promise((resolve) => waiters.push({ method, resolve }));
}

// What the page looks like, measured inside it.
const MEASURE = `(() => {
  const doc = document.documentElement;
  const width = doc.clientWidth;
  const times = Array.from(document.querySelectorAll('time'));
  const wrapped = times.filter((t) => {
    const rects = t.getClientRects();
    const line = parseFloat(getComputedStyle(t).lineHeight) || 20;
    return rects.length !== 1 || rects[0].height > 1.5 * line;
  }).map((t) => t.textContent);
  const right = (sel) => Math.max(0, ...Array.from(document.querySelectorAll(sel))
    .filter((e) => e.getClientRects().length > 0)
    .map((e) => e.getBoundingClientRect().right));
  const legend = Array.from(document.querySelectorAll('.legend .st')).map((e) => {
    const s = getComputedStyle(e);
    return { word: e.textContent, background: s.backgroundColor, color: s.color, border: s.borderTopStyle };
  });
  const errors = Array.from(document.querySelectorAll('td.err')).filter((e) => e.textContent !== '');
  return {
    width,
    overflow: doc.scrollWidth - width,
    times: times.length,
    wrapped,
    legend,
    legendVisible: !!document.querySelector('.legend') && document.querySelector('.legend').getClientRects().length > 0,
    rowsRight: right('#targets tr'),
    errorsRight: right('td.err'),
    errorsShown: errors.filter((e) => e.getClientRects().length > 0).length,
    errors: errors.length,
  };
})()`;

const VISIBLE = `Array.from(document.getElementById('targets').tBodies[0].rows)
  .filter((r) => !r.hidden).map((r) => r.cells[3].textContent)`;

async function main() {
  const { targetId } = await send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true });
  const page = (method, params) => send(method, params, sessionId);
  const evaluate = async (expression) => {
    const r = await page('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true });
    if (r.exceptionDetails) { throw new Error(JSON.stringify(r.exceptionDetails)); }
    return r.result.value;
  };
  const load = async (address) => {
    const loaded = event('Page.loadEventFired');
    await page('Page.navigate', { url: address });
    await loaded;
  };
  const shoot = async (name) => {
    const { data } = await page('Page.captureScreenshot', { format: 'png' });
    fs.writeFileSync(path.join(outDir, name), Buffer.from(data, 'base64'));
    return name;
  };
  await page('Page.enable');
  await page('Runtime.enable');
  const report = {};
  for (const w of widths.map(Number)) {
    const mobile = w < 500;
    await page('Emulation.setDeviceMetricsOverride', {
      width: w, height: mobile ? 844 : 1000, deviceScaleFactor: 1, mobile,
    });
    await load(url);
    const r = await evaluate(MEASURE);
    r.screenshot = await shoot(`status-${w}.png`);
    // Type into the filter box as a person would.
    await evaluate(`(() => { const i = document.getElementById('filter'); i.value = ''; i.focus(); })()`);
    await page('Input.insertText', { text: 'BOB' });
    r.filtered = await evaluate(VISIBLE);
    r.filteredScreenshot = await shoot(`status-${w}-filtered.png`);
    // A fresh page with ?filter= in the address.
    await evaluate(`sessionStorage.clear()`);
    await load(url + '?filter=dave');
    r.linked = await evaluate(VISIBLE);
    await evaluate(`sessionStorage.clear()`);
    report[w] = r;
  }
  process.stdout.write(JSON.stringify(report) + '\n');
  clearTimeout(deadline);
  finish(0);
}

main().catch((e) => finish(1, 'browser test failed: ' + (e && e.stack ? e.stack : e)));
