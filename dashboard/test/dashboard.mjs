// The dashboard's browser test: drives the page of a running `webstack dashboard` in
// headless Chromium (Debian's, through playwright-core) and checks it end to end: every
// host drawn, the load generator's requests shared by the web hosts, a stopped app shown
// down, a screenshot, the app back and shown ok, no console error.
//
//   npm ci && DASHBOARD_URL='http://127.0.0.1:PORT/#token=HEX' SCREENSHOT=/tmp/dashboard.png \
//     HOSTS=client,lb-01,lb-02,web-01,web-02,mon-01 node dashboard.mjs
//
// Env: DASHBOARD_URL (required, with #token=...), SCREENSHOT (PNG path, default
// dashboard.png), HOSTS (comma-separated host names that must be drawn, default the seed's),
// WEB_HOSTS (the web hosts the load is shared by, default web-01,web-02; the first one is
// stopped and started), CHROMIUM (default /usr/bin/chromium).
// Prints one line per step with its elapsed time; exit 0 when every step passed, else 1.

import { chromium } from 'playwright-core';

const url = process.env.DASHBOARD_URL || '';
const screenshot = process.env.SCREENSHOT || 'dashboard.png';
const list = (v, fallback) => (v || fallback).split(',').map((s) => s.trim()).filter(Boolean);
const hosts = list(process.env.HOSTS, 'client,lb-01,lb-02,web-01,web-02,mon-01');
const webs = list(process.env.WEB_HOSTS, 'web-01,web-02');
const victim = webs[0];
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const started = performance.now();
const secs = (t0) => ((performance.now() - t0) / 1000).toFixed(1);

// Runs one step; prints "ok"/"FAIL", its name, its time and what it found.
async function step(name, fn) {
  const t0 = performance.now();
  try {
    const detail = await fn();
    console.log(`ok   ${name} (${secs(t0)} s)${detail ? `: ${detail}` : ''}`);
  } catch (e) {
    console.log(`FAIL ${name} (${secs(t0)} s): ${e.message.split('\n')[0]}`);
    e.reported = true;
    throw e;
  }
}

// Polls `probe` (run in the page: returns {ok, seen}) until ok or `ms` have passed; the
// failure names what was expected and the last thing seen.
async function until(page, expected, ms, probe, arg) {
  const t0 = performance.now();
  let seen = '(nothing yet)';
  while (performance.now() - t0 < ms) {
    try {
      const r = await page.evaluate(probe, arg);
      if (r.ok) return { seconds: (performance.now() - t0) / 1000, seen: r.seen };
      seen = r.seen;
    } catch (e) {
      seen = `page not ready: ${e.message.split('\n')[0]}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`expected ${expected} within ${ms / 1000} s; saw ${seen}`);
}

const healthOf = (page, host, want, ms) => until(page, `[data-host=${host}] data-health="${want}"`, ms,
  ([h, w]) => {
    const el = document.querySelector(`[data-host="${CSS.escape(h)}"]`);
    const got = el ? el.getAttribute('data-health') : 'no element';
    return { ok: got === w, seen: `data-health="${got}"` };
  }, [host, want]);

// Clicks a fault button and confirms: its window.confirm dialog is accepted by the
// handler installed in main() (the click returns once the dialog is handled). A button
// that asks nothing fails the test.
async function clickAndConfirm(page, selector, dialogs) {
  const before = dialogs.length;
  await page.locator(selector).click({ timeout: 15_000 });   // waits while an action runs
  if (dialogs.length === before) throw new Error(`clicking ${selector} asked for no confirmation`);
  return dialogs[dialogs.length - 1];
}

async function main() {
  if (!/#token=/.test(url)) throw new Error('DASHBOARD_URL must be the full URL with #token=...');
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  const consoleErrors = [];
  const dialogs = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(`console: ${m.text()}`);
      if (m.type() === 'warning') console.log(`     (console warning: ${m.text()})`);
    });
    page.on('pageerror', (e) => consoleErrors.push(`page error: ${e.message}`));
    page.on('dialog', (d) => { dialogs.push(d.message()); d.accept(); });

    await step(`1. page loads, draws ${hosts.join(', ')}`, async () => {
      const res = await page.goto(url, { waitUntil: 'load', timeout: 10_000 });
      if (!res || !res.ok()) throw new Error(`expected HTTP 200 for the page; got ${res ? res.status() : 'no response'}`);
      const r = await until(page, `a [data-host] element for each of ${hosts.join(', ')}`, 10_000, (names) => {
        const missing = names.filter((n) => !document.querySelector(`[data-host="${CSS.escape(n)}"]`));
        const drawn = [...document.querySelectorAll('[data-host]')].map((e) => e.getAttribute('data-host'));
        return { ok: !missing.length, seen: `missing ${missing.join(', ')}; drawn: ${drawn.join(', ') || 'none'}` };
      }, hosts);
      return `all drawn after ${r.seconds.toFixed(1)} s`;
    });

    await step(`2. load generator at 50 req/s reaches ${webs.join(' and ')}`, async () => {
      const t0 = performance.now();
      await page.locator('#load-rate').fill('50');
      await page.locator('[data-action=load][data-state=start]').click({ timeout: 5000 });
      const rows = await until(page, `#requests rows served by each of ${webs.join(', ')}`, 20_000, (names) => {
        const counts = names.map((n) => document.querySelectorAll(`#requests [data-served-by="${CSS.escape(n)}"]`).length);
        const total = document.querySelectorAll('#requests tr').length;
        return { ok: counts.every((c) => c > 0), seen: `${names.map((n, i) => `${n}: ${counts[i]} rows`).join(', ')} of ${total}` };
      }, webs);
      const rates = await until(page, `[data-rate-host] > 0 for each of ${webs.join(', ')}`, 30_000 - (performance.now() - t0), (names) => {
        const texts = names.map((n) => (document.querySelector(`[data-rate-host="${CSS.escape(n)}"]`) || {}).textContent);
        return { ok: texts.every((t) => Number(t) > 0), seen: names.map((n, i) => `${n}=${texts[i] ?? 'no element'}`).join(', ') };
      }, webs);
      return `rows (${rows.seen}) after ${rows.seconds.toFixed(1)} s; rates ${rates.seen} after ${secs(t0)} s`;
    });

    let downSeconds = null;
    // The bound is correctness (the page follows the lab) with room for a sanitizer build
    // on a busy machine; the figure printed is what it took.
    await step(`3. stop ${victim}/webstack-app: ${victim} shown down within 15 s`, async () => {
      const said = await clickAndConfirm(page, `[data-action=stop][data-target="${victim}/webstack-app"]`, dialogs);
      const r = await healthOf(page, victim, 'down', 15_000);
      downSeconds = r.seconds;
      return `down ${r.seconds.toFixed(1)} s after the click (it asked: "${said.split('\n')[0]}")`;
    });

    await step(`4. screenshot to ${screenshot}`, async () => {
      // From the top: the page's header is sticky and would be drawn where the page was
      // scrolled to by the clicks.
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.screenshot({ path: screenshot, fullPage: true });
    });

    await step(`5. start ${victim}/webstack-app: ${victim} shown ok within 15 s`, async () => {
      await clickAndConfirm(page, `[data-action=start][data-target="${victim}/webstack-app"]`, dialogs);
      const r = await healthOf(page, victim, 'ok', 15_000);
      return `ok ${r.seconds.toFixed(1)} s after the click`;
    });

    await step('6. stop the load generator', async () => {
      await page.locator('[data-action=load][data-state=stop]').click({ timeout: 5000 });
      const r = await until(page, '#load-state data-load-running="false"', 10_000, () => {
        const v = document.querySelector('#load-state')?.getAttribute('data-load-running');
        return { ok: v === 'false', seen: `data-load-running="${v}"` };
      });
      return `stopped after ${r.seconds.toFixed(1)} s`;
    });

    await step('7. no console error during the run', async () => {
      if (consoleErrors.length) throw new Error(`expected none; saw ${consoleErrors.length}: ${consoleErrors.join(' | ')}`);
      return downSeconds === null ? '' : `(${victim} was shown down ${downSeconds.toFixed(1)} s after the stop)`;
    });
  } finally {
    await browser.close();
  }
}

try {
  await main();
  console.log(`PASS dashboard test (${secs(started)} s)`);
  process.exit(0);
} catch (e) {
  if (!e.reported) console.log(`error: ${e.message}`);
  console.log(`FAIL dashboard test (${secs(started)} s)`);
  process.exit(1);
}
