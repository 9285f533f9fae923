// The report of a `vtoe bench` run: results.json, summary.md, report.html (Chart.js, inlined so
// that it opens offline) and one PNG per chart, rendered by headless Chromium.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ModeResult, WorkloadResult } from './harness.js';
import { FIGURES } from './figures.js';
import { kernelCallsTable } from './kernel-calls.js';
import type { BenchMode } from './mpi-modes.js';
import { runProcess } from './process.js';
import { bandwidthOf } from './series.js';

export interface ReportInput {
  title: string;
  host: string;
  generatedAt: string;
  reps: number;
  results: WorkloadResult[];
  /** Label of each mode: what it ran over. */
  labels: Partial<Record<BenchMode, string>>;
}

export interface ChartSpec {
  id: string;
  title: string;
  kind: 'line' | 'bar';
  xTitle: string;
  yTitle: string;
  logX: boolean;
  logY: boolean;
  labels?: string[]; // bar categories
  datasets: Array<{ label: string; mode: BenchMode; points?: Array<{ x: number; y: number }>; values?: number[] }>;
}

/** A chart's id, also its PNG's name: lower case, letters, digits and dashes only. */
export function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}

const COLOURS: Record<BenchMode, string> = { offload: '#1b7837', ipoib: '#b2182b', native: '#2166ac' };

/** The charts of the dissertation's Figures 6.10, 6.13 and 6.15: latency and bandwidth against
 * message size, one line per mode; HPCC's application figures as bars relative to ipoib. */
export function chartSpecs(input: ReportInput): ChartSpec[] {
  const charts: ChartSpec[] = [];
  for (const w of input.results) {
    const names = [...new Set(w.modes.flatMap((m) => Object.keys(m.series)))];
    for (const name of names) {
      const lat = w.modes.map((m) => ({
        label: input.labels[m.mode] ?? m.mode, mode: m.mode,
        // log axes: a 0-byte point has no place on them
        points: (m.series[name] ?? []).filter((p) => p.bytes > 0).map((p) => ({ x: p.bytes, y: p.usec })),
      }));
      charts.push({ id: slug(`${w.workload}-${name}-latency`), title: `${w.workload} ${name}: latency`, kind: 'line',
        xTitle: 'message size (bytes)', yTitle: 'time (µs)', logX: true, logY: true, datasets: lat });
      const bw = w.modes.map((m) => ({
        label: input.labels[m.mode] ?? m.mode, mode: m.mode,
        points: (m.series[name] ?? []).flatMap((p) => { const b = bandwidthOf(p); return b === undefined ? [] : [{ x: p.bytes, y: b }]; }),
      }));
      if (bw.some((d) => d.points.length)) {
        charts.push({ id: slug(`${w.workload}-${name}-bandwidth`), title: `${w.workload} ${name}: bandwidth`, kind: 'line',
          xTitle: 'message size (bytes)', yTitle: 'bandwidth (MB/s)', logX: true, logY: true, datasets: bw });
      }
    }
    const keys = Object.keys(FIGURES).filter((k) => w.modes.some((m) => m.figures[k] !== undefined));
    const base = w.modes.find((m) => m.mode === 'ipoib');
    if (keys.length && base) {
      charts.push({
        id: slug(`${w.workload}-figures`), title: `${w.workload}: each figure relative to ipoib (higher is better)`, kind: 'bar',
        xTitle: '', yTitle: '× ipoib (log scale)', logX: false, logY: true, labels: keys.map((k) => FIGURES[k]!.label),
        datasets: w.modes.map((m) => ({
          label: input.labels[m.mode] ?? m.mode, mode: m.mode,
          values: keys.map((k) => relative(k, m.figures[k], base.figures[k])),
        })),
      });
    }
  }
  return charts;
}

/** m against the baseline, oriented so that > 1 is better. */
function relative(key: string, v: number | undefined, baseline: number | undefined): number {
  if (v === undefined || baseline === undefined || v <= 0 || baseline <= 0) return 0;
  return FIGURES[key]!.higherIsBetter ? v / baseline : baseline / v;
}

// ---- summary.md ---------------------------------------------------------------------------

const fmt = (v: number | undefined, digits = 2) => (v === undefined ? '–' : v >= 100 ? v.toFixed(0) : v.toFixed(digits));

function ratioText(a: number | undefined, b: number | undefined, higherIsBetter: boolean): string {
  if (a === undefined || b === undefined || a <= 0 || b <= 0) return '–';
  const r = higherIsBetter ? a / b : b / a;
  if (r.toFixed(2) === '1.00') return '1.00× (same)';
  return `${r.toFixed(2)}× ${r > 1 ? 'better' : 'worse'}`;
}

function seriesRows(w: WorkloadResult, name: string): string[] {
  const sizes = [...new Set(w.modes.flatMap((m) => (m.series[name] ?? []).map((p) => p.bytes)))].sort((a, b) => a - b);
  const head = `| bytes | ${w.modes.map((m) => `${m.mode} µs`).join(' | ')} | ${w.modes.map((m) => `${m.mode} MB/s`).join(' | ')} |`;
  const rows = sizes.map((size) => {
    const at = (m: ModeResult) => (m.series[name] ?? []).find((p) => p.bytes === size);
    return `| ${size} | ${w.modes.map((m) => fmt(at(m)?.usec)).join(' | ')} | ${w.modes.map((m) => fmt(at(m)?.mbPerSec)).join(' | ')} |`;
  });
  return [head, `|${' --- |'.repeat(1 + 2 * w.modes.length)}`, ...rows];
}

export function summaryMarkdown(input: ReportInput): string {
  const out: string[] = [`# ${input.title}`, '', `${input.host}; ${input.generatedAt}; medians of ${input.reps} repetitions, each a fresh process tree, the modes' order rotated.`, ''];
  out.push('| mode | ran over |', '| --- | --- |');
  for (const [mode, label] of Object.entries(input.labels)) out.push(`| ${mode} | ${label} |`);
  out.push('');
  for (const w of input.results) {
    out.push(`## ${w.workload}`, '');
    out.push(`Ran over: ${w.modes.map((m) => `${m.mode}: ${m.transport}`).join('; ')}.`, '');
    const off = w.modes.find((m) => m.mode === 'offload');
    if (off) {
      const fb = Object.entries(off.fallbacks ?? {}).map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
      out.push(`Offload trials: ${off.offloaded} connections offloaded by the agent; fallbacks: ${fb}.`, '');
    }
    for (const m of w.modes) if (m.problems.length) out.push(`**${m.mode}: ${m.problems.join('; ')}**`, '');
    if (w.modes.every((m) => !m.problems.length)) {
      out.push(`Checks: every trial of every mode passed (${w.modes.map((m) => `${m.mode} ${m.trials}`).join(', ')} trials); the workload's own verdicts, e.g. HPCC's residual checks, are among them.`, '');
    }
    const names = [...new Set(w.modes.flatMap((m) => Object.keys(m.series)))];
    const ipoib = w.modes.find((m) => m.mode === 'ipoib');
    const native = w.modes.find((m) => m.mode === 'native');
    if (names.length && off) {
      out.push('| benchmark | figure | offload | vs ipoib | vs native |', '| --- | --- | --- | --- | --- |');
      for (const name of names) {
        const pts = (m?: ModeResult) => m?.series[name] ?? [];
        const small = pts(off).find((p) => p.bytes > 0) ?? pts(off)[0];
        const large = pts(off)[pts(off).length - 1];
        const at = (m: ModeResult | undefined, bytes: number | undefined) => pts(m).find((p) => p.bytes === bytes);
        if (small) out.push(`| ${name} | latency at ${small.bytes} B (µs) | ${fmt(small.usec)} | ${ratioText(small.usec, at(ipoib, small.bytes)?.usec, false)} | ${ratioText(small.usec, at(native, small.bytes)?.usec, false)} |`);
        if (large?.mbPerSec !== undefined) out.push(`| ${name} | bandwidth at ${large.bytes} B (MB/s) | ${fmt(large.mbPerSec)} | ${ratioText(large.mbPerSec, at(ipoib, large.bytes)?.mbPerSec, true)} | ${ratioText(large.mbPerSec, at(native, large.bytes)?.mbPerSec, true)} |`);
      }
      out.push('');
    }
    for (const name of names) out.push(`### ${name}`, '', ...seriesRows(w, name), '');
    const keys = Object.keys(FIGURES).filter((k) => w.modes.some((m) => m.figures[k] !== undefined));
    if (keys.length) {
      out.push(`| figure | ${w.modes.map((m) => m.mode).join(' | ')} | offload vs ipoib | offload vs native |`, `|${' --- |'.repeat(3 + w.modes.length)}`);
      // each median with its spread over the trials (min–max) where there was more than one
      const cell = (m: ModeResult, k: string) => {
        const r = m.figureRanges?.[k];
        return r && m.trials > 1 ? `${fmt(m.figures[k], 4)} (${fmt(r[0], 4)}–${fmt(r[1], 4)})` : fmt(m.figures[k], 4);
      };
      for (const k of keys) {
        const f = FIGURES[k]!;
        out.push(`| ${f.label} (${f.unit}) | ${w.modes.map((m) => cell(m, k)).join(' | ')} | ${ratioText(off?.figures[k], ipoib?.figures[k], f.higherIsBetter)} | ${ratioText(off?.figures[k], native?.figures[k], f.higherIsBetter)} |`);
      }
      out.push('');
    }
    const calls = kernelCallsTable(w.modes);
    if (calls.length) {
      out.push('### kernel calls per round trip', '',
        "System calls of each rank (not of mpirun, its daemons or the agent) per round trip of a 0-byte MPI ping-pong: (calls in N2 round trips − calls in N1) / (N2 − N1), which removes start-up and teardown; a rank sends and receives one message per round trip. Top calls: the names of at least 0.01 per round trip ('none': no name reaches it; 'other': calls outside the names perf counts one by one).", '',
        ...calls, '');
    }
  }
  return out.join('\n');
}

// ---- report.html --------------------------------------------------------------------------

function chartJsSource(): string {
  // the UMD build, which a <script> tag can load; the package exports only its modules
  const require = createRequire(import.meta.url);
  const main = require.resolve('chart.js'); // .../chart.js/dist/chart.cjs
  return readFileSync(join(dirname(main), 'chart.umd.min.js'), 'utf8');
}

/** The script that draws `charts` into canvases #ID and then marks each canvas with the number
 * of non-blank pixels it drew (data-ink), so that a test can tell an empty chart from a full one. */
function drawScript(charts: ChartSpec[]): string {
  const colours = JSON.stringify(COLOURS);
  return `
const COLOURS = ${colours};
const CHARTS = ${JSON.stringify(charts)};
Chart.defaults.animation = false;
Chart.defaults.font.size = 13;
for (const c of CHARTS) {
  const canvas = document.getElementById(c.id);
  const scale = (title, log) => ({ type: log ? 'logarithmic' : 'linear', title: { display: !!title, text: title } });
  const cfg = c.kind === 'line' ? {
    type: 'line',
    data: { datasets: c.datasets.map((d) => ({ label: d.label, data: d.points, borderColor: COLOURS[d.mode], backgroundColor: COLOURS[d.mode], showLine: true, pointRadius: 3 })) },
    options: { responsive: false, parsing: true, plugins: { title: { display: true, text: c.title } }, scales: { x: scale(c.xTitle, c.logX), y: scale(c.yTitle, c.logY) } },
  } : {
    type: 'bar',
    data: { labels: c.labels, datasets: c.datasets.map((d) => ({ label: d.label, data: d.values, backgroundColor: COLOURS[d.mode] })) },
    options: { responsive: false, plugins: { title: { display: true, text: c.title } }, scales: { y: scale(c.yTitle, c.logY) } },
  };
  new Chart(canvas, cfg);
  const ctx = canvas.getContext('2d');
  const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let i = 3; i < px.length; i += 4) if (px[i] !== 0) ink++;
  canvas.dataset.ink = String(ink);
  canvas.dataset.points = String(c.datasets.reduce((n, d) => n + (d.points ? d.points.length : d.values.length), 0));
}
document.body.dataset.charts = String(CHARTS.length);
`;
}

const esc = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

export const CHART_SIZE = { width: 900, height: 520 };

function page(title: string, body: string, charts: ChartSpec[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:960px}canvas{display:block;margin:16px 0}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}</style>
</head><body>
${body}
${charts.map((c) => `<canvas id="${esc(c.id)}" width="${CHART_SIZE.width}" height="${CHART_SIZE.height}"></canvas>`).join('\n')}
<script>${chartJsSource()}</script>
<script>${drawScript(charts)}</script>
</body></html>
`;
}

/** The summary's Markdown as HTML: it only ever holds headings, paragraphs and tables. */
export function summaryHtml(markdown: string): string {
  const html: string[] = [];
  let table: string[][] = [];
  const cells = (line: string) => line.slice(1, -1).split('|').map((c) => c.trim());
  const inline = (t: string) => esc(t).replace(/\*\*(.+?)\*\*/g, '<b>$1</b>').replace(/`(.+?)`/g, '<code>$1</code>');
  const flush = () => {
    if (!table.length) return;
    const [head, , ...rows] = table;
    html.push(`<table><tr>${head!.map((c) => `<th>${inline(c)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${inline(c)}</td>`).join('')}</tr>`).join('')}</table>`);
    table = [];
  };
  for (const line of markdown.split('\n')) {
    if (line.startsWith('|')) { table.push(cells(line)); continue; }
    flush();
    const h = /^(#{1,3}) (.*)$/.exec(line);
    if (h) html.push(`<h${h[1]!.length}>${inline(h[2]!)}</h${h[1]!.length}>`);
    else if (line.trim()) html.push(`<p>${inline(line)}</p>`);
  }
  flush();
  return html.join('\n');
}

export function reportHtml(input: ReportInput, charts = chartSpecs(input)): string {
  // the title, the charts, then the summary with its ratio tables against ipoib and native
  const summary = summaryMarkdown(input).split('\n').slice(1).join('\n');
  return page(input.title, `<h1>${esc(input.title)}</h1>`, charts).replace('</body>', `${summaryHtml(summary)}\n</body>`);
}

// ---- PNGs ---------------------------------------------------------------------------------

export const CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync', '--hide-scrollbars'];

export function findChromium(): string | null {
  for (const p of ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome']) if (existsSync(p)) return p;
  return null;
}

/** Runs headless Chromium with extra flags; resolves with its stdout. */
export async function chromium(args: string[], userDataDir: string, timeoutMs = 60_000): Promise<string> {
  const bin = findChromium();
  if (!bin) throw new Error("no Chromium found: install Debian's chromium to render the report's charts");
  const r = await runProcess([bin, ...CHROMIUM_FLAGS, `--user-data-dir=${userDataDir}`, ...args], { env: process.env, timeoutMs });
  if (r.code !== 0) throw new Error(`chromium exited with ${r.code ?? 'a signal (timed out?)'}`);
  return r.stdout;
}

export interface WrittenReport {
  dir: string;
  files: string[];
  pngs: string[];
  /** Why the PNGs are missing or incomplete (Chromium failed); the rest of the report stands. */
  chartsFailed?: string;
}

/** Writes the whole report into dir; PNGs need Chromium (skipped with a note without it), and
 * `charts: false` leaves them out (a slow or headless node: `vtoe bench --from` draws them later). */
export async function writeReport(dir: string, input: ReportInput, opts: { charts?: boolean } = {}): Promise<WrittenReport> {
  mkdirSync(dir, { recursive: true });
  const charts = chartSpecs(input);
  const files: string[] = [];
  const put = (name: string, text: string) => { writeFileSync(join(dir, name), text); files.push(name); };
  put('results.json', `${JSON.stringify(input, null, 2)}\n`);
  put('summary.md', `${summaryMarkdown(input)}\n`);
  put('report.html', reportHtml(input, charts));
  const pngs: string[] = [];
  let chartsFailed: string | undefined;
  if (opts.charts !== false && findChromium()) {
    // one page per chart, and Chromium's profile, in a scratch directory of their own
    const scratch = mkdtempSync(join(tmpdir(), 'vtoe-report-'));
    try {
      for (const c of charts) {
        const html = join(scratch, `${c.id}.html`);
        writeFileSync(html, page(c.title, '', [c]).replace('body{', 'body{margin:0;'));
        const png = `${c.id}.png`;
        await chromium([`--screenshot=${join(dir, png)}`, `--window-size=${CHART_SIZE.width + 48},${CHART_SIZE.height + 48}`,
          '--virtual-time-budget=5000', pathToFileURL(html).href], join(scratch, 'profile'));
        pngs.push(png);
      }
    } catch (err) {
      // The figures are in results.json and report.html already; `vtoe bench --from` renders
      // the charts again elsewhere.
      chartsFailed = (err as Error).message;
    } finally {
      rmSync(scratch, { recursive: true, force: true });
    }
  }
  return { dir, files: [...files, ...pngs], pngs, ...(chartsFailed ? { chartsFailed } : {}) };
}
