// The commands of `vtoe`, declared once: `vtoe --help` and the vtoe(1) man page are both written
// from this table, so they cannot drift apart. Pure data and formatting.

export interface CommandDoc {
  name: string;
  /** The arguments after the name, one string per printed line. */
  synopsis: readonly string[];
  doc: string;
}

export const COMMANDS: readonly CommandDoc[] = [
  { name: 'run', synopsis: ['[--mode offload|ipoib] [--profile NAME] [--stats] -- CMD [ARGS...]'],
    doc: 'run CMD with its TCP offloaded (embedded agent unless one is running; --profile sets VTOE_PROFILE for an '
      + 'embedded agent, e.g. mpi); with a standing agent a small C launcher sets LD_PRELOAD and VTOE_AGENT_SOCKET '
      + 'and execs CMD, without starting Node' },
  { name: 'agent', synopsis: ['[--profile NAME]'],
    doc: 'run the standing per-host agent (stop with SIGINT/SIGTERM: it drains its connections for at most '
      + 'VTOE_DRAIN_MS, then exits); under systemd, `vtoe unit` writes its unit (Type=notify: it says when it is '
      + 'ready); without, start `vtoe agent &` before the programs; see vtoe-agent(8)' },
  { name: 'profiles', synopsis: [], doc: 'the built-in policy profiles and their rules (vtoe-policy(5))' },
  { name: 'ss', synopsis: ['[--json]'], doc: 'one line per offloaded socket: SID, CID, fabric, TCP/CM/QP states, bytes (--json: also each verbs end\'s data path: positions, credits, sends out)' },
  { name: 'stats', synopsis: ['[--json] [--format text|json|openmetrics]'],
    doc: "the agent's counters: offloaded, fallbacks by reason, bytes (--format openmetrics: for Prometheus, as the "
      + 'agent serves them on VTOE_METRICS_PORT)' },
  { name: 'events', synopsis: ['[--cid N] [--json]'], doc: "the agent's log of state transitions" },
  { name: 'demo', synopsis: ['[--reps N]'], doc: 'offload vs kernel TCP, ping-pong latency and stream bandwidth' },
  { name: 'bench',
    synopsis: [
      '[--workloads pingpong,imb,hpcc,netpipe,nptcp,sockperf,iperf3,connect,syscalls] [--modes offload,ipoib,native] [--mpi openmpi|mpich]',
      '[--reps N] [--ranks N] [--max-bytes N] [--iters N] [--hpcc-n N] [--seconds N] [--imb PATH] [--imb-benchmarks PingPong,...]',
      '[--iface IF] [--report DIR [--no-charts]]',
      '[--hosts HERE,THERE,... --iface IF [--launcher PATH]]',
    ],
    doc: 'MPI workloads in each mode (fresh processes, modes alternated, medians); --report writes report.html, a PNG '
      + 'per chart (not with --no-charts: `--from` draws them later), results.json, summary.md; --hosts puts the ranks on those hosts in turn (this one first), started '
      + 'by --launcher (default ssh), over --iface (e.g. ib0); run it from a directory every host sees; the offload '
      + 'mode uses the standing agent on every host (--socket), not an embedded one; --seconds: how long each sockperf and iperf3 '
      + 'run lasts (default 2)' },
  { name: 'bench', synopsis: ['--from results.json --report DIR'], doc: "the report again from a run's results" },
  { name: 'cm', synopsis: ['[--dot]'], doc: 'the TCP, IB CM and QP state machines (as Graphviz with --dot)' },
  { name: 'config', synopsis: [], doc: 'the resolved configuration and where each value came from' },
  { name: 'env', synopsis: ['[--system] [--module lua|tcl]'],
    doc: 'shell lines that preload the shim for what follows (eval "$(vtoe env)"; then e.g. mpirun -x LD_PRELOAD '
      + '-x VTOE_AGENT_SOCKET), or an environment module (Lmod, Environment Modules) doing the same for a job; '
      + '--system: for the agents of vtoe unit --system' },
  { name: 'unit', synopsis: ['[--system]'],
    doc: "a systemd unit running the agent (Type=notify, bounded stop): the user's own (systemctl --user), or with "
      + '--system a template run by the system manager, one agent per user (vtoe@USER)' },
  { name: 'doctor', synopsis: ['[--json]'],
    doc: 'RDMA devices, ports, GIDs, memlock limit, agent; each problem with its fix (exit status 1 if it found a problem)' },
];

export const SOCKET_OPTION_DOC = 'Every command takes --socket PATH (default: $VTOE_AGENT_SOCKET, else '
  + '$XDG_RUNTIME_DIR/vtoe/agent.sock when that is your directory, else /tmp/vtoe-<uid>/agent.sock).';

/** Words of `text` in lines of at most `width` characters. */
export function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else {
      line = line ? `${line} ${word}` : word;
    }
  }
  if (line) lines.push(line);
  return lines;
}

const DOC_COLUMN = 22;
const WIDTH = 100;

/** `vtoe --help`. */
export function formatUsage(): string {
  const out = ['usage: vtoe <command> [options]', ''];
  for (const c of COMMANDS) {
    const [first = '', ...more] = c.synopsis;
    const head = `  ${c.name}${first ? ` ${first}` : ''}`;
    const doc = wrap(c.doc, WIDTH - DOC_COLUMN);
    const pad = ' '.repeat(DOC_COLUMN);
    if (!more.length && head.length < DOC_COLUMN - 1) {
      out.push(`${head.padEnd(DOC_COLUMN)}${doc[0] ?? ''}`, ...doc.slice(1).map((l) => pad + l));
    } else {
      out.push(head, ...more.map((l) => `        ${l}`), ...doc.map((l) => pad + l));
    }
  }
  out.push('', ...wrap(SOCKET_OPTION_DOC, WIDTH));
  return out.join('\n');
}
