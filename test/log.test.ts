import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi, type MockInstance } from 'vitest';
import { createLogger, formatRecord, isLogLevel } from '../src/log.js';

const T = new Date('2025-01-02T03:04:05.678Z');
const now = (): Date => T;

let dir: string;
let stdout: MockInstance;
let stderr: MockInstance;
let errLines: string[];

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vtoe-log-'));
  errLines = [];
  stdout = vi.spyOn(process.stdout, 'write');
  stderr = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    errLines.push(String(chunk));
    return true;
  });
});

afterEach(() => {
  // Nothing a logger does may reach stdout.
  expect(stdout).not.toHaveBeenCalled();
  vi.restoreAllMocks();
  rmSync(dir, { recursive: true, force: true });
});

describe('log', () => {
  it('isLogLevel knows the four levels', () => {
    for (const l of ['error', 'warn', 'info', 'debug']) expect(isLogLevel(l)).toBe(true);
    for (const x of ['trace', 'WARN', '', 3, undefined]) expect(isLogLevel(x)).toBe(false);
  });

  it('writes one formatted line per record to stderr', () => {
    const log = createLogger({ level: 'info', component: 'agent', now });
    log.info('started', { pid: 42, socket: '/tmp/a b.sock', ok: true, gone: undefined, n: null });
    expect(errLines).toEqual([
      '2025-01-02T03:04:05.678Z info agent: started pid=42 socket="/tmp/a b.sock" ok=true n=null\n',
    ]);
  });

  it.each([
    ['error', ['error']],
    ['warn', ['error', 'warn']],
    ['info', ['error', 'warn', 'info']],
    ['debug', ['error', 'warn', 'info', 'debug']],
  ] as const)('level %s writes %j', (level, expected) => {
    const log = createLogger({ level, component: 'c', now });
    log.error('e');
    log.warn('w');
    log.info('i');
    log.debug('d');
    expect(errLines.map((l) => l.split(' ')[1])).toEqual(expected);
    expect(log.enabled('debug')).toBe(level === 'debug');
    expect(log.enabled('error')).toBe(true);
  });

  it('appends to the file and not to stderr', () => {
    const file = join(dir, 'vtoe.log');
    const log = createLogger({ level: 'warn', component: 'shim', file, now });
    log.warn('first', { sid: 1 });
    log.info('filtered');
    log.child('cm').error('second');
    expect(readFileSync(file, 'utf8')).toBe(
      '2025-01-02T03:04:05.678Z warn shim: first sid=1\n2025-01-02T03:04:05.678Z error cm: second\n');
    expect(stderr).not.toHaveBeenCalled();
  });

  it('falls back to stderr once when the file cannot be written', () => {
    const log = createLogger({ level: 'warn', component: 'a', file: join(dir, 'missing', 'x.log'), now });
    log.warn('one');
    log.warn('two');
    expect(errLines).toHaveLength(3);
    expect(errLines[0]).toMatch(/error log: cannot append to .*logging to stderr err=/);
    expect(errLines.slice(1)).toEqual([
      '2025-01-02T03:04:05.678Z warn a: one\n', '2025-01-02T03:04:05.678Z warn a: two\n',
    ]);
  });

  it('keeps records on one line and formats values', () => {
    const err = Object.assign(new Error('peer went away'), { code: 'ECONNRESET' });
    const line = formatRecord(T, 'error', 'x', 'bad\nthing', { err, obj: { a: [1] }, s: 'a=b', big: 10n, empty: '' });
    expect(line).toBe(
      '2025-01-02T03:04:05.678Z error x: bad\\nthing err="ECONNRESET: peer went away" obj={"a":[1]} s="a=b" big=10 empty=""\n');
    expect(line.indexOf('\n')).toBe(line.length - 1);
  });

  it('rejects an unknown level', () => {
    expect(() => createLogger({ level: 'loud' as never, component: 'x' })).toThrow(RangeError);
  });
});
