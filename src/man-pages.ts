// The man pages, written from the declared tables (commands, configuration, policy grammar and
// profiles), so that `man vtoe`, `vtoe --help` and `vtoe config` say the same: vtoe(1), the
// agent vtoe-agent(8), and the policy rules vtoe-policy(5). Pure: roff text.
import { COMMANDS, SOCKET_OPTION_DOC } from './commands.js';
import { CONFIG_TABLE, type ConfigEntry } from './config.js';
import { POLICY_GRAMMAR } from './policy.js';
import { PROFILES } from './profiles.js';

export interface ManPage {
  /** e.g. 'vtoe-agent' */
  name: string;
  section: 1 | 5 | 8;
  text: string;
}

/** Text as roff: backslashes escaped, hyphens as minus signs, no line taken for a request. */
function roff(text: string): string {
  return text
    .replaceAll('\\', '\\e')
    .replaceAll('-', '\\-')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}

function header(name: string, section: number, version: string, title: string, summary: string): string[] {
  return [
    `.TH ${name.toUpperCase()} ${section} "" "vtoe ${version}" "${title}"`,
    '.SH NAME',
    `${roff(name)} \\- ${roff(summary)}`,
  ];
}

const paragraph = (text: string) => ['.PP', roff(text)];
const item = (tag: string, text: string) => ['.TP', `.B ${roff(tag)}`, roff(text)];
const example = (lines: string[]) => ['.PP', '.nf', '.RS 4', ...lines.map(roff), '.RE', '.fi'];

function defaultText(e: ConfigEntry): string {
  if (e.defaultFor) return 'see the description';
  return e.default === '' ? '(none)' : String(e.default);
}

function environment(read: (e: ConfigEntry) => boolean): string[] {
  return ['.SH ENVIRONMENT', ...CONFIG_TABLE.filter(read).flatMap((e) =>
    item(e.env, `(default: ${defaultText(e)}; read by the ${e.readBy === 'both' ? 'agent and the shim' : e.readBy}) ${e.doc}`))];
}

function vtoe1(version: string): string[] {
  return [
    ...header('vtoe', 1, version, 'User Commands', 'a virtual TCP offload engine for unmodified programs'),
    '.SH SYNOPSIS',
    '.B vtoe',
    '.I command',
    '[\\fIoptions\\fR]',
    '.SH DESCRIPTION',
    ...paragraph('vtoe moves the TCP connections of unmodified Linux programs (MPI ranks, servers, benchmarks) off the '
      + "kernel's TCP stack: a preloaded library, libvtoe.so, intercepts their socket calls, and a per-host agent "
      + 'sets up a shadow connection for each socket, over shared-memory rings between two processes of one host, '
      + 'or RDMA queue pairs between hosts. Programs keep TCP\'s meaning: the bytes, their order, the errors and '
      + 'the wake-ups. Whatever cannot be offloaded stays on kernel TCP.'),
    '.SH COMMANDS',
    ...COMMANDS.flatMap((c) => item([c.name, ...c.synopsis].join(' '), c.doc)),
    ...paragraph(SOCKET_OPTION_DOC),
    ...environment(() => true),
    '.SH EXAMPLES',
    ...example([
      'vtoe agent &',
      'vtoe run -- iperf3 -s &',
      'vtoe run -- iperf3 -c 127.0.0.1',
      'eval "$(vtoe env)"; mpirun -x LD_PRELOAD -x VTOE_AGENT_SOCKET --mca btl self,tcp ./app',
    ]),
    '.SH SEE ALSO',
    'vtoe\\-agent(8), vtoe\\-policy(5), ld.so(8), tcp(7)',
  ];
}

function vtoeAgent8(version: string): string[] {
  return [
    ...header('vtoe-agent', 8, version, 'System Administration', 'the per-host agent of vtoe'),
    '.SH SYNOPSIS',
    '.B vtoe agent',
    '[\\fB\\-\\-profile\\fR \\fINAME\\fR] [\\fB\\-\\-socket\\fR \\fIPATH\\fR]',
    '.SH DESCRIPTION',
    ...paragraph('The agent sets up and watches the offloaded connections of the processes of its own user on this '
      + 'host: it applies the policy (vtoe-policy(5)), runs the TCP, InfiniBand CM and queue-pair state machines of '
      + 'each connection, makes the shared rings and the RDMA queue pairs, and ends a connection as TCP would when '
      + 'every process holding it has closed it or died. The processes find it at VTOE_AGENT_SOCKET; they talk '
      + 'only to an agent of their own user. vtoe ss, vtoe stats and vtoe events read it through its admin socket, '
      + 'the same path with .admin added.'),
    '.SH SIGNALS',
    ...item('SIGTERM, SIGINT', 'Offload nothing new, wait at most VTOE_DRAIN_MS for the open connections to close, '
      + 'then exit 0. Connections left on this host go on between their processes without the agent; those to '
      + 'other hosts, which the agent carries, are reset.'),
    '.SH SERVICE',
    ...paragraph('Under systemd the agent is a Type=notify service: it sends READY=1 once its socket answers and '
      + 'STOPPING=1 when it starts to drain; its messages go to stderr, so to the journal. vtoe unit writes a unit '
      + "for the user's own manager (systemctl --user); vtoe unit --system writes a template run by the system "
      + 'manager, one agent per user (systemctl enable --now vtoe@USER), whose socket /run/vtoe-USER/agent.sock '
      + "the user's jobs name with vtoe env --system or an environment module (vtoe env --module lua|tcl)."),
    ...example(['vtoe unit > ~/.config/systemd/user/vtoe.service', 'systemctl --user daemon-reload',
      'systemctl --user enable --now vtoe']),
    ...paragraph('Without systemd: vtoe agent & in a session or a job script, before the programs start.'),
    ...environment((e) => e.readBy !== 'shim'),
    '.SH SEE ALSO',
    'vtoe(1), vtoe\\-policy(5), systemd.service(5)',
  ];
}

function vtoePolicy5(version: string): string[] {
  return [
    ...header('vtoe-policy', 5, version, 'File Formats', 'which sockets vtoe offloads'),
    '.SH DESCRIPTION',
    ...paragraph('VTOE_POLICY holds rules, checked by the agent for every listen and connect: the first rule that '
      + 'matches decides, and a socket no rule matches is offloaded. A profile (VTOE_PROFILE) adds its rules after '
      + "the user's, so the user's own rules always win."),
    '.SH GRAMMAR',
    ...POLICY_GRAMMAR.flatMap(([term, definition]) => item(term, definition)),
    '.SH PROFILES',
    ...Object.entries(PROFILES).flatMap(([name, p]) => [...item(name, p.doc), '.nf', '.RS 4', roff(p.rules), '.RE', '.fi']),
    '.SH EXAMPLES',
    ...example(["VTOE_POLICY='tcp both sshd *:*; offload connect * 127.0.0.0/8:1024-65535'"]),
    '.SH SEE ALSO',
    'vtoe(1), vtoe\\-agent(8)',
  ];
}

export function manPages(version: string): ManPage[] {
  const page = (name: string, section: ManPage['section'], lines: string[]): ManPage => ({ name, section, text: `${lines.join('\n')}\n` });
  return [page('vtoe', 1, vtoe1(version)), page('vtoe-agent', 8, vtoeAgent8(version)), page('vtoe-policy', 5, vtoePolicy5(version))];
}
