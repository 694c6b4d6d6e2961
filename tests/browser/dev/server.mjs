#!/usr/bin/env node
// Development stand-in for the liverseg gateway's browser-facing routes (no dependencies).
// It implements the serving rules the gateway follows, so the browser scripts can be developed
// and run before the gateway is ready:
//   /viewer, /viewer/...           prebuilt OHIF (DIR/ohif) with the sub-path rewrites
//   /viewer/app-config.js          generated from services/gateway/assets/ohif-app-config.js
//   /dicom-web/...                 reverse proxy to a DICOMweb server (e.g. Orthanc), every request logged
//   /3d/{study}                    services/gateway/assets/liver3d.html
//   /assets/three/...              DIR/three
//   /api/v1/studies/{study}/liver{,.glb,.stl}   from a `liverseg segment` output folder
//
// node server.mjs --port 18180 --assets /tmp/webassets --dicomweb http://127.0.0.1:18142/dicom-web \
//   --results /tmp/x --study 1.2.3 [--log /tmp/proxy.jsonl] [--base /viewer]
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..', '..');
const { values: opt } = parseArgs({
  options: {
    port: { type: 'string', default: '18180' },
    host: { type: 'string', default: '127.0.0.1' },
    assets: { type: 'string', default: '/tmp/webassets' },
    dicomweb: { type: 'string', default: 'http://127.0.0.1:18142/dicom-web' },
    results: { type: 'string', default: '/tmp/x' },
    study: { type: 'string', default: '' },
    log: { type: 'string', default: '' },
    base: { type: 'string', default: '/viewer' },
    'dicomweb-root': { type: 'string', default: '/dicom-web' },
  },
});

const BASE = opt.base.replace(/\/+$/, '');
const OHIF = path.join(opt.assets, 'ohif');
const THREE = path.join(opt.assets, 'three');
const upstream = new URL(opt.dicomweb.replace(/\/+$/, ''));
const logStream = opt.log ? fs.createWriteStream(opt.log, { flags: 'a' }) : null;
const log = (rec) => {
  const line = JSON.stringify({ t: new Date().toISOString(), ...rec });
  if (logStream) logStream.write(line + '\n');
  else process.stderr.write(line + '\n');
};

const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.json': 'application/json', '.map': 'application/json', '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml', '.png': 'image/png', '.ico': 'image/x-icon', '.jpg': 'image/jpeg',
  '.woff': 'font/woff', '.woff2': 'font/woff2', '.ttf': 'font/ttf', '.txt': 'text/plain; charset=utf-8',
  '.xml': 'application/xml', '.glb': 'model/gltf-binary', '.stl': 'model/stl',
};
// Unknown paths under the viewer with one of these extensions are 404, everything else is the SPA.
const STATIC_EXT = new Set(['.js', '.mjs', '.css', '.map', '.wasm', '.json', '.png', '.ico', '.svg',
  '.jpg', '.woff', '.woff2', '.ttf', '.txt', '.xml', '.html']);

// ---- the OHIF sub-path rewrites (what the gateway does) ----------------------------------------
function rewriteIndex(html) {
  return html
    .split("window.PUBLIC_URL = '/';").join(`window.PUBLIC_URL = '${BASE}/';`)
    .split('="/').join(`="${BASE}/`);
}
function rewriteBundle(js) {
  return js.split('__webpack_require__.p = "/";').join(`__webpack_require__.p = "${BASE}/";`)
    .split("'/dicom-microscopy-viewer/").join(`'${BASE}/dicom-microscopy-viewer/`);
}
function rewriteCss(css) {
  return css.split('url(/').join(`url(${BASE}/`);
}
function rewriteManifest(json) {
  return json.split('"/assets/').join(`"${BASE}/assets/`);
}
function appConfig() {
  const tpl = fs.readFileSync(path.join(repo, 'services/gateway/assets/ohif-app-config.js'), 'utf8');
  return tpl.split('__DICOMWEB_ROOT__').join(opt['dicomweb-root']).split('__ROUTER_BASENAME__').join(BASE);
}
const cache = new Map();
function cached(key, make) {
  if (!cache.has(key)) cache.set(key, make());
  return cache.get(key);
}

function send(res, status, body, headers = {}) {
  res.writeHead(status, { 'Content-Length': Buffer.byteLength(body), ...headers });
  res.end(body);
}
function sendJson(res, status, obj) {
  send(res, status, JSON.stringify(obj), { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
}
function safeJoin(root, rel) {
  const p = path.normalize(path.join(root, decodeURIComponent(rel)));
  if (p !== root && !p.startsWith(root + path.sep)) return null;
  return p;
}
function isFile(p) {
  try { return fs.statSync(p).isFile(); } catch { return false; }
}
function sendFile(req, res, file, { body, cacheControl } = {}) {
  const ext = path.extname(file).toLowerCase();
  const headers = {
    'Content-Type': MIME[ext] || 'application/octet-stream',
    'Cache-Control': cacheControl || 'no-cache',
    'X-Content-Type-Options': 'nosniff',
  };
  if (body !== undefined) return send(res, 200, req.method === 'HEAD' ? '' : body, headers);
  const st = fs.statSync(file);
  res.writeHead(200, { ...headers, 'Content-Length': st.size });
  if (req.method === 'HEAD') return res.end();
  fs.createReadStream(file).pipe(res);
}

function serveViewer(req, res, rel) {
  // rel: path after BASE, starting with "/" or empty
  const index = () => sendFile(req, res, path.join(OHIF, 'index.html'), {
    body: cached('index', () => rewriteIndex(fs.readFileSync(path.join(OHIF, 'index.html'), 'utf8'))),
    cacheControl: 'no-cache',
  });
  if (rel === '' || rel === '/' || rel === '/index.html') return index();
  if (rel === '/app-config.js') {
    return sendFile(req, res, 'app-config.js', { body: appConfig(), cacheControl: 'no-cache' });
  }
  const file = safeJoin(OHIF, rel.slice(1));
  if (file && isFile(file) && !path.basename(file).startsWith('.')) {
    const top = path.dirname(file) === OHIF;
    const name = path.basename(file);
    const immutable = /\.[0-9a-f]{16,}\.(js|wasm|css)$|^[0-9a-f]{20}\.(wasm|woff2?)$/.test(name)
      ? 'public, max-age=31536000, immutable' : 'no-cache';
    if (top && name.endsWith('.js')) {
      return sendFile(req, res, file, {
        body: cached(file, () => rewriteBundle(fs.readFileSync(file, 'utf8'))), cacheControl: immutable });
    }
    if (top && name.endsWith('.css')) {
      return sendFile(req, res, file, {
        body: cached(file, () => rewriteCss(fs.readFileSync(file, 'utf8'))), cacheControl: immutable });
    }
    if (top && name === 'manifest.json') {
      return sendFile(req, res, file, { body: cached(file, () => rewriteManifest(fs.readFileSync(file, 'utf8'))) });
    }
    return sendFile(req, res, file, { cacheControl: immutable });
  }
  const ext = path.extname(rel).toLowerCase();
  if (STATIC_EXT.has(ext)) {
    log({ kind: 'static-404', path: req.url });
    return send(res, 404, 'not found\n', { 'Content-Type': 'text/plain' });
  }
  return index(); // SPA fallback: /viewer/viewer?..., /viewer/segmentation?..., /viewer/local, ...
}

// ---- DICOMweb reverse proxy ----------------------------------------------------------------------
function proxy(req, res, rel) {
  const target = new URL(upstream.href + rel);
  const started = Date.now();
  const headers = { ...req.headers };
  headers['x-forwarded-host'] = req.headers.host;
  headers['x-forwarded-proto'] = 'http';
  delete headers['accept-encoding']; // keep the proxy log readable (bytes = decoded size)
  let reqBytes = 0;
  const up = http.request({
    hostname: target.hostname, port: target.port, path: target.pathname + target.search,
    method: req.method, headers,
  }, (ur) => {
    let bytes = 0;
    const chunks = [];
    const capture = req.method !== 'GET' || ur.statusCode >= 400;
    ur.on('data', (c) => { bytes += c.length; if (capture && bytes < 65536) chunks.push(c); });
    ur.on('end', () => log({
      kind: 'dicomweb', method: req.method, path: '/dicom-web' + target.pathname.slice(upstream.pathname.length),
      query: Object.fromEntries(target.searchParams), accept: req.headers.accept || null,
      content_type: req.headers['content-type'] || null, req_bytes: reqBytes, status: ur.statusCode,
      resp_content_type: ur.headers['content-type'] || null, resp_bytes: bytes, ms: Date.now() - started,
      ...(capture ? { resp_body: Buffer.concat(chunks).toString('utf8').slice(0, 4000) } : {}),
    }));
    res.writeHead(ur.statusCode, ur.headers);
    ur.pipe(res);
  });
  up.on('error', (e) => {
    log({ kind: 'dicomweb', method: req.method, path: req.url, error: String(e) });
    if (!res.headersSent) sendJson(res, 502, { error: `DICOMweb upstream: ${e.message}` });
  });
  req.on('data', (c) => { reqBytes += c.length; });
  req.pipe(up);
}

// ---- the 3D page and its API -------------------------------------------------------------------
async function ctSeriesUid(study) {
  try {
    const r = await fetch(`${upstream.href}/studies/${study}/series?Modality=CT`, { headers: { Accept: 'application/dicom+json' } });
    const j = await r.json();
    return j?.[0]?.['0020000E']?.Value?.[0] ?? null;
  } catch { return null; }
}
async function api(req, res, study, what) {
  const known = !opt.study || opt.study === study;
  const glb = path.join(opt.results, 'liver.glb');
  if (!known || !isFile(glb)) {
    return sendJson(res, 404, { error: `no liver mesh for study ${study}` });
  }
  if (what === '.glb') return sendFile(req, res, glb);
  if (what === '.stl') {
    res.setHeader('Content-Disposition', `attachment; filename="liver-${study}.stl"`);
    return sendFile(req, res, path.join(opt.results, 'liver.stl'));
  }
  const summary = JSON.parse(fs.readFileSync(path.join(opt.results, 'summary.json'), 'utf8'));
  return sendJson(res, 200, {
    study_uid: study, series_uid: await ctSeriesUid(study), version: 1,
    volume_ml: Math.round(summary.liver_volume_ml * 10) / 10,
    glb: `/api/v1/studies/${study}/liver.glb`, stl: `/api/v1/studies/${study}/liver.stl`,
  });
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  try {
    if (p === '/dicom-web' || p.startsWith('/dicom-web/')) {
      return proxy(req, res, p.slice('/dicom-web'.length) + url.search);
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'method not allowed\n');
    if (p === BASE || p.startsWith(BASE + '/')) return serveViewer(req, res, p.slice(BASE.length));
    let m;
    if ((m = p.match(/^\/3d\/([0-9.]{1,64})\/?$/))) {
      return sendFile(req, res, path.join(repo, 'services/gateway/assets/liver3d.html'), {
        body: fs.readFileSync(path.join(repo, 'services/gateway/assets/liver3d.html')) });
    }
    if ((m = p.match(/^\/api\/v1\/studies\/([0-9.]{1,64})\/liver(\.glb|\.stl)?$/))) {
      return await api(req, res, m[1], m[2] || '');
    }
    if (p.startsWith('/assets/three/')) {
      const file = safeJoin(THREE, p.slice('/assets/three/'.length));
      if (file && isFile(file)) return sendFile(req, res, file, { cacheControl: 'public, max-age=86400' });
      log({ kind: 'static-404', path: req.url });
      return send(res, 404, 'not found\n');
    }
    if (p === '/') { res.writeHead(302, { Location: `${BASE}/` }); return res.end(); }
    log({ kind: 'other-404', path: req.url });
    return sendJson(res, 404, { error: 'not found' });
  } catch (e) {
    log({ kind: 'error', path: req.url, error: String(e && e.stack || e) });
    if (!res.headersSent) sendJson(res, 500, { error: String(e) });
  }
});
server.listen(Number(opt.port), opt.host, () => {
  process.stdout.write(JSON.stringify({ listening: `http://${opt.host}:${opt.port}`, pid: process.pid }) + '\n');
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => { server.close(); process.exit(0); });
