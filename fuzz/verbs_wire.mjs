#!/usr/bin/env node
// Hostile input: the private data of an rdma_cm REQ, REP or REJ, which any host on the fabric
// can send to an agent's rdma_cm port with any bytes and length.  Every decode* function that
// src/agent/verbs-wire.ts exports gets every input; for any bytes it must return a well-formed
// value (fields in their ranges; encode* of it decodes to the same value, where the module
// has the matching one-argument encoder) or throw WireError, and nothing else.
//
// Jazzer.js cannot run here (its prebuilt addon needs glibc 2.38; Debian 12 has 2.36), so
// this is a seeded mutation loop with libFuzzer's command line and final statistics:
//   node fuzz/verbs_wire.mjs [-runs=N] [-seed=N] [-max_len=N] [-timeout=S]
//                            [-artifact_prefix=DIR/] [-module=PATH] [CORPUS_DIR | CRASH_FILE]...
// A new decoder (or encoder) exported by the module is fuzzed without any change here; a field
// with a range of its own gets a line in fieldRules.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isDeepStrictEqual } from 'node:util';

const here = dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const opts = { runs: -1, seed: Date.now() % 2 ** 31, max_len: 128, timeout: 10, artifact_prefix: './', print_final_stats: 1,
    module: join(here, '..', 'dist', 'agent', 'verbs-wire.js'), inputs: [] };
  for (const a of argv) {
    const m = /^-(\w+)=(.*)$/.exec(a);
    if (!m) opts.inputs.push(a);
    else if (m[1] in opts) opts[m[1]] = typeof opts[m[1]] === 'number' ? Number(m[2]) : m[2];
    else console.error(`WARNING: unknown option ${a} ignored`);
  }
  return opts;
}

// Ranges beyond "an unsigned 32-bit integer" for fields whose name says what they are.
const fieldRules = [
  [/port$/i, (v) => Number.isInteger(v) && v >= 0 && v <= 0xffff],
  [/credits$/i, (v) => Number.isInteger(v) && v >= 0 && v <= 0xffff],
  [/^ringSize$/, (v) => Number.isInteger(v) && v >= 4096 && v <= 64 * 2 ** 20 && (v & (v - 1)) === 0],
  [/address$/i, (v) => typeof v === 'string' && isIP(v) !== 0],
];

/** Why a decoded value is not well-formed, or ''. */
function malformed(value, path = 'value') {
  if (value === null) return '';
  if (typeof value === 'number') {
    return Number.isInteger(value) && value >= 0 && value <= 0xffffffff ? '' : `${path} = ${value} is not a u32`;
  }
  if (typeof value === 'bigint') return value >= 0n && value < 2n ** 64n ? '' : `${path} = ${value} is not a u64`;
  if (typeof value === 'string' || typeof value === 'boolean' || Buffer.isBuffer(value)) return '';
  if (typeof value !== 'object' || Array.isArray(value)) return `${path} has type ${typeof value}`;
  for (const [k, v] of Object.entries(value)) {
    for (const [re, ok] of fieldRules) if (re.test(k) && !ok(v)) return `${path}.${k} = ${String(v)} is out of range`;
    const inner = malformed(v, `${path}.${k}`);
    if (inner) return inner;
  }
  return '';
}

/** The decoders the module exports, each with its encoder when it has a one-argument one. */
function targets(wire) {
  return Object.keys(wire).filter((k) => /^decode[A-Z]/.test(k) && typeof wire[k] === 'function').sort().map((name) => {
    const enc = wire[`en${name.slice(2)}`];
    return { name, decode: wire[name], encode: typeof enc === 'function' && enc.length === 1 ? enc : null };
  });
}

/** Runs every decoder on one input: a failure message, or '' with the outcome's signature. */
function check(wire, decs, buf) {
  const sig = [];
  for (const d of decs) {
    let value;
    try {
      value = d.decode(Buffer.from(buf));
    } catch (e) {
      if (e instanceof wire.WireError) {
        sig.push(`${d.name}:${String(e.message).replace(/\d+/g, '#')}`);
        continue;
      }
      return { failure: `${d.name} threw ${e?.constructor?.name ?? typeof e}, not WireError: ${e?.stack ?? e}` };
    }
    const bad = malformed(value);
    if (bad) return { failure: `${d.name} returned a malformed value: ${bad}` };
    if (d.encode && value !== null) {
      let again;
      try {
        again = d.decode(d.encode(value));
      } catch (e) {
        return { failure: `${d.name}'s value does not survive encode and decode: ${e?.stack ?? e}` };
      }
      if (!isDeepStrictEqual(again, value)) {
        return { failure: `${d.name}'s value changes through encode and decode: ${JSON.stringify(value, big)} -> ${JSON.stringify(again, big)}` };
      }
    }
    sig.push(`${d.name}:ok:${value === null ? 'null' : Object.keys(value).length}:${value?.dstAddress?.includes(':') ? 6 : 4}:${value?.ringSize ?? ''}`);
  }
  return { failure: '', sig: `${Math.min(buf.length, 64) >> 2}|${sig.join('|')}` };
}

function big(_k, v) {
  return typeof v === 'bigint' ? `${v}n` : v;
}

// mulberry32: small, seeded, good enough to pick mutations.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const interesting8 = [0, 1, 4, 6, 11, 12, 26, 27, 0x7f, 0x80, 0xff];
const interesting32 = [0, 1, 0xffff, 0x10000, 0x7fffffff, 0x80000000, 0xffffffff];

function mutate(input, corpus, words, r, maxLen) {
  let b = Buffer.from(input);
  const pick = (n) => Math.floor(r() * n);
  for (let steps = 1 + pick(4); steps > 0; steps--) {
    const at = b.length ? pick(b.length) : 0;
    switch (pick(10)) {
      case 0: if (b.length) b[at] ^= 1 << pick(8); break;
      case 1: if (b.length) b[at] = pick(256); break;
      case 2: if (b.length) b[at] = interesting8[pick(interesting8.length)]; break;
      case 3: if (b.length >= 4) b.writeUInt32BE(interesting32[pick(interesting32.length)], pick(b.length - 3)); break;
      case 4: b = Buffer.concat([b.subarray(0, at), Buffer.from([pick(256)]), b.subarray(at)]); break;
      case 5: b = Buffer.concat([b.subarray(0, at), b.subarray(at + 1 + pick(4))]); break;
      case 6: b = b.subarray(0, pick(b.length + 1)); break;
      case 7: b = Buffer.concat([b, Buffer.from(Array.from({ length: 1 + pick(16) }, () => pick(256)))]); break;
      case 8: { // a piece of another input at the same offset
        const o = corpus[pick(corpus.length)];
        if (o.length > at) { const n = 1 + pick(o.length - at); b = Buffer.concat([b.subarray(0, at), o.subarray(at, at + n), b.subarray(at + n)]); }
        break;
      }
      default: { // a magic word the seeds start with
        const w = words[pick(words.length)];
        if (b.length < 4) b = Buffer.concat([b, Buffer.alloc(4 - b.length)]);
        w.copy(b, 0);
      }
    }
  }
  return b.subarray(0, maxLen);
}

function readInputs(paths) {
  const files = [];
  for (const p of paths) {
    if (statSync(p).isDirectory()) for (const f of readdirSync(p).sort()) files.push(readFileSync(join(p, f)));
    else files.push(readFileSync(p));
  }
  return files;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const wire = await import(pathToFileURL(resolve(opts.module)).href);
  const decs = targets(wire);
  if (!decs.length || typeof wire.WireError !== 'function') {
    console.error(`${opts.module} exports no decode* functions or no WireError`);
    process.exit(1);
  }
  const onlyFiles = opts.inputs.length > 0 && opts.inputs.every((p) => !statSync(p).isDirectory());
  const corpus = readInputs(opts.inputs);
  if (!corpus.length) corpus.push(Buffer.alloc(0));
  const words = [...new Set(corpus.filter((c) => c.length >= 4).map((c) => c.subarray(0, 4).toString('hex')))].map((h) => Buffer.from(h, 'hex'));
  if (!words.length) words.push(Buffer.alloc(4));
  console.error(`INFO: Seed: ${opts.seed}`);
  console.error(`INFO: decoders: ${decs.map((d) => d.name + (d.encode ? ' (round trip)' : '')).join(', ')}`);

  const started = process.hrtime.bigint();
  const seen = new Set();
  let runs = 0;
  let added = 0;
  let slowest = 0;
  const finish = (code) => {
    const secs = Number(process.hrtime.bigint() - started) / 1e9;
    console.error(`stat::number_of_executed_units: ${runs}`);
    console.error(`stat::average_exec_per_sec:     ${Math.round(runs / Math.max(secs, 1e-9))}`);
    console.error(`stat::new_units_added:          ${added}`);
    console.error(`stat::slowest_unit_time_sec:    ${Math.floor(slowest)}`);
    console.error(`stat::peak_rss_mb:              ${Math.round(process.resourceUsage().maxRSS / 1024)}`);
    if (code === 0) console.error(`Done ${runs} runs in ${Math.round(secs)} second(s)`);
    process.exit(code);
  };
  const runOne = (buf) => {
    const t0 = process.hrtime.bigint();
    const res = check(wire, decs, buf);
    const secs = Number(process.hrtime.bigint() - t0) / 1e9;
    runs++;
    slowest = Math.max(slowest, secs);
    const name = (kind) => `${opts.artifact_prefix}${kind}-${createHash('sha1').update(buf).digest('hex')}`;
    if (res.failure) {
      console.error(`==${process.pid}== ERROR: verbs_wire: ${res.failure}`);
      writeFileSync(name('crash'), buf);
      console.error(`Test unit written to ${name('crash')}\nBase64: ${Buffer.from(buf).toString('base64')}`);
      finish(77);
    }
    if (secs > opts.timeout) {
      console.error(`==${process.pid}== ERROR: libFuzzer: timeout after ${secs.toFixed(1)} seconds`);
      writeFileSync(name('timeout'), buf);
      finish(70);
    }
    return res.sig;
  };

  for (const c of corpus) seen.add(runOne(c));
  if (onlyFiles) {
    console.error(`Executed ${corpus.length} inputs`);
    finish(0);
  }
  const r = rng(opts.seed);
  while (opts.runs < 0 || runs < opts.runs) {
    const input = mutate(corpus[Math.floor(r() * corpus.length)], corpus, words, r, opts.max_len);
    const sig = runOne(input);
    if (!seen.has(sig) && corpus.length < 4096) { // a new outcome: keep it to mutate further
      seen.add(sig);
      corpus.push(input);
      added++;
    }
  }
  finish(0);
}

await main();
