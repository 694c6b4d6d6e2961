#!/usr/bin/env node
// Summarise the dev server's DICOMweb proxy log (JSON lines): one line per distinct
// method + path shape + query parameter names + Accept + Content-Type, with counts and statuses.
//   node dev/proxy-log-summary.mjs /tmp/proxy.jsonl [--values]   (--values also lists query values)
import fs from 'node:fs';

const file = process.argv[2];
const showValues = process.argv.includes('--values');
if (!file) { console.error('usage: proxy-log-summary.mjs LOG [--values]'); process.exit(2); }
const groups = new Map();
for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
  if (!line.trim()) continue;
  const r = JSON.parse(line);
  if (r.kind !== 'dicomweb') continue;
  const shape = r.path
    .replace(/\/studies\/[^/]+/, '/studies/{study}')
    .replace(/\/series\/[^/]+/, '/series/{series}')
    .replace(/\/instances\/[^/]+/, '/instances/{instance}')
    .replace(/\/frames\/[0-9,]+/, '/frames/{n}')
    .replace(/\/bulk\/[^?]+/, '/bulk/{tag}');
  const q = Object.keys(r.query || {}).sort();
  const ct = (r.content_type || '').replace(/boundary=[^;]+/, 'boundary=…');
  const key = `${r.method} ${shape}${q.length ? '?' + q.join('&') : ''} | Accept: ${r.accept || '-'}${ct ? ` | Content-Type: ${ct}` : ''}`;
  const g = groups.get(key) || { n: 0, status: {}, resp: new Set(), values: {} };
  g.n++;
  g.status[r.status] = (g.status[r.status] || 0) + 1;
  if (r.resp_content_type) g.resp.add(r.resp_content_type.replace(/boundary=[^;]+/, 'boundary=…'));
  for (const [k, v] of Object.entries(r.query || {})) (g.values[k] ||= new Set()).add(v);
  groups.set(key, g);
}
for (const [key, g] of [...groups].sort((a, b) => a[0].localeCompare(b[0]))) {
  console.log(`${String(g.n).padStart(5)}x ${key} -> ${Object.entries(g.status).map(([s, n]) => `${s}:${n}`).join(',')} [${[...g.resp].join(' ; ')}]`);
  if (showValues) for (const [k, vs] of Object.entries(g.values)) console.log(`         ${k} = ${[...vs].slice(0, 6).map((v) => JSON.stringify(v)).join(' | ')}`);
}
