#!/usr/bin/env node
// Open the gateway's 3D liver page, wait for it to render, count the canvas pixels that differ
// from the background, and save a screenshot.
//   node liver3d.mjs --url http://127.0.0.1:8080/3d/1.2.3 --screenshot /tmp/browser-shots/liver3d.png
//     [--expect error]   (for a study without a mesh: succeed when the page shows its error state)
// Prints one JSON line: {"ok":true,"state":"rendered","non_background_pixels":N,...}; exit 1 on failure.
import { args, finish, launch, log, screenshot, watchPage } from './lib.mjs';

const opt = args({
  url: { type: 'string', required: true },
  screenshot: { type: 'string' },
  expect: { type: 'string', default: 'rendered' },
  timeout: { type: 'string', default: '90' },
  'min-pixels': { type: 'string', default: '2000' },
}, 'usage: liver3d.mjs --url URL [--screenshot PATH] [--expect rendered|error] [--timeout S] [--min-pixels N]');

const result = { url: opt.url, state: null };
let close = async () => {};
let ok = false;
try {
  const launched = await launch();
  close = launched.close;
  const page = await launched.browser.newPage();
  const diag = watchPage(page);
  log('open', opt.url);
  const resp = await page.goto(opt.url, { waitUntil: 'domcontentloaded', timeout: 60_000 });
  result.http_status = resp ? resp.status() : null;
  await page.waitForFunction(() => ['rendered', 'error'].includes(document.body?.dataset.state),
    { timeout: Number(opt.timeout) * 1000, polling: 200 });
  result.state = await page.evaluate(() => document.body.dataset.state);
  result.message = await page.evaluate(() => document.body.dataset.state === 'error' ? document.getElementById('message')?.textContent || null : null);
  const side = await page.evaluate(() => ({
    volume_text: document.getElementById('volume')?.textContent,
    version_text: document.getElementById('version')?.textContent,
    stl_href: document.getElementById('stl')?.hidden ? null : document.getElementById('stl')?.getAttribute('href'),
    info: window.__liver3d?.info || null,
    triangles: window.__liver3d?.triangles ?? null,
    bbox_view_m: window.__liver3d?.bbox_view_m ?? null,
  }));
  Object.assign(result, side);

  if (result.state === 'rendered') {
    // Read the WebGL canvas (preserveDrawingBuffer keeps the last frame) through a 2D copy.
    const px = await page.evaluate(() => {
      const c = document.querySelector('#view canvas');
      if (!c) return { error: 'no canvas' };
      const w = c.width, h = c.height;
      const copy = document.createElement('canvas');
      copy.width = w; copy.height = h;
      const ctx = copy.getContext('2d');
      ctx.drawImage(c, 0, 0);
      const d = ctx.getImageData(0, 0, w, h).data;
      const bg = [d[0], d[1], d[2]]; // top-left corner is background (camera framing leaves margins)
      let n = 0, minX = w, minY = h, maxX = -1, maxY = -1, sumR = 0;
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const i = (y * w + x) * 4;
          if (Math.abs(d[i] - bg[0]) + Math.abs(d[i + 1] - bg[1]) + Math.abs(d[i + 2] - bg[2]) > 24) {
            n++; sumR += d[i];
            if (x < minX) minX = x; if (x > maxX) maxX = x; if (y < minY) minY = y; if (y > maxY) maxY = y;
          }
        }
      }
      return { width: w, height: h, background: bg, non_background_pixels: n,
        coverage: +(n / (w * h)).toFixed(4), mesh_bbox_px: n ? [minX, minY, maxX, maxY] : null,
        mean_red: n ? Math.round(sumR / n) : null };
    });
    Object.assign(result, { canvas: { width: px.width, height: px.height, background: px.background },
      non_background_pixels: px.non_background_pixels, coverage: px.coverage, mesh_bbox_px: px.mesh_bbox_px,
      mean_red: px.mean_red });
    if (px.error) result.error = px.error;
  }
  result.screenshot = await screenshot(page, opt.screenshot);
  if (diag.page_errors.length || diag.failed_requests.length) Object.assign(result, { diagnostics: diag });

  if (opt.expect === 'error') {
    ok = result.state === 'error' && !!result.message;
  } else {
    ok = result.state === 'rendered' && result.non_background_pixels >= Number(opt['min-pixels']);
    if (!ok && !result.error) result.error = result.state === 'error' ? result.message : 'too few mesh pixels';
  }
} catch (e) {
  result.error = String(e && e.message || e);
}
await close();
finish(result, ok);
