#!/usr/bin/env node
// Offload vs kernel TCP: the same ping-pong and stream workloads through vtoe and over plain
// kernel TCP on loopback, with an embedded agent. Needs the built package (dist/).
//
//   node bench/offload-vs-tcp.mjs [--reps 7] [--pp-size 64] [--pp-iters 20000]
//                                 [--stream-seconds 2] [--stream-size 65536] [--fabric shm|verbs] [--json]
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = `usage: node bench/offload-vs-tcp.mjs [options]
  --reps N             repetitions, each running every workload once per mode (default 7)
  --pp-size BYTES      ping-pong message size (default 64)
  --pp-iters N         timed round trips per ping-pong run (default 20000)
  --stream-seconds S   seconds of streaming per run (default 2)
  --stream-size BYTES  bytes per write in the stream runs (default 65536)
  --fabric F           shm (default): shared rings on this host; verbs: RC queue pairs through
                       rdma_cm even on this host (needs an RDMA device, e.g. Soft-RoCE)
  --json               print the full comparison as JSON on stdout (the table goes to stderr)
  -h, --help           this text`;

function fail(message) {
  process.stderr.write(`offload-vs-tcp: ${message}\n`);
  process.exit(2);
}

function parseOptions(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        reps: { type: 'string', default: '7' },
        'pp-size': { type: 'string', default: '64' },
        'pp-iters': { type: 'string', default: '20000' },
        'stream-seconds': { type: 'string', default: '2' },
        'stream-size': { type: 'string', default: '65536' },
        fabric: { type: 'string', default: 'shm' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    fail(`${err.message}\n${USAGE}`);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const int = (name, min, max) => {
    const s = values[name];
    const v = Number(s);
    if (!/^\d+$/.test(s) || !Number.isSafeInteger(v) || v < min || v > max) {
      fail(`--${name} must be an integer in [${min}, ${max}], got '${s}'`);
    }
    return v;
  };
  const seconds = Number(values['stream-seconds']);
  if (!(Number.isFinite(seconds) && seconds > 0 && seconds <= 3600)) {
    fail(`--stream-seconds must be a number in (0, 3600], got '${values['stream-seconds']}'`);
  }
  if (!['shm', 'verbs'].includes(values.fabric)) fail(`--fabric must be shm or verbs, got '${values.fabric}'`);
  return {
    fabric: values.fabric,
    reps: int('reps', 1, 1000),
    ppSize: int('pp-size', 1, 64 * 1024 * 1024),
    ppIters: int('pp-iters', 1, 100_000_000),
    streamSeconds: seconds,
    streamSize: int('stream-size', 1, 64 * 1024 * 1024),
    json: values.json,
  };
}

async function loadDist() {
  try {
    const [{ Agent }, { compareOffloadVsTcp }, { formatComparison }, paths] = await Promise.all([
      import('../dist/agent/agent.js'),
      import('../dist/bench/compare.js'),
      import('../dist/bench/format.js'),
      import('../dist/paths.js'),
    ]);
    return { Agent, compareOffloadVsTcp, formatComparison, paths };
  } catch (err) {
    fail(`cannot load the compiled package (${err.message}): run 'npm install' or 'npm run build' first`);
  }
}

// The RDMA devices the verbs runs use, for the label: rxe* is Soft-RoCE, i.e. emulation.
function verbsDevices() {
  let names = [];
  try {
    names = readdirSync('/sys/class/infiniband');
  } catch {
    // no sysfs entry: label it generically
  }
  const soft = names.some((n) => n.startsWith('rxe'));
  return `${names.join(', ') || 'RDMA'}${soft ? ', Soft-RoCE' : ''}`;
}

async function main() {
  const opts = parseOptions(process.argv.slice(2));
  const { Agent, compareOffloadVsTcp, formatComparison, paths } = await loadDist();
  try {
    paths.assertBuilt(paths.toolPath('vtoe-pingpong'));
    paths.assertBuilt(paths.libvtoePath);
  } catch (err) {
    fail(err.message);
  }

  const dir = mkdtempSync(join(tmpdir(), 'vtoe-bench-'));
  const cleanupDir = () => rmSync(dir, { recursive: true, force: true });
  let agent;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      if (agent) await agent.stop();
    } finally {
      cleanupDir();
    }
  };
  const onSignal = (sig) => {
    process.stderr.write(`offload-vs-tcp: ${sig}, stopping the agent\n`);
    stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  try {
    agent = await Agent.start({ socketPath: join(dir, 'agent.sock'), config: { fabric: opts.fabric } });
    const verbsStatus = agent.stats().fabrics.verbs;
    if (opts.fabric === 'verbs' && !verbsStatus.startsWith('up')) fail(`no verbs fabric: ${verbsStatus}`);
    const labels = opts.fabric === 'verbs'
      ? { offload: `offload (vtoe verbs fabric, ${verbsDevices()})`, ipoib: 'ipoib (kernel TCP over lo)' }
      : undefined;
    const s = opts.streamSeconds;
    const total = opts.reps * 2 * 2;
    process.stderr.write(`offload-vs-tcp: agent at ${agent.socketPath}; ${total} runs `
      + `(${opts.reps} reps x 2 modes x pp+stream, about ${Math.ceil(opts.reps * 2 * s)} s of streaming)\n`);
    const comparison = await compareOffloadVsTcp({
      agentSocket: agent.socketPath,
      reps: opts.reps,
      ppSize: opts.ppSize,
      ppIters: opts.ppIters,
      streamSize: opts.streamSize,
      streamSeconds: opts.streamSeconds,
      agentStats: () => agent.stats(),
      labels,
      onProgress: (line) => process.stderr.write(`  ${line}\n`),
    });
    const memory = agent.memoryPerConnection();
    const stats = agent.stats();
    const table = formatComparison(comparison, memory);
    if (opts.json) {
      process.stderr.write(`${table}\n`);
      process.stdout.write(`${JSON.stringify({ comparison, memoryPerConnection: memory, agentStats: stats }, null, 2)}\n`);
    } else {
      process.stdout.write(`${table}\n`);
    }
    const check = comparison.offloadCheck;
    if (check && (check.trialsNotOffloaded > 0 || check.fallbacks > 0)) process.exitCode = 1;
  } finally {
    await stop();
  }
}

main().catch((err) => {
  process.stderr.write(`offload-vs-tcp: ${err?.stack ?? err}\n`);
  process.exit(1);
});
