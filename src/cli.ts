// The vtoe command line. It only parses arguments and calls the library.
import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { serveAgent } from './agent/service.js';
import { adminRequest } from './agent/admin.js';
import type { SocketRow } from './agent/socket-rows.js';
import type { StatsSnapshot } from './agent/stats.js';
import type { TransitionRecord } from './agent/event-log.js';
import { allMachines, toDot } from './cm/index.js';
import { adminSocketPath, formatConfig, resolveConfigWithSources } from './config.js';
import { runDemo } from './demo.js';
import { formatDoctor, runDoctor } from './doctor.js';
import { VtoeError } from './errors.js';
import { formatSocketRows, formatStats } from './format.js';
import { formatOpenMetrics } from './metrics.js';
import { PROFILES } from './profiles.js';
import { benchCommand, parseFlavour, parseHosts, parseImbBenchmarks, parseModes, parseWorkloads, reportFromResults } from './bench/bench-command.js';
import { formatTable } from './text-table.js';
import { runProgram, type RunMode } from './run.js';
import { formatUsage } from './commands.js';
import { moduleFile, shellEnv, systemSocket, systemUnit, userUnit } from './deploy-files.js';
import { offloadEnv } from './agent/preload-env.js';
import { thisInstallation } from './paths.js';

const USAGE = formatUsage();

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      socket: { type: 'string' },
      mode: { type: 'string', default: 'offload' },
      stats: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      format: { type: 'string', default: 'text' },
      dot: { type: 'boolean', default: false },
      reps: { type: 'string', default: '5' },
      cid: { type: 'string' },
      profile: { type: 'string' },
      workloads: { type: 'string', default: 'pingpong,hpcc' },
      modes: { type: 'string', default: 'offload,ipoib,native' },
      mpi: { type: 'string', default: 'openmpi' },
      ranks: { type: 'string', default: '2' },
      'max-bytes': { type: 'string', default: '4194304' },
      'hpcc-n': { type: 'string', default: '4000' },
      seconds: { type: 'string', default: '2' },
      iters: { type: 'string', default: '1000' },
      imb: { type: 'string' },
      'imb-benchmarks': { type: 'string' },
      iface: { type: 'string' },
      hosts: { type: 'string' },
      launcher: { type: 'string' },
      report: { type: 'string' },
      'no-charts': { type: 'boolean', default: false },
      from: { type: 'string' },
      system: { type: 'boolean', default: false },
      module: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const overrides = {
    ...(values.socket ? { agentSocket: values.socket } : {}),
    ...(values.profile !== undefined ? { profile: values.profile } : {}),
  };
  const { config, sources } = resolveConfigWithSources(process.env, overrides);
  const admin = adminSocketPath(config.agentSocket);
  const out = (s: string) => process.stdout.write(`${s}\n`);
  // Help never runs anything: `vtoe bench --help` must not start an hour of benchmarks.
  if (values.help || command === '--help' || command === '-h') {
    out(USAGE);
    return 0;
  }

  switch (command) {
    case 'run': {
      const mode = values.mode as RunMode;
      if (mode !== 'offload' && mode !== 'ipoib') throw new VtoeError('EINVAL', `--mode must be offload or ipoib, not ${mode}`);
      return runProgram(positionals, { mode, printStats: values.stats, config: overrides });
    }
    case 'agent':
      return serveAgent(overrides);
    case 'unit': {
      const here = thisInstallation(config.drainMs);
      process.stdout.write(values.system ? systemUnit(here) : userUnit(here));
      return 0;
    }
    case 'env': {
      const here = thisInstallation(config.drainMs);
      if (values.module !== undefined) {
        if (values.module !== 'lua' && values.module !== 'tcl') throw new VtoeError('EINVAL', `--module must be lua or tcl, not ${values.module}`);
        process.stdout.write(moduleFile(values.module, here, values.system));
        return 0;
      }
      const agentSocket = values.system ? systemSocket(userInfo().username) : config.agentSocket;
      process.stdout.write(shellEnv(offloadEnv(agentSocket).LD_PRELOAD!, agentSocket));
      return 0;
    }
    case 'ss': {
      const rows = await adminRequest<SocketRow[]>(admin, 'ss');
      out(values.json ? JSON.stringify(rows, null, 2) : formatSocketRows(rows));
      return 0;
    }
    case 'stats': {
      const format = values.format;
      if (format !== 'text' && format !== 'json' && format !== 'openmetrics') {
        throw new VtoeError('EINVAL', `--format must be text, json or openmetrics, not ${format}`);
      }
      // --json predates --format and still means json; with openmetrics it is a contradiction.
      if (values.json && format === 'openmetrics') throw new VtoeError('EINVAL', '--json and --format openmetrics contradict each other');
      const stats = await adminRequest<StatsSnapshot>(admin, 'stats');
      if (values.json || format === 'json') out(JSON.stringify(stats, null, 2));
      else if (format === 'openmetrics') process.stdout.write(formatOpenMetrics(stats));
      else out(formatStats(stats));
      return 0;
    }
    case 'events': {
      const events = await adminRequest<TransitionRecord[]>(admin, 'events', values.cid ? { cid: values.cid } : {});
      out(values.json ? JSON.stringify(events, null, 2) : formatTable([
        ['TIME', 'CID', 'SIDE', 'SID', 'MACHINE', 'FROM', 'EVENT', 'TO'],
        ...events.map((e) => [new Date(e.at).toISOString(), e.cid, e.side === 0 ? 'active' : 'passive',
          e.sid === null ? '-' : String(e.sid), e.machine, e.from, e.event, e.to]),
      ]));
      return 0;
    }
    case 'demo': {
      const reps = Number(values.reps);
      if (!Number.isInteger(reps) || reps < 1) throw new VtoeError('EINVAL', '--reps must be a positive integer');
      out(await runDemo({ reps, ppIters: 20000, streamSeconds: 1, onProgress: (l) => process.stderr.write(`${l}\n`) }));
      return 0;
    }
    case 'bench': {
      if (values.from) {
        if (!values.report) throw new VtoeError('EINVAL', '--from needs --report DIR');
        const again = await reportFromResults(values.from, values.report);
        out(again.markdown);
        if (!again.report.chartsFailed) return 0;
        process.stderr.write(`vtoe bench: the charts' PNGs were not rendered: ${again.report.chartsFailed}\n`);
        return 1;
      }
      const int = (v: string, what: string, min: number) => {
        const n = Number(v);
        if (!Number.isInteger(n) || n < min) throw new VtoeError('EINVAL', `--${what} must be an integer >= ${min}`);
        return n;
      };
      if (values.launcher && !values.hosts) throw new VtoeError('EINVAL', '--launcher starts ranks on other hosts: give --hosts too');
      const r = await benchCommand({
        workloads: parseWorkloads(values.workloads), modes: parseModes(values.modes), mpi: parseFlavour(values.mpi),
        reps: int(values.reps, 'reps', 1), ranks: int(values.ranks, 'ranks', 2), tcpInterface: values.iface,
        maxBytes: int(values['max-bytes'], 'max-bytes', 1), iters: int(values.iters, 'iters', 1), hpccMaxN: int(values['hpcc-n'], 'hpcc-n', 80),
        seconds: int(values.seconds, 'seconds', 1),
        imb: values.imb, report: values.report, charts: !values['no-charts'], timeoutMs: 600_000,
        ...(values['imb-benchmarks'] ? { imbBenchmarks: parseImbBenchmarks(values['imb-benchmarks']) } : {}),
        ...(values.hosts ? { hosts: parseHosts(values.hosts), launcher: values.launcher, agentSocket: config.agentSocket } : {}),
        onProgress: (l) => process.stderr.write(`${l}\n`),
      });
      out(r.markdown);
      if (r.report) process.stderr.write(`report: ${r.report.files.map((f) => `${r.report!.dir}/${f}`).join(' ')}\n`);
      if (r.report?.chartsFailed) {
        process.stderr.write(`vtoe bench: the charts' PNGs were not rendered (${r.report.chartsFailed}); render them with vtoe bench --from ${r.report.dir}/results.json --report DIR\n`);
      }
      const problems = r.results.flatMap((w) => w.modes.flatMap((m) => m.problems));
      return problems.length ? 1 : 0;
    }
    case 'cm': {
      if (values.dot) out(toDot([...allMachines]));
      else for (const m of allMachines) out(formatMachine(m));
      return 0;
    }
    case 'doctor': {
      const report = await runDoctor({ agentSocket: config.agentSocket });
      out(values.json ? JSON.stringify(report, null, 2) : formatDoctor(report));
      return report.problems.length === 0 ? 0 : 1;
    }
    case 'config':
      out(formatConfig(config, sources));
      return 0;
    case 'profiles':
      for (const [name, p] of Object.entries(PROFILES)) out(`${name}: ${p.doc}\n${p.rules.replace(/^/gm, '  ')}\n`);
      return 0;
    case undefined:
    case 'help':
      out(USAGE);
      return 0;
    default:
      process.stderr.write(`vtoe: unknown command '${command}'\n${USAGE}\n`);
      return 2;
  }
}

function formatMachine(m: (typeof allMachines)[number]): string {
  const rows = m.pairs()
    .filter((p) => p.outcome.kind === 'transition')
    .map((p) => [String(p.state), String(p.event), p.outcome.kind === 'transition' ? String(p.outcome.to) : '']);
  return `${m.spec.title}\n${formatTable([['STATE', 'EVENT', 'NEXT'], ...rows])}\n`;
}

// A reader that stops early (`vtoe cm | head`) is not an error, as for any Unix filter.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    const e = err as Error & { code?: string };
    process.stderr.write(`vtoe: ${e.code ? `${e.code}: ` : ''}${e.message}\n`);
    if (process.env.VTOE_LOG_LEVEL === 'debug' && e.stack) process.stderr.write(`${e.stack}\n`);
    process.exitCode = 1;
  },
);
