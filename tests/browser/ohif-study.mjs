#!/usr/bin/env node
// Check that OHIF (served by the gateway) lists a study, opens it, and loads its DICOM SEG.
//   node ohif-study.mjs --viewer http://127.0.0.1:8080/viewer --study 1.2.3 --screenshot /tmp/browser-shots/ohif-study.png
//     [--segment Liver]  the segment label that must be listed (default "Liver")
//     [--mode viewer]    the OHIF mode route to open the study in (default "viewer")
// Success means, all read from the page:
//   - the study list has a row data-cy="studyRow-{UID}";
//   - the viewer lists the study's series and shows the SEG series in the study browser;
//   - after double-clicking the SEG and answering "Yes", OHIF's segmentationService holds a
//     segmentation with a segment labelled --segment, represented (visible) in a viewport, whose
//     labelmap in cornerstone's cache has non-zero voxels; and
//   - the segmentation panel lists a segment row with that label.
// Prints one JSON line: {"ok":true,"study_listed":true,"seg_loaded":true,"segments":["Liver"],...}
import { args, finish, launch, log, screenshot, sleep, watchPage } from './lib.mjs';
import { findStudyInList, listedSeries, loadSeg, openStudy, segmentationPanel, segState, showBestSlice, waitForSeg } from './ohif-lib.mjs';

const opt = args({
  viewer: { type: 'string', required: true },
  study: { type: 'string', required: true },
  screenshot: { type: 'string' },
  segment: { type: 'string', default: 'Liver' },
  mode: { type: 'string', default: 'viewer' },
  seg: { type: 'string' },
}, 'usage: ohif-study.mjs --viewer URL --study UID [--screenshot PATH] [--segment LABEL] [--mode viewer|segmentation] [--seg SERIES_UID|DESCRIPTION]');

const result = { viewer: opt.viewer, study: opt.study, study_listed: false, seg_loaded: false };
let ok = false;
let close = async () => {};
let page;
let diag;
const t0 = Date.now();
try {
  const launched = await launch();
  close = launched.close;
  page = await launched.browser.newPage();
  diag = watchPage(page);

  const listed = await findStudyInList(page, opt.viewer, opt.study);
  result.study_listed = listed.listed;
  result.study_list = { identified_by: listed.identified_by, row_text: listed.row_text, studies_in_list: listed.studies_in_list };
  if (!listed.listed) throw new Error('the study is not in the study list');

  const opened = await openStudy(page, opt.viewer, opt.study, opt.mode);
  result.viewer_url = opened.url;
  result.tour_dismissed = opened.tour_dismissed;
  if (opened.reloaded) result.reloaded = true;
  result.series = (await listedSeries(page)).map((s) => `${s.modality}: ${s.description}`);
  result.load = await loadSeg(page, { which: opt.seg || null, diag });

  const st = result.load.hydrated ? await waitForSeg(page, { timeout: 30_000 }) : await segState(page);
  const segs = st?.segmentations || [];
  result.segments = [...new Set(segs.flatMap((s) => s.segments.map((g) => g.label)))];
  result.segmentations = segs.map((s) => ({ label: s.label, segments: s.segments.map((g) => g.label),
    voxels: s.voxels, slices_with_voxels: s.slices_with_voxels, volume_ml: s.volume_ml, spacing_mm: s.spacing_mm }));
  result.viewport_representations = st?.representations ?? 0;
  result.seg_loaded = (st?.representations ?? 0) > 0 && (st?.voxels ?? 0) > 0 && result.segments.includes(opt.segment);

  const panel = await segmentationPanel(page);
  result.panel_segments = panel.labels;
  result.panel_lists_segment = panel.labels.some((l) => l === opt.segment || l.startsWith(opt.segment));

  result.best_slice = await showBestSlice(page);
  await sleep(1500);
  result.screenshot = await screenshot(page, opt.screenshot);
  if (diag.page_errors.length || diag.failed_requests.length) result.diagnostics = diag;
  ok = result.study_listed && result.seg_loaded && result.panel_lists_segment;
  if (!ok) result.error = !result.seg_loaded ? 'the segmentation did not load' : 'the segmentation panel does not list the segment';
} catch (e) {
  result.error = String(e && e.message || e);
  if (diag) result.diagnostics = diag;
  if (page && opt.screenshot) { try { result.screenshot = await screenshot(page, opt.screenshot); } catch { /* ignore */ } }
}
result.seconds = +((Date.now() - t0) / 1000).toFixed(1);
log(ok ? 'ok' : `failed: ${result.error}`);
await close();
finish(result, ok);
