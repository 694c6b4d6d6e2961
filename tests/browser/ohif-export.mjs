#!/usr/bin/env node
// Load a study's DICOM SEG in OHIF's segmentation mode, make a small edit (a new segment painted
// with the brush), and store the segmentation back through the UI:
//   segmentation "..." menu -> Download & Export -> Export: DICOM SEG -> "Store Segmentation" dialog -> Save
// which makes OHIF send STOW-RS `POST {wadoRoot}/studies`. The script waits for that POST's response.
//   node ohif-export.mjs --viewer http://127.0.0.1:8080/viewer --study 1.2.3 --screenshot /tmp/browser-shots/ohif-export.png
//     [--no-edit]        export the loaded segmentation unchanged
//     [--segment Liver]  the segment label the loaded SEG must have
// Success means: the STOW POST answered 200 (or 202) without a FailedSOPSequence (0008,1198), and the
// stored instance is then found by QIDO (series of the study with Modality=SEG) from the page.
// It then opens the study in a fresh page and loads the stored SEG from the server ("server_roundtrip");
// with --require-roundtrip that must succeed too (it needs a server that repairs OHIF's SEG).
// Prints one JSON line: {"ok":true,"stow":{"status":200,"url":...,"response":{...}},...}
import { args, finish, launch, log, screenshot, sleep, watchPage } from './lib.mjs';
import { loadSeg, openStudy, segState, showBestSlice, waitForSeg } from './ohif-lib.mjs';

const opt = args({
  viewer: { type: 'string', required: true },
  study: { type: 'string', required: true },
  screenshot: { type: 'string' },
  segment: { type: 'string', default: 'Liver' },
  'no-edit': { type: 'boolean', default: false },
  mode: { type: 'string', default: 'segmentation' },
  seg: { type: 'string' },
  'require-roundtrip': { type: 'boolean', default: false },
}, 'usage: ohif-export.mjs --viewer URL --study UID [--screenshot PATH] [--no-edit] [--segment LABEL] [--seg SERIES_UID|DESCRIPTION] [--require-roundtrip]');

const result = { viewer: opt.viewer, study: opt.study, seg_loaded: false, edited: false, stow: null };
let ok = false;
let close = async () => {};
let page, diag;
const t0 = Date.now();

// Click the first visible element matched by fn (evaluated in the page); returns its text or null.
async function clickWhere(fn, arg, { hover = false } = {}) {
  const h = await page.evaluateHandle(fn, arg);
  const el = h.asElement();
  if (!el) return null;
  const text = await el.evaluate((e) => e.innerText?.trim().slice(0, 80));
  if (hover) await el.hover();
  await el.click();
  return text;
}

async function waitClick(fn, arg, what, { timeout = 15_000, hover = false } = {}) {
  const until = Date.now() + timeout;
  while (Date.now() < until) {
    const t = await clickWhere(fn, arg, { hover });
    if (t !== null) { log('clicked', what); return t; }
    await sleep(250);
  }
  throw new Error(`could not find ${what}`);
}

// A small, real edit through the UI: "Add Segment", pick the Brush, paint a stroke in the viewport.
async function editWithBrush(segLabel) {
  const before = await segState(page);
  await waitClick(() => [...document.querySelectorAll('button')].find((b) => b.offsetParent && b.innerText.trim() === 'Add Segment'),
    null, '"Add Segment"');
  await sleep(500);
  await waitClick(() => { const b = document.querySelector('[data-cy="Brush-btn"]'); return b && b.offsetParent ? b : null; },
    null, 'the Brush tool');
  await sleep(500);
  const box = await page.evaluate(() => {
    const el = document.querySelector('[data-cy="viewport-pane"] .viewport-element, .viewport-element, [data-cy="viewport-pane"]');
    if (!el) return null;
    const r = el.getBoundingClientRect();
    return { x: r.x, y: r.y, w: r.width, h: r.height };
  });
  if (!box) throw new Error('no viewport to paint in');
  // A short diagonal stroke just left of the centre (on the liver in the slice showBestSlice picked).
  const cx = box.x + box.w * 0.42, cy = box.y + box.h * 0.45;
  await page.mouse.move(cx - 40, cy - 20);
  await page.mouse.down();
  for (let i = 1; i <= 12; i++) await page.mouse.move(cx - 40 + i * 7, cy - 20 + i * 3, { steps: 2 });
  await page.mouse.up();
  await sleep(1000);
  const after = await segState(page);
  const segB = before.segmentations[0], segA = after.segmentations[0];
  const added = segA?.segments.filter((g) => !segB?.segments.some((x) => x.index === g.index)) || [];
  const newIndex = added[0]?.index;
  return {
    added_segment: added[0] ? { index: added[0].index, label: added[0].label } : null,
    painted_voxels: newIndex ? (segA.voxels_by_segment?.[newIndex] || 0) : 0,
    liver_voxels_before: segB?.voxels_by_segment?.[segB.segments.find((g) => g.label === segLabel)?.index] ?? null,
    liver_voxels_after: segA?.voxels_by_segment?.[segA.segments.find((g) => g.label === segLabel)?.index] ?? null,
  };
}

try {
  const launched = await launch();
  close = launched.close;
  page = await launched.browser.newPage();
  diag = watchPage(page);

  // Record every STOW request/response the page makes.
  const stows = [];
  page.on('request', (r) => {
    if (r.method() === 'POST' && /\/studies(\/[^/]+)?\/?(\?.*)?$/.test(new URL(r.url()).pathname)) {
      stows.push({ url: r.url(), content_type: r.headers()['content-type'] || null, accept: r.headers().accept || null,
        content_length: r.headers()['content-length'] ? Number(r.headers()['content-length']) : null, request: r });
    }
  });

  const opened = await openStudy(page, opt.viewer, opt.study, opt.mode);
  result.viewer_url = opened.url;
  result.tour_dismissed = opened.tour_dismissed;
  if (opened.reloaded) result.reloaded = true;
  result.load = await loadSeg(page, { which: opt.seg || null, diag });
  const st = result.load.hydrated ? await waitForSeg(page, { timeout: 30_000 }) : await segState(page);
  const seg0 = st?.segmentations?.[0];
  result.segments = seg0 ? seg0.segments.map((g) => g.label) : [];
  result.loaded = seg0 ? { label: seg0.label, voxels: seg0.voxels, volume_ml: seg0.volume_ml } : null;
  result.seg_loaded = (st?.representations ?? 0) > 0 && (st?.voxels ?? 0) > 0 && result.segments.includes(opt.segment);
  if (!result.seg_loaded) throw new Error('the segmentation did not load');
  result.best_slice = await showBestSlice(page);
  await sleep(1000);

  if (!opt['no-edit']) {
    try {
      result.edit = await editWithBrush(opt.segment);
      result.edited = (result.edit.painted_voxels || 0) > 0;
    } catch (e) {
      result.edit = { error: String(e.message || e) };
    }
    log('edit:', JSON.stringify(result.edit));
  }
  result.screenshot = await screenshot(page, opt.screenshot); // the loaded SEG with the edit
  const segLabel = (await segState(page)).segmentations[0]?.label || '';

  // Opening the export menu and choosing DICOM SEG: on a busy machine a click can land while the
  // menu is still animating, and no dialog follows; then the whole menu path is tried again.
  const openExportDialog = async () => {
    // Segmentation actions menu: the menu button next to the segmentation selector (combobox).
    await waitClick((label) => {
      const combo = [...document.querySelectorAll('button[role=combobox]')]
        .find((b) => b.offsetParent && b.innerText.trim().startsWith(label.slice(0, 12)));
      let p = combo;
      while (p && !p.querySelector('button[aria-haspopup=menu]')) p = p.parentElement;
      return p ? p.querySelector('button[aria-haspopup=menu]') : null;
    }, segLabel, 'the segmentation actions menu');
    await sleep(500);
    await waitClick(() => [...document.querySelectorAll('[role=menuitem]')].find((e) => /Download\s*&\s*Export/i.test(e.innerText)),
      null, '"Download & Export"', { hover: true });
    await sleep(500);
    result.export_item = await waitClick(() => {
      // The submenu has a "Download" group and an "Export" group; take "DICOM SEG" under "Export".
      const label = [...document.querySelectorAll('[role=menu] *')]
        .find((e) => e.children.length <= 2 && e.innerText?.trim() === 'Export');
      return [...document.querySelectorAll('[role=menuitem]')].find((e) => e.innerText.trim() === 'DICOM SEG'
        && label && (label.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING)
        && e.getAttribute('aria-disabled') !== 'true' && !e.hasAttribute('data-disabled'));
    }, null, 'Export -> "DICOM SEG"');
    // "Store Segmentation" dialog: keep the proposed series/name, press Save.
    return page.waitForSelector('[role=dialog] [data-cy="input-dialog-save-button"] button, [data-cy="input-dialog-save-button"] button',
      { timeout: 60_000 });
  };
  let dialog;
  for (let attempt = 1; ; attempt++) {
    try {
      dialog = await openExportDialog();
      break;
    } catch (e) {
      if (attempt >= 3) throw e;
      log(`no save dialog (attempt ${attempt}): ${e.message}; trying the export menu again`);
      await page.keyboard.press('Escape');
      await sleep(1000);
    }
  }
  result.dialog = await page.evaluate(() => {
    const d = document.querySelector('[role=dialog]');
    return d ? { title: d.querySelector('h2')?.innerText || null,
      name: d.querySelector('[data-cy="dialog-input"]')?.value || null } : null;
  });
  const responseP = page.waitForResponse((r) => r.request().method() === 'POST'
    && /\/studies\/?(\?.*)?$/.test(new URL(r.url()).pathname), { timeout: 180_000 });
  await dialog.click();
  log('pressed Save; waiting for the STOW response');
  const resp = await responseP;
  const body = await resp.text().catch(() => '');
  let parsed = null;
  try { parsed = JSON.parse(body); } catch { /* XML or empty */ }
  const req = stows.find((s) => s.request === resp.request()) || {};
  let postBytes = null;
  try { const pd = resp.request().postData(); if (pd) postBytes = pd.length; } catch { /* binary */ }
  const top = Array.isArray(parsed) ? parsed[0] : parsed;
  // FailedSOPSequence (0008,1198) with items means failures (Orthanc sends it present but empty).
  const failed = parsed ? (top?.['00081198']?.Value?.length || 0) > 0 : /FailedSOPSequence/.test(body);
  const refs = [];
  const seq = top?.['00081199']?.Value || [];
  for (const item of seq) {
    refs.push({ sop_class: item['00081150']?.Value?.[0], sop_instance: item['00081155']?.Value?.[0],
      retrieve_url: item['00081190']?.Value?.[0] || null });
  }
  result.stow = {
    url: resp.url(), status: resp.status(), request_content_type: req.content_type || resp.request().headers()['content-type'],
    request_accept: req.accept || null, request_bytes: req.content_length ?? postBytes,
    response_content_type: resp.headers()['content-type'] || null,
    stored: refs, failed_sop_sequence: failed,
    response: parsed ?? body.slice(0, 2000),
  };

  // Let OHIF finish (it replaces the viewport with the stored SEG), then check the store from the page.
  await sleep(3000);
  const sop = refs[0]?.sop_instance;
  result.qido_check = await page.evaluate(async ({ study, sop }) => {
    const ds = window.config?.dataSources?.find((d) => d.sourceName === window.config.defaultDataSourceName)
      || window.config?.dataSources?.[0];
    const root = ds?.configuration?.qidoRoot;
    if (!root) return { error: 'no qidoRoot in app-config' };
    const r = await fetch(`${root}/studies/${study}/series?Modality=SEG`, { headers: { Accept: 'application/dicom+json' } });
    const series = r.ok ? await r.json() : [];
    let found = false, storedSeries = null;
    for (const s of series) {
      const uid = s['0020000E']?.Value?.[0];
      const ri = await fetch(`${root}/studies/${study}/series/${uid}/instances`, { headers: { Accept: 'application/dicom+json' } });
      const inst = ri.ok ? await ri.json() : [];
      if (inst.some((i) => i['00080018']?.Value?.[0] === sop)) { found = true; storedSeries = uid; }
    }
    return { seg_series: series.length, stored_instance_found: found, stored_series: storedSeries,
      descriptions: series.map((s) => s['0008103E']?.Value?.[0] || '') };
  }, { study: opt.study, sop });
  const notes = await page.evaluate(() => [...document.querySelectorAll('[data-sonner-toast]')]
    .map((n) => n.innerText.trim()).filter(Boolean).slice(0, 5));
  if (notes.length) result.notifications = notes;

  // Server round trip: a fresh page opens the study and loads the stored SEG series from the server
  // (OHIF's own in-memory copy is not used). OHIF 3.12's SEG is not conformant (empty
  // PixelMeasuresSequence), so this only works when the server repaired the file on STOW.
  const storedSeries = (refs[0]?.retrieve_url || '').match(/\/series\/([0-9.]+)\//)?.[1] || result.qido_check?.stored_series || null;
  result.server_roundtrip = { series_uid: storedSeries, ok: false };
  if (storedSeries) {
    const page2 = await page.browser().newPage();
    const diag2 = watchPage(page2);
    try {
      await openStudy(page2, opt.viewer, opt.study, 'viewer');
      const l2 = await loadSeg(page2, { which: storedSeries, timeout: 60_000, diag: diag2 });
      const st2 = l2.hydrated ? await waitForSeg(page2, { timeout: 20_000 }) : await segState(page2);
      const s2 = st2?.segmentations?.[0];
      result.server_roundtrip = { series_uid: storedSeries, ok: !!(l2.hydrated && s2 && s2.voxels > 0),
        segments: s2 ? s2.segments.map((g) => g.label) : [], voxels_by_segment: s2?.voxels_by_segment || null };
      if (!result.server_roundtrip.ok) result.server_roundtrip.console_errors = diag2.console_errors.slice(0, 5);
    } catch (e) {
      result.server_roundtrip.error = String(e.message || e);
      result.server_roundtrip.console_errors = diag2.console_errors.slice(0, 5);
    }
    await page2.close();
  }

  if (opt.screenshot) result.screenshot_after_store = await screenshot(page, opt.screenshot.replace(/(\.png)?$/, '.stored.png'));
  if (diag.page_errors.length || diag.failed_requests.length) result.diagnostics = diag;
  ok = [200, 202].includes(result.stow.status) && !failed && refs.length > 0 && result.qido_check?.stored_instance_found === true
    && (!opt['require-roundtrip'] || result.server_roundtrip?.ok === true);
  if (!ok) {
    result.error = `STOW answered ${result.stow.status}${failed ? ' with failures' : ''}; stored instance found: `
      + `${result.qido_check?.stored_instance_found}; loaded back from the server: ${result.server_roundtrip?.ok}`;
  }
} catch (e) {
  result.error = String(e && e.message || e);
  if (diag) result.diagnostics = diag;
  if (page && opt.screenshot && !result.screenshot) { try { result.screenshot = await screenshot(page, opt.screenshot); } catch { /* ignore */ } }
}
result.seconds = +((Date.now() - t0) / 1000).toFixed(1);
log(ok ? 'ok' : `failed: ${result.error}`);
await close();
finish(result, ok);
