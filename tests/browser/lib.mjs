// Shared helpers for the browser scripts: argument parsing, Chromium launch, one-line JSON results.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import puppeteer from 'puppeteer-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// Flags that work in this sandbox-less, GPU-less environment (see shared/peers/README.md);
// swiftshader gives WebGL without a GPU.
export const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage', '--enable-unsafe-swiftshader', '--use-angle=swiftshader',
  '--ignore-gpu-blocklist', '--disable-features=Translate,MediaRouter,OptimizationHints',
  '--window-size=1600,900',
];

export function args(spec, usage) {
  try {
    const { values } = parseArgs({ options: { ...spec, help: { type: 'boolean' } }, strict: true });
    if (values.help) { process.stderr.write(usage + '\n'); process.exit(0); }
    for (const [k, v] of Object.entries(spec)) {
      if (v.required && values[k] === undefined) throw new Error(`--${k} is required`);
    }
    return values;
  } catch (e) {
    process.stderr.write(`${e.message}\n${usage}\n`);
    process.exit(2);
  }
}

// Print exactly one JSON line on stdout and exit (0 when ok).
export function finish(result, ok) {
  process.stdout.write(JSON.stringify({ ok: !!ok, ...result }) + '\n');
  process.exit(ok ? 0 : 1);
}

export function log(...a) {
  if (process.env.BROWSER_TEST_VERBOSE !== '0') process.stderr.write(`[${new Date().toISOString().slice(11, 23)}] ${a.join(' ')}\n`);
}

export async function launch() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`no browser at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM=/path)`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'liverseg-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [...CHROMIUM_ARGS, `--user-data-dir=${userDataDir}`],
    defaultViewport: { width: 1600, height: 900 },
    protocolTimeout: 180_000,
  });
  const close = async () => {
    try { await browser.close(); } catch { /* already gone */ }
    fs.rmSync(userDataDir, { recursive: true, force: true });
  };
  return { browser, close };
}

// Collect page diagnostics that help when a run fails.
export function watchPage(page, { maxConsole = 40 } = {}) {
  const diag = { console_errors: [], page_errors: [], failed_requests: [] };
  page.on('console', (m) => {
    if (m.type() === 'error' && diag.console_errors.length < maxConsole) diag.console_errors.push(m.text().slice(0, 300));
  });
  page.on('pageerror', (e) => { if (diag.page_errors.length < maxConsole) diag.page_errors.push(String(e.message || e).slice(0, 300)); });
  page.on('requestfailed', (r) => {
    if (diag.failed_requests.length < maxConsole) diag.failed_requests.push(`${r.method()} ${r.url()} ${r.failure()?.errorText || ''}`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && diag.failed_requests.length < maxConsole) diag.failed_requests.push(`${r.request().method()} ${r.url()} -> ${r.status()}`);
  });
  return diag;
}

export async function screenshot(page, file) {
  if (!file) return null;
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  await page.screenshot({ path: file, type: 'png' });
  return path.resolve(file);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Poll fn (evaluated in the page) until it returns a truthy value.
export async function waitForPage(page, fn, { timeout = 60_000, interval = 250, arg } = {}) {
  const until = Date.now() + timeout;
  let last;
  while (Date.now() < until) {
    try { last = await page.evaluate(fn, arg); } catch (e) { last = undefined; }
    if (last) return last;
    await sleep(interval);
  }
  return last;
}
