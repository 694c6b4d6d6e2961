// OHIF 3.12 page steps shared by ohif-study.mjs and ohif-export.mjs.
// Selectors are OHIF's own data-cy attributes where it has them; the state checks read OHIF's
// services (window.services, set by @ohif/extension-cornerstone) and cornerstone's cache
// (window.cornerstone), so they do not depend on pixels or layout.
import { log, sleep, waitForPage } from './lib.mjs';

export function viewerBase(url) {
  return url.replace(/\/+$/, '');
}

// Click "Skip all" on the onboarding tour (shepherd.js) when it is showing. Returns true if it did.
export async function dismissTour(page) {
  return page.evaluate(() => {
    const el = document.querySelector('.shepherd-element');
    if (!el) return false;
    const b = [...el.querySelectorAll('button')].find((x) => /skip/i.test(x.textContent))
      || [...el.querySelectorAll('.shepherd-cancel-icon')][0];
    if (b) { b.click(); return true; }
    return false;
  });
}

// Keep dismissing the tour for a short while (it appears shortly after the viewport renders).
export async function dismissTourFor(page, ms = 4000) {
  let dismissed = false;
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await dismissTour(page)) { dismissed = true; log('onboarding tour dismissed'); break; }
    await sleep(250);
  }
  return dismissed;
}

// Open the study list and find the study's row. OHIF renders each row with
// data-cy="studyRow-{StudyInstanceUID}" (and an inner element data-cy="{StudyInstanceUID}").
export async function findStudyInList(page, viewer, study, { timeout = 60_000 } = {}) {
  const url = `${viewerBase(viewer)}/`;
  log('open study list', url);
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 90_000 });
  let row = null, otherRowsSince = 0;
  const until = Date.now() + timeout;
  while (Date.now() < until) {
    row = await page.evaluate((uid) => {
      const r = document.querySelector(`[data-cy="studyRow-${CSS.escape(uid)}"]`);
      if (r) return { by: `data-cy="studyRow-${uid}"`, text: r.innerText.replace(/\s+/g, ' ').trim().slice(0, 200) };
      return { by: null, rows: document.querySelectorAll('[data-cy^="studyRow-"]').length };
    }, study).catch(() => null);
    if (row?.by) break;
    // Rows are shown but not ours: give the list a few seconds to settle, then give up.
    if (row?.rows > 0) {
      otherRowsSince ||= Date.now();
      if (Date.now() - otherRowsSince > 5000) break;
    }
    await sleep(250);
  }
  const count = await page.evaluate(() => {
    const n = document.querySelector('[data-cy="num-studies"]');
    return n ? Number(n.textContent.trim()) : null;
  });
  return { listed: !!(row && row.by), identified_by: row?.by || null, row_text: row?.text || null, studies_in_list: count };
}

// Open a study in a mode route ("viewer" = basic viewer, "segmentation" = segmentation mode).
export async function openStudy(page, viewer, study, mode = 'viewer') {
  const url = `${viewerBase(viewer)}/${mode}?StudyInstanceUIDs=${encodeURIComponent(study)}`;
  log('open', url);
  await page.goto(url, { waitUntil: 'domcontentloaded', timeout: 90_000 });
  // Wait for the study browser to list the series and for OHIF to hold display sets. A page that has
  // not even mounted the app after a while is reloaded once (reported as `reloaded`).
  const listed = () => {
    const items = document.querySelectorAll('[data-cy="series-modality-label"]');
    const ds = window.services?.displaySetService?.getActiveDisplaySets?.() || [];
    return items.length > 0 && ds.length > 0;
  };
  let ok = await waitForPage(page, listed, { timeout: 45_000 });
  let reloaded = false;
  if (!ok) {
    const mounted = await page.evaluate(() => document.getElementById('root')?.childElementCount > 0).catch(() => false);
    log(`no series after 45 s (app mounted: ${mounted}); reloading once`);
    reloaded = true;
    await page.reload({ waitUntil: 'domcontentloaded', timeout: 90_000 });
    ok = await waitForPage(page, listed, { timeout: 90_000 });
  }
  if (!ok) throw new Error('the viewer did not list any series');
  // Display sets keep arriving for a moment (one per series): wait until the count is stable.
  let last = -1, stableSince = Date.now();
  const stableUntil = Date.now() + 20_000;
  while (Date.now() < stableUntil) {
    const n = await page.evaluate(() => window.services.displaySetService.getActiveDisplaySets().length);
    if (n !== last) { last = n; stableSince = Date.now(); }
    if (Date.now() - stableSince > 1500) break;
    await sleep(250);
  }
  const tour_dismissed = await dismissTourFor(page, 5000);
  return { url, reloaded, tour_dismissed };
}

// The series the study browser lists: modality + description, as the page shows them.
export async function listedSeries(page) {
  return page.evaluate(() => (window.services?.displaySetService?.getActiveDisplaySets?.() || []).map((d) => ({
    modality: d.Modality, description: d.SeriesDescription || '', series_uid: d.SeriesInstanceUID,
    instances: d.numImageFrames ?? d.instances?.length ?? null,
  })));
}

// Double-click a SEG series in the study browser and answer "Yes" to load it.
// `which` picks the series: a SeriesInstanceUID, or a substring of the series description; by default
// the first SEG whose description mentions "liverseg", else the first SEG listed.
export async function loadSeg(page, { timeout = 90_000, which = null, diag = null } = {}) {
  const handle = await page.evaluateHandle((which) => {
    const ds = window.services?.displaySetService?.getActiveDisplaySets?.() || [];
    const segs = ds.filter((d) => d.Modality === 'SEG');
    let pick = null;
    if (which) pick = segs.find((d) => d.SeriesInstanceUID === which) || segs.find((d) => (d.SeriesDescription || '').includes(which));
    else pick = segs.find((d) => /liverseg/i.test(d.SeriesDescription || '')) || segs[0];
    // Study-browser items are rendered with id="thumbnail-{displaySetInstanceUID}".
    if (pick) {
      const byId = document.getElementById(`thumbnail-${pick.displaySetInstanceUID}`);
      if (byId) return byId;
    }
    if (which) return null;
    const label = [...document.querySelectorAll('[data-cy="series-modality-label"]')]
      .find((e) => e.textContent.trim() === 'SEG');
    return label ? label.closest('[data-cy^="study-browser-thumbnail"]') || label.parentElement : null;
  }, which);
  const el = handle.asElement();
  if (!el) throw new Error('no SEG series in the study browser');
  const desc = await el.evaluate((e) => e.innerText.replace(/\s+/g, ' ').trim());
  await el.evaluate((e) => e.scrollIntoView({ block: 'center' }));
  const box = await el.boundingBox();
  log('double-click SEG thumbnail:', desc);
  await page.mouse.click(box.x + box.width / 2, box.y + Math.min(box.height / 2, 15), { clickCount: 2, delay: 50 });

  // OHIF first shows the SEG in its own (preview) viewport and asks "Do you want to open this
  // Segmentation?": answer Yes. Loaded ("hydrated") means: no viewport still shows the SEG display
  // set itself, and a segmentation with voxels is represented in a viewport.
  let answered = false, clickedLoad = false, hydrated = false, answeredAt = 0;
  // Console errors other than the onboarding tour's own complaints.
  const errorCount = () => (diag ? diag.console_errors.filter((e) => !/shepherd|advanceOn/i.test(e)).length + diag.page_errors.length : 0);
  const errorsBefore = errorCount();
  const started = Date.now();
  const until = started + timeout;
  while (Date.now() < until) {
    await dismissTour(page);
    const clicked = await page.evaluate(() => {
      const b = document.querySelector('[data-cy="yes-hydrate-btn"]');
      if (b && b.offsetParent) { b.click(); return true; }
      return false;
    });
    if (clicked && !answered) { answered = true; answeredAt = Date.now(); log('answered Yes to load the segmentation'); }
    if (answered && Date.now() - answeredAt > 45_000) break; // hydration failed (see the console errors)
    // The SEG could not even be shown (OHIF logs an error and never asks): stop after 20 s.
    if (!answered && errorCount() > errorsBefore && Date.now() - started > 20_000) break;
    const v = await page.evaluate(() => {
      const ds = window.services.displaySetService;
      const grid = window.services.viewportGridService.getState();
      let segShown = false;
      for (const [, vp] of grid.viewports) {
        for (const uid of vp.displaySetInstanceUIDs || []) {
          if (ds.getDisplaySetByUID(uid)?.Modality === 'SEG') segShown = true;
        }
      }
      return { segShown };
    });
    if (!v.segShown) {
      const st = await segState(page);
      if (st.representations > 0 && st.voxels > 0) { hydrated = true; break; }
    } else if (!answered && !clickedLoad && Date.now() - started > 15_000) {
      // No prompt after a while: use the viewport's own LOAD button.
      clickedLoad = await page.evaluate(() => {
        const b = [...document.querySelectorAll('button, [role=button], div, span')]
          .find((e) => e.offsetParent && e.children.length === 0 && e.textContent.trim() === 'LOAD');
        if (b) { b.click(); return true; }
        return false;
      });
      if (clickedLoad) log('clicked the viewport LOAD button');
    }
    await sleep(300);
  }
  return { thumbnail: desc, answered_yes: answered, clicked_load: clickedLoad, hydrated };
}

// Segmentation state read from OHIF's segmentationService and cornerstone's image cache.
export async function segState(page) {
  return page.evaluate(() => {
    const out = { segmentations: [], representations: 0, voxels: 0 };
    const svc = window.services?.segmentationService;
    const cs = window.cornerstone;
    if (!svc) return out;
    const grid = window.services.viewportGridService?.getState?.();
    const viewportIds = grid ? [...grid.viewports.keys()] : [];
    for (const vid of viewportIds) {
      try { out.representations += svc.getSegmentationRepresentations(vid).filter((r) => r.visible !== false).length; } catch { /* none */ }
    }
    for (const seg of svc.getSegmentations()) {
      const segments = Object.values(seg.segments || {}).filter(Boolean)
        .map((s) => ({ index: s.segmentIndex, label: s.label, locked: !!s.locked, active: !!s.active }));
      const lm = seg.representationData?.Labelmap;
      let voxels = 0, perSlice = null, slices = 0, spacing = null;
      const byValue = {};
      if (lm?.imageIds && cs?.cache) {
        perSlice = [];
        for (const id of lm.imageIds) {
          const im = cs.cache.getImage(id);
          if (!im) { perSlice.push(0); continue; }
          const px = im.getPixelData();
          let n = 0;
          for (let i = 0; i < px.length; i++) {
            const v = px[i];
            if (v) { n++; byValue[v] = (byValue[v] || 0) + 1; }
          }
          perSlice.push(n);
          voxels += n;
        }
        slices = perSlice.filter((n) => n > 0).length;
        // Voxel size from the referenced images' geometry (pixel spacing x distance between slices).
        const refs = lm.referencedImageIds || [];
        const planes = refs.map((id) => cs.metaData.get('imagePlaneModule', id)).filter(Boolean);
        if (planes.length > 1) {
          const d = [];
          for (let i = 1; i < planes.length; i++) {
            const a = planes[i - 1].imagePositionPatient, b = planes[i].imagePositionPatient;
            if (a && b) d.push(Math.hypot(b[0] - a[0], b[1] - a[1], b[2] - a[2]));
          }
          d.sort((x, y) => x - y);
          spacing = [planes[0].rowPixelSpacing, planes[0].columnPixelSpacing, d[Math.floor(d.length / 2)]];
        }
      } else if (lm?.volumeId && cs?.cache) {
        const vol = cs.cache.getVolume(lm.volumeId);
        const data = vol?.voxelManager?.getCompleteScalarDataArray?.() || vol?.getScalarData?.();
        if (data) for (let i = 0; i < data.length; i++) if (data[i]) { voxels++; byValue[data[i]] = (byValue[data[i]] || 0) + 1; }
        spacing = vol?.spacing ? [...vol.spacing] : null;
      }
      out.voxels += voxels;
      out.segmentations.push({
        id: seg.segmentationId, label: seg.label, segments, voxels, voxels_by_segment: byValue, slices_with_voxels: slices,
        volume_ml: spacing && spacing.every((x) => x > 0) ? +(voxels * spacing[0] * spacing[1] * spacing[2] / 1000).toFixed(1) : null,
        spacing_mm: spacing, per_slice: perSlice,
      });
    }
    return out;
  });
}

export async function waitForSeg(page, { timeout = 120_000 } = {}) {
  const until = Date.now() + timeout;
  let st;
  while (Date.now() < until) {
    await dismissTour(page);
    st = await segState(page);
    if (st.representations > 0 && st.voxels > 0) return st;
    await sleep(500);
  }
  return st;
}

// Make sure the right-hand segmentation panel is open and return the segment labels it lists.
export async function segmentationPanel(page) {
  const readPanel = () => page.evaluate(() => {
    // Segment rows are rendered with data-cy="data-row" in OHIF's ui-next DataRow component; fall back
    // to the panel's text when the attribute is absent.
    const panel = [...document.querySelectorAll('div')].find((d) =>
      d.offsetParent && /^(Segmentations|Label map segmentations)/.test(d.innerText.trim()) && d.getBoundingClientRect().x > window.innerWidth / 2);
    const rows = [...document.querySelectorAll('[data-cy="data-row"]')].filter((r) => r.offsetParent);
    const labels = rows.map((r) => r.innerText.replace(/\s+/g, ' ').trim().replace(/^\d+\s*/, ''));
    const right = [...document.querySelectorAll('[data-cy="data-row-visibility-toggle"]')].filter((b) => b.offsetParent);
    return { open: !!panel || rows.length > 0 || right.length > 0, labels, text: panel ? panel.innerText.slice(0, 400) : null };
  });
  let p = await readPanel();
  if (!p.labels.length) {
    const btn = await page.$('[data-cy="panelSegmentation-btn"]');
    if (btn) {
      await btn.click();
      log('opened the segmentation panel');
      await sleep(1000);
      p = await readPanel();
    }
  }
  return p;
}

// For a readable screenshot: show the slice with the most segmented voxels and an abdominal window.
export async function showBestSlice(page) {
  return page.evaluate(() => {
    const cs = window.cornerstone;
    const svc = window.services?.segmentationService;
    const seg = svc?.getSegmentations?.()[0];
    const lm = seg?.representationData?.Labelmap;
    const el = cs?.getEnabledElements?.()[0];
    const vp = el?.viewport;
    if (!vp || !lm?.imageIds) return null;
    let best = -1, bestN = -1;
    lm.imageIds.forEach((id, i) => {
      const im = cs.cache.getImage(id);
      if (!im) return;
      const px = im.getPixelData();
      let n = 0;
      for (let k = 0; k < px.length; k++) if (px[k]) n++;
      if (n > bestN) { bestN = n; best = i; }
    });
    const ref = (lm.referencedImageIds || [])[best];
    try {
      if (vp.getImageIds && vp.setImageIdIndex) {
        const idx = vp.getImageIds().indexOf(ref);
        if (idx >= 0) vp.setImageIdIndex(idx);
      }
      vp.setProperties({ voiRange: { lower: -160, upper: 240 } });
      vp.render();
    } catch (e) { return { error: String(e) }; }
    return { slice: best, voxels: bestN };
  });
}
