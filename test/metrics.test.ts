// OpenMetrics output of the agent's counters: the text formatOpenMetrics writes, checked by a
// strict parser of the exposition format written here, then the agent's VTOE_METRICS_PORT
// endpoint and `vtoe stats --format openmetrics` against a live agent.
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { Agent } from '../src/agent/agent.js';
import { formatOpenMetrics } from '../src/metrics.js';
import { repoRoot } from './helpers/cc.js';
import { idleStats } from './helpers/idle-stats.js';
import { scratchPerTest } from './helpers/scratch.js';

interface ParsedSample { name: string; labels: Record<string, string>; value: number }
interface ParsedFamily { name: string; type?: string; unit?: string; help?: string; samples: ParsedSample[] }

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
// Only the types vtoe writes; histograms and the rest have sample names of their own.
const TYPES = ['counter', 'gauge', 'unknown'];
const ESCAPES: Record<string, string> = { '\\': '\\', '"': '"', n: '\n' };

/**
 * OpenMetrics 1.0.0 text, strictly: every family declared by # TYPE before its samples and
 * never again, counters' samples named _total with values >= 0, label syntax and escapes as
 * the ABNF has them, no label set twice in a family, and # EOF last. No timestamps or exemplars
 * (vtoe writes none).
 */
function parseOpenMetrics(text: string): Map<string, ParsedFamily> {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop(); // the newline after # EOF
  const eof = lines.indexOf('# EOF');
  if (eof < 0) throw new Error('no # EOF line');
  if (eof !== lines.length - 1) throw new Error(`text after # EOF: ${lines[eof + 1]}`);
  const families = new Map<string, ParsedFamily>();
  let current: ParsedFamily | undefined;
  for (const line of lines.slice(0, eof)) {
    if (line.startsWith('#')) {
      const m = /^# (TYPE|HELP|UNIT) (\S+) (.*)$/.exec(line);
      if (!m || !METRIC_NAME.test(m[2]!)) throw new Error(`not a TYPE, HELP or UNIT line: ${line}`);
      const [, keyword, name, rest] = m as unknown as [string, 'TYPE' | 'HELP' | 'UNIT', string, string];
      if (current?.name !== name) {
        if (families.has(name)) throw new Error(`family ${name} appears twice`);
        families.set(name, (current = { name, samples: [] }));
      } else if (current.samples.length) {
        throw new Error(`${keyword} of ${name} after its samples`);
      }
      const field = ({ TYPE: 'type', HELP: 'help', UNIT: 'unit' } as const)[keyword];
      if (current[field] !== undefined) throw new Error(`two ${keyword} lines for ${name}`);
      if (keyword === 'TYPE' && !TYPES.includes(rest)) throw new Error(`unknown type ${rest} of ${name}`);
      if (keyword === 'UNIT' && !name.endsWith(`_${rest}`)) throw new Error(`${name} does not end in its unit ${rest}`);
      current[field] = keyword === 'HELP' ? unescape(rest, line) : rest;
      continue;
    }
    const sample = parseSample(line);
    if (!current?.type || sample.name !== sampleName(current)) {
      if (current?.type === 'counter' && sample.name === current.name) throw new Error(`counter sample ${sample.name} does not end in _total`);
      const earlier = families.get(sample.name) ?? families.get(sample.name.replace(/_total$/, ''));
      if (earlier) throw new Error(`family ${earlier.name} appears twice: its samples are not together`);
      throw new Error(`sample ${sample.name} has no # TYPE`);
    }
    if (current.type === 'counter' && !(sample.value >= 0)) throw new Error(`counter ${sample.name} is ${sample.value}`);
    const labelSet = JSON.stringify(Object.entries(sample.labels).sort());
    if (current.samples.some((s) => JSON.stringify(Object.entries(s.labels).sort()) === labelSet)) {
      throw new Error(`${sample.name}${labelSet} twice`);
    }
    current.samples.push(sample);
  }
  return families;
}

function sampleName(f: ParsedFamily): string {
  return f.type === 'counter' ? `${f.name}_total` : f.name;
}

/** HELP text: the escapes \\ \" \n, and no bare double quote. */
function unescape(text: string, line: string): string {
  return text.replace(/\\(.?)|"/g, (all, e: string) => {
    const c = ESCAPES[e];
    if (c === undefined) throw new Error(`bad escape or quote in: ${line}`);
    return c;
  });
}

function parseSample(line: string): ParsedSample {
  const bad = (why: string) => new Error(`${why}: ${line}`);
  const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
  if (!name) throw bad('not a sample');
  const labels: Record<string, string> = {};
  let i = name.length;
  if (line[i] === '{') {
    i++;
    while (line[i] !== '}') {
      if (Object.keys(labels).length) {
        if (line[i] !== ',') throw bad('expected , or } between labels');
        i++;
      }
      const label = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(line.slice(i));
      if (!label) throw bad('bad label syntax');
      i += label[0].length;
      let value = '';
      for (let c = line[i++]; c !== '"'; c = line[i++]) {
        if (c === undefined) throw bad('unterminated label value');
        if (c === '\\') {
          const e = ESCAPES[line[i++] ?? ''];
          if (e === undefined) throw bad('bad escape in a label value');
          value += e;
        } else {
          value += c;
        }
      }
      if (label[1]! in labels) throw bad(`label ${label[1]} twice`);
      labels[label[1]!] = value;
    }
    i++;
  }
  const number = /^ ([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)$/.exec(line.slice(i));
  if (!number) throw bad('expected one space and a number after the name and labels');
  const v = number[1]!;
  return { name, labels, value: v.endsWith('Inf') ? (v[0] === '-' ? -Infinity : Infinity) : Number(v) };
}

/** The value of the sample with exactly these labels; undefined if there is none. */
function valueOf(families: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number | undefined {
  const want = JSON.stringify(Object.entries(labels).sort());
  for (const f of families.values()) {
    const s = f.samples.find((x) => x.name === name && JSON.stringify(Object.entries(x.labels).sort()) === want);
    if (s) return s.value;
  }
  return undefined;
}

describe('the OpenMetrics parser of this test', () => {
  it('reads a well-formed exposition', () => {
    const f = parseOpenMetrics('# TYPE a counter\n# HELP a say \\"hi\\"\na_total{x="1",y="q\\"\\\\\\n"} 3\n# TYPE b gauge\n# UNIT b_bytes bytes\n# TYPE b_bytes gauge\nb_bytes -1.5e3\n# EOF\n');
    expect(f.get('a')).toMatchObject({ type: 'counter', help: 'say "hi"' });
    expect(valueOf(f, 'a_total', { x: '1', y: 'q"\\\n' })).toBe(3);
    expect(f.get('b')?.samples).toEqual([]);
    expect(valueOf(f, 'b_bytes')).toBe(-1500);
  });

  it.each([
    ['a sample without # TYPE', 'x 1\n# EOF\n', /sample x has no # TYPE/],
    ['a sample of another family than the TYPE before it', '# TYPE x gauge\ny 1\n# EOF\n', /sample y has no # TYPE/],
    ['a counter sample without _total', '# TYPE x counter\nx 1\n# EOF\n', /counter sample x does not end in _total/],
    ['a family declared twice', '# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\n# TYPE x gauge\nx 2\n# EOF\n', /family x appears twice/],
    ['a family whose samples are apart', '# TYPE x gauge\nx{a="1"} 1\n# TYPE y gauge\ny 1\nx{a="2"} 2\n# EOF\n', /family x appears twice/],
    ['the same labels twice', '# TYPE x gauge\nx{a="1"} 1\nx{a="1"} 2\n# EOF\n', /twice/],
    ['an unquoted label value', '# TYPE x gauge\nx{a=1} 1\n# EOF\n', /bad label syntax/],
    ['a trailing comma', '# TYPE x gauge\nx{a="1",} 1\n# EOF\n', /bad label syntax/],
    ['an unknown escape', '# TYPE x gauge\nx{a="\\t"} 1\n# EOF\n', /bad escape/],
    ['no space before the value', '# TYPE x gauge\nx{a="1"}1\n# EOF\n', /expected one space/],
    ['a negative counter', '# TYPE x counter\nx_total -1\n# EOF\n', /counter x_total is -1/],
    ['no # EOF', '# TYPE x gauge\nx 1\n', /no # EOF/],
    ['text after # EOF', '# TYPE x gauge\nx 1\n# EOF\nx 2\n', /text after # EOF/],
    ['a blank line', '# TYPE x gauge\n\nx 1\n# EOF\n', /not a sample/],
  ])('rejects %s', (_what, text, error) => {
    expect(() => parseOpenMetrics(text)).toThrow(error);
  });
});

describe('formatOpenMetrics', () => {
  const oddName = 'q"uo\\te';
  const busy = idleStats({
    agent: { pid: 7, socket: '/s', uptimeSeconds: 3600 },
    processes: { connected: 3, seen: 11, protocolErrors: 2 },
    offloaded: 42,
    connections: { open: 5, pendingAccept: 1, timewait: 2 },
    fabrics: { shm: 'up', verbs: 'down: no RDMA device' },
    listeners: 4, kernelAccepted: 6, peerTimeouts: 1,
    fallback: { total: 5, reasons: { policy: 3, 'late-accept': 2 } },
    refused: { 'listen-unproven': 1 },
    programs: {
      [oddName]: { offloaded: 40, fallback: { policy: 3 } },
      sshd: { offloaded: 2, fallback: { 'late-accept': 2 } },
    },
    bytes: { sent: 123456789, received: 123450000 },
    doorbells: 9, ringGrowths: 1,
    events: { 'connect-response': 42, 'connect-error': 1 },
    memory: { ringBytes: 1 << 20, agentStateBytes: 2048 },
    pinned: { bytes: 2 << 20, limit: 512 << 20, peak: 4 << 20, ends: 4, refused: 3 },
    silentHosts: [{ host: '192.0.2.7', forMs: 30000 }, { host: '192.0.2.8', forMs: 100 }],
  });

  it('writes every counter under vtoe_ names with its labels', () => {
    const text = formatOpenMetrics(busy);
    expect(text.endsWith('\n# EOF\n')).toBe(true);
    const f = parseOpenMetrics(text);
    for (const family of f.values()) {
      expect(family.name).toMatch(/^vtoe_/);
      expect(family.help).toBeTruthy();
    }
    expect(valueOf(f, 'vtoe_offloaded_connections_total')).toBe(42);
    expect(valueOf(f, 'vtoe_connections', { state: 'pending_accept' })).toBe(1);
    expect(valueOf(f, 'vtoe_fallbacks_total', { reason: 'policy' })).toBe(3);
    expect(valueOf(f, 'vtoe_fallbacks_total', { reason: 'late-accept' })).toBe(2);
    expect(valueOf(f, 'vtoe_fallbacks_total', { reason: 'no-fabric' })).toBe(0); // known before it happens
    expect(valueOf(f, 'vtoe_refusals_total', { reason: 'listen-unproven' })).toBe(1);
    expect(valueOf(f, 'vtoe_refusals_total', { reason: 'foreign-netns' })).toBe(0);
    expect(valueOf(f, 'vtoe_payload_bytes_total', { direction: 'sent' })).toBe(123456789);
    expect(f.get('vtoe_payload_bytes')?.unit).toBe('bytes');
    expect(valueOf(f, 'vtoe_doorbell_wakeups_total')).toBe(9);
    expect(valueOf(f, 'vtoe_ring_growths_total')).toBe(1);
    expect(valueOf(f, 'vtoe_events_total', { event: 'connect-response' })).toBe(42);
    expect(valueOf(f, 'vtoe_processes_connected')).toBe(3);
    expect(valueOf(f, 'vtoe_protocol_errors_total')).toBe(2);
    expect(valueOf(f, 'vtoe_peer_timeouts_total')).toBe(1);
    expect(valueOf(f, 'vtoe_kernel_accepted_connections_total')).toBe(6);
    expect(valueOf(f, 'vtoe_listeners')).toBe(4);
    expect(valueOf(f, 'vtoe_fabric_up', { fabric: 'shm' })).toBe(1);
    expect(valueOf(f, 'vtoe_fabric_up', { fabric: 'verbs' })).toBe(0);
    expect(valueOf(f, 'vtoe_uptime_seconds')).toBe(3600);
    expect(valueOf(f, 'vtoe_ring_bytes')).toBe(1 << 20);
  });

  it('keeps a program name with quotes and backslashes intact through the escapes', () => {
    const text = formatOpenMetrics(busy);
    expect(text).toContain('vtoe_program_offloaded_connections_total{program="q\\"uo\\\\te"} 40');
    const f = parseOpenMetrics(text);
    expect(valueOf(f, 'vtoe_program_offloaded_connections_total', { program: oddName })).toBe(40);
    expect(valueOf(f, 'vtoe_program_fallbacks_total', { program: oddName, reason: 'policy' })).toBe(3);
    expect(valueOf(f, 'vtoe_program_fallbacks_total', { program: 'sshd', reason: 'late-accept' })).toBe(2);
    expect(valueOf(f, 'vtoe_program_fallbacks_total', { program: 'sshd', reason: 'policy' })).toBeUndefined();
  });

  it('shows pinned memory and held hosts when there are', () => {
    const f = parseOpenMetrics(formatOpenMetrics(busy));
    expect(valueOf(f, 'vtoe_pinned_bytes')).toBe(2 << 20);
    expect(valueOf(f, 'vtoe_pinned_limit_bytes')).toBe(512 << 20);
    expect(valueOf(f, 'vtoe_pinned_peak_bytes')).toBe(4 << 20);
    expect(valueOf(f, 'vtoe_pinned_connection_ends')).toBe(4);
    expect(valueOf(f, 'vtoe_pinned_refused_ends_total')).toBe(3);
    expect(valueOf(f, 'vtoe_silent_hosts')).toBe(2);
  });

  it('leaves out pinned memory without the verbs fabric, and counts no held hosts when the agent sent none', () => {
    const f = parseOpenMetrics(formatOpenMetrics(idleStats()));
    expect([...f.keys()].filter((name) => name.startsWith('vtoe_pinned'))).toEqual([]);
    expect(valueOf(f, 'vtoe_silent_hosts')).toBe(0);
    expect(valueOf(f, 'vtoe_offloaded_connections_total')).toBe(0);
    expect(f.get('vtoe_program_fallbacks')?.samples).toEqual([]);
  });
});

describe('a live agent', () => {
  const scratch = scratchPerTest();
  const exec = promisify(execFile);
  const vtoe = join(repoRoot, 'bin', 'vtoe.js');

  function listenLoopback(port = 0): Promise<Server> {
    const server = createServer();
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve(server));
    });
  }

  // A port nothing listens on: the kernel picks one, then it is given back.
  async function freePort(): Promise<number> {
    const server = await listenLoopback();
    const { port } = server.address() as { port: number };
    await new Promise((resolve) => server.close(resolve));
    return port;
  }

  it('serves /metrics on VTOE_METRICS_PORT, and vtoe stats --format openmetrics writes the same families', async () => {
    const socket = join(scratch.tempDir('vtoe-metrics-'), 'agent.sock');
    const port = await freePort();
    scratch.track(await Agent.start({ socketPath: socket, config: { metricsPort: port, fabric: 'shm' } }));
    const url = `http://127.0.0.1:${port}/metrics`;

    const res = await fetch(url);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8');
    const served = parseOpenMetrics(await res.text());
    expect(valueOf(served, 'vtoe_offloaded_connections_total')).toBe(0);
    expect(valueOf(served, 'vtoe_fabric_up', { fabric: 'shm' })).toBe(1);
    expect(valueOf(served, 'vtoe_fabric_up', { fabric: 'verbs' })).toBe(0);
    expect((await fetch(`http://127.0.0.1:${port}/`)).status).toBe(404);
    expect((await fetch(url, { method: 'POST' })).status).toBe(405);

    const { stdout } = await exec(process.execPath, [vtoe, 'stats', '--format', 'openmetrics', '--socket', socket]);
    const printed = parseOpenMetrics(stdout);
    expect([...printed.keys()]).toEqual([...served.keys()]);
    expect(valueOf(printed, 'vtoe_offloaded_connections_total')).toBe(0);
    await expect(exec(process.execPath, [vtoe, 'stats', '--format', 'yaml', '--socket', socket]))
      .rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/EINVAL: --format must be text, json or openmetrics, not yaml/) });
  });

  it('does not start on a port in use, names VTOE_METRICS_PORT and leaves nothing open', async () => {
    const socket = join(scratch.tempDir('vtoe-metrics-'), 'agent.sock');
    const taken = await listenLoopback();
    const { port } = taken.address() as { port: number };
    try {
      await expect(Agent.start({ socketPath: socket, config: { metricsPort: port, fabric: 'shm' } }))
        .rejects.toMatchObject({ code: 'EADDRINUSE', message: expect.stringMatching(new RegExp(`^VTOE_METRICS_PORT=${port}: .*another program`)) });
    } finally {
      taken.close();
    }
    // The failed agent let go of its control socket: another starts on it.
    scratch.track(await Agent.start({ socketPath: socket, config: { fabric: 'shm' } }));
  });
});
