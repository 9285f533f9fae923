import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import type { WorkloadResult } from '../src/bench/harness.js';
import { chartSpecs, chromium, findChromium, reportHtml, summaryMarkdown, writeReport, type ReportInput } from '../src/bench/report.js';

const pts = (scale: number) => [0, 1, 1024, 65536, 1048576].map((bytes) => ({
  bytes, usec: scale * (5 + bytes / 1000), ...(bytes ? { mbPerSec: bytes / (scale * (5 + bytes / 1000)) } : { mbPerSec: 0 }),
}));
const figures = (f: number) => ({ HPL_Tflops: 1.5 * f, PTRANS_GBs: 0.3 * f, MaxPingPongLatency_usec: 7 / f });

const results: WorkloadResult[] = [
  { workload: 'pingpong', modes: [
    { mode: 'offload', transport: 't', trials: 3, series: { PingPong: pts(0.7) }, figures: {}, problems: [], offloaded: 6, fallbacks: { policy: 3 } },
    { mode: 'ipoib', transport: 't', trials: 3, series: { PingPong: pts(1) }, figures: {}, problems: [] },
    { mode: 'native', transport: 't', trials: 3, series: { PingPong: pts(0.1) }, figures: {}, problems: [] },
  ] },
  { workload: 'hpcc', modes: [
    { mode: 'offload', transport: 't', trials: 3, series: {}, figures: figures(1.2), problems: [], offloaded: 6, fallbacks: {} },
    { mode: 'ipoib', transport: 't', trials: 3, series: {}, figures: figures(1), problems: [] },
    { mode: 'native', transport: 't', trials: 3, series: {}, figures: figures(2), problems: [] },
  ] },
];
const input: ReportInput = {
  title: 'test report', host: 'host: 2 cores', generatedAt: '2026-11-30T00:00:00Z', reps: 3, results,
  labels: { offload: 'offload: over vtoe', ipoib: 'ipoib: kernel TCP over lo', native: 'native: vader' },
};

describe('report contents', () => {
  it('has latency and bandwidth against size per benchmark, and HPCC bars relative to ipoib', () => {
    const charts = chartSpecs(input);
    expect(charts.map((c) => c.id)).toEqual(['pingpong-pingpong-latency', 'pingpong-pingpong-bandwidth', 'hpcc-figures']);
    const lat = charts[0]!;
    expect(lat.logX && lat.logY).toBe(true);
    expect(lat.datasets.map((d) => d.mode)).toEqual(['offload', 'ipoib', 'native']);
    expect(lat.datasets[0]!.points!.map((p) => p.x)).toEqual([1, 1024, 65536, 1048576]); // no 0 on a log axis
    const bars = charts[2]!;
    expect(bars.labels).toEqual(['HPL', 'PTRANS', 'PingPong latency (max)']);
    expect(bars.datasets.find((d) => d.mode === 'ipoib')!.values).toEqual([1, 1, 1]);
    expect(bars.datasets.find((d) => d.mode === 'offload')!.values!.map((v) => +v.toFixed(3))).toEqual([1.2, 1.2, 1.2]);
  });

  it('summary.md gives the ratios against ipoib and native and the offload evidence', () => {
    const md = summaryMarkdown(input);
    expect(md).toContain('Offload trials: 6 connections offloaded by the agent; fallbacks: policy 3.');
    expect(md).toMatch(/\| PingPong \| latency at 1 B \(µs\) \| 3\.50 \| 1\.43× better \| 0\.14× worse \|/);
    expect(md).toMatch(/\| HPL \(Gflop\/s\) \| 1\.8000 \| 1\.5000 \| 3\.0000 \| 1\.20× better \| 0\.60× worse \|/);
  });
});

// ---- rendered in headless Chromium ---------------------------------------------------------

/** What a rendered report.html says about its charts: missing, not drawn, or drawn empty. */
function renderProblems(dom: string, ids: string[]): string[] {
  const problems: string[] = [];
  for (const id of ids) {
    const tag = new RegExp(`<canvas[^>]*id="${id}"[^>]*>`).exec(dom)?.[0];
    if (!tag) { problems.push(`${id}: no canvas`); continue; }
    const ink = Number(/data-ink="(\d+)"/.exec(tag)?.[1] ?? NaN);
    const points = Number(/data-points="(\d+)"/.exec(tag)?.[1] ?? NaN);
    if (!(points > 0)) problems.push(`${id}: no data points`);
    if (!(ink > 5000)) problems.push(`${id}: nothing drawn (${Number.isNaN(ink) ? 'never rendered' : `${ink} pixels`})`);
  }
  return problems;
}

const browser = findChromium();
const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

describe.skipIf(!browser)(`report.html in headless Chromium${browser ? '' : ' [needs chromium (Debian: apt-get install chromium)]'}`, () => {
  it('draws every chart with data, and writes a PNG of each', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtoe-report-'));
    dirs.push(dir);
    const written = await writeReport(dir, input);
    const ids = chartSpecs(input).map((c) => c.id);
    const dom = await chromium(['--dump-dom', '--virtual-time-budget=5000', pathToFileURL(join(dir, 'report.html')).href], join(dir, '.profile'));
    expect(renderProblems(dom, ids)).toEqual([]);
    expect(written.pngs).toEqual(ids.map((id) => `${id}.png`));
    for (const png of written.pngs) {
      const bytes = readFileSync(join(dir, png));
      expect(bytes.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
      expect(bytes.length).toBeGreaterThan(15_000); // a blank 948x568 PNG is a few KiB
    }
    for (const f of ['results.json', 'summary.md']) expect(readFileSync(join(dir, f), 'utf8').length).toBeGreaterThan(100);
  }, 120_000);

  it('the check fails on a page whose charts are not drawn, or have no data', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtoe-report-bad-'));
    dirs.push(dir);
    const ids = chartSpecs(input).map((c) => c.id);
    // the chart library removed: canvases are there, nothing is drawn
    const broken = reportHtml(input).replace(/<script>[^]*?<\/script>\s*<script>/, '<script>');
    writeFileSync(join(dir, 'broken.html'), broken);
    const dom = await chromium(['--dump-dom', '--virtual-time-budget=5000', pathToFileURL(join(dir, 'broken.html')).href], join(dir, '.profile'));
    expect(renderProblems(dom, ids)).toEqual(ids.map((id) => `${id}: no data points`).flatMap((p, i) => [p, `${ids[i]}: nothing drawn (never rendered)`]));
    // a report whose datasets are empty
    const empty = { ...input, results: input.results.map((w) => ({ ...w, modes: w.modes.map((m) => ({ ...m, series: { PingPong: [] }, figures: {} })) })) };
    writeFileSync(join(dir, 'empty.html'), reportHtml(empty, chartSpecs(input).map((c) => ({ ...c, datasets: c.datasets.map((d) => ({ ...d, points: d.points ? [] : undefined, values: d.values ? [] : undefined })) }))));
    const dom2 = await chromium(['--dump-dom', '--virtual-time-budget=5000', pathToFileURL(join(dir, 'empty.html')).href], join(dir, '.profile'));
    expect(renderProblems(dom2, ids).filter((p) => p.endsWith('no data points'))).toHaveLength(ids.length);
  }, 120_000);
});

describe('vtoe bench --from', () => {
  it("draws the report again from a run's results.json (docs/bench-example)", async () => {
    const { reportFromResults } = await import('../src/bench/bench-command.js');
    const dir = mkdtempSync(join(tmpdir(), 'vtoe-report-from-'));
    dirs.push(dir);
    const r = await reportFromResults(join(__dirname, '..', 'docs', 'bench-example', 'results.json'), dir);
    expect(r.markdown).toMatch(/\| HPL \(Gflop\/s\) \| [\d.]+ \| [\d.]+ \| [\d.]+ \|/);
    expect(r.markdown).toContain('Checks: every trial of every mode passed');
    expect(readFileSync(join(dir, 'summary.md'), 'utf8')).toBe(`${r.markdown}\n`);
    await expect(reportFromResults(join(__dirname, '..', 'package.json'), dir)).rejects.toThrow(/not a vtoe bench results.json/);
  }, 60_000);

  it('leaves the PNGs out with charts: false (no Chromium run), for --from to draw later', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtoe-report-nocharts-'));
    dirs.push(dir);
    const r = await writeReport(dir, input, { charts: false });
    expect(r.pngs).toEqual([]);
    expect(r.chartsFailed).toBeUndefined();
    expect(readdirSync(dir).sort()).toEqual(['report.html', 'results.json', 'summary.md']);
  });
});

describe('chart ids', () => {
  it('are safe file names', async () => {
    const { slug } = await import('../src/bench/report.js');
    expect(slug('sockperf-sockperf ping-pong (p50)-latency')).toBe('sockperf-sockperf-ping-pong-p50-latency');
    expect(slug('IMB-PingPong')).toBe('imb-pingpong');
  });
});

describe('report.html', () => {
  it('carries the ratio tables against ipoib and native under the charts', () => {
    const html = reportHtml(input);
    expect(html).toContain('<h1>test report</h1>');
    expect(html).toMatch(/<tr><td>PingPong<\/td><td>latency at 1 B \(µs\)<\/td><td>3\.50<\/td><td>1\.43× better<\/td><td>0\.14× worse<\/td><\/tr>/);
    expect(html).toMatch(/<th>offload vs ipoib<\/th><th>offload vs native<\/th>/);
    expect(html.indexOf('<canvas')).toBeLessThan(html.indexOf('<table>'));
  });
});
