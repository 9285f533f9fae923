// The one configuration table. Every setting has one VTOE_* variable, one default, one parser, and
// says who reads it; `vtoe config` prints this table with where each value came from.
import { statSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { ConfigError } from './errors.js';
import { isLogLevel, LOG_LEVELS, type LogLevel } from './log.js';
import { parsePolicy } from './policy.js';
import { PROFILE_NAMES } from './profiles.js';
import { formatTable } from './text-table.js';

export interface ResolvedConfig {
  agentSocket: string;
  ringSize: number;
  ringMaxSize: number;
  spinUs: number;
  verbsSpinUs: number;
  pollKernelUs: number;
  logLevel: LogLevel;
  logFile: string;
  policy: string;
  profile: string;
  timewaitMs: number;
  drainMs: number;
  maxConnections: number;
  pinnedMax: number;
  maxProcessSockets: number;
  maxPendingAccepts: number;
  shortBytes: number;
  shortMs: number;
  shortHoldMs: number;
  kernelHoldMs: number;
  silentHoldMs: number;
  agentTimeoutMs: number;
  offload: boolean;
  peerBells: boolean;
  fabric: FabricChoice;
  rdmaPort: number;
  rdmaAddress: string;
  peerTimeoutMs: number;
  clusterKeyFile: string;
  fabricTrusted: boolean;
  metricsPort: number;
}

/** Which fabric carries offloaded connections (VTOE_FABRIC). */
export const FABRIC_CHOICES = ['auto', 'shm', 'verbs'] as const;
export type FabricChoice = (typeof FABRIC_CHOICES)[number];

export type ConfigKey = keyof ResolvedConfig;
export type ConfigSource = 'env' | 'default' | 'override';

export interface ConfigEntry<K extends ConfigKey = ConfigKey> {
  key: K;
  env: string;
  default: ResolvedConfig[K];
  doc: string;
  readBy: 'agent' | 'shim' | 'both';
  /** Parses the variable's text; throws ConfigError naming `name` and what is allowed. */
  parse: (raw: string, name: string) => ResolvedConfig[K];
  /** Checks an already typed value (from an override); returns it or throws ConfigError. */
  check: (value: ResolvedConfig[K], name: string) => ResolvedConfig[K];
  /** A default that depends on the environment resolved (otherwise `default`). */
  defaultFor?: (env: NodeJS.ProcessEnv) => ResolvedConfig[K];
}

// sun_path holds 108 bytes with the NUL; the admin socket adds '.admin' to the agent socket path.
const SUN_PATH_MAX = 107;
const ADMIN_SUFFIX = '.admin';

export function adminSocketPath(agentSocket: string): string {
  return agentSocket + ADMIN_SUFFIX;
}

/**
 * $XDG_RUNTIME_DIR/vtoe/agent.sock when that is a directory of this user (a login session's
 * private runtime directory), else /tmp/vtoe-<uid>/agent.sock: the shim decides the same way.
 */
export function defaultAgentSocket(env: NodeJS.ProcessEnv = process.env): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : undefined;
  const xdg = env.XDG_RUNTIME_DIR;
  if (xdg?.startsWith('/') && uid !== undefined) {
    try {
      const st = statSync(xdg);
      if (st.isDirectory() && st.uid === uid) return join(xdg, 'vtoe', 'agent.sock');
    } catch {
      // gone or unreadable: the fallback below
    }
  }
  return `/tmp/vtoe-${uid ?? 'user'}/agent.sock`;
}

function intIn(lo: number, hi: number, unit: string) {
  const check = (v: number, name: string): number => {
    if (!Number.isSafeInteger(v) || v < lo || v > hi) {
      throw new ConfigError(`${name}=${v} is out of range: an integer number of ${unit}, ${lo}..${hi}`);
    }
    return v;
  };
  const parse = (raw: string, name: string): number => {
    if (!/^[+-]?\d+$/.test(raw.trim())) {
      throw new ConfigError(`${name}='${raw}' is not a whole number: expected ${unit}, ${lo}..${hi}`);
    }
    return check(Number(raw.trim()), name);
  };
  return { parse, check };
}

const RING_MIN = 4096;
const RING_MAX = 64 << 20;

function checkRingSize(v: number, name: string, shown = String(v)): number {
  if (!Number.isSafeInteger(v) || v < RING_MIN || v > RING_MAX || (v & (v - 1)) !== 0) {
    throw new ConfigError(`${name}=${shown} is not allowed: a power of two from 4k (4096) to 64m (67108864) bytes`);
  }
  return v;
}

const SIZE_SCALE = { '': 1, k: 1024, m: 1 << 20, g: 1 << 30 } as const;

/** Bytes, or a number with k, m or g; throws ConfigError naming `name` and `example`. */
function parseSize(raw: string, name: string, example: string): number {
  const m = /^(\d+)([kKmMgG]?)$/.exec(raw.trim());
  if (!m) throw new ConfigError(`${name}='${raw}' is not a size: write bytes, or a number with k, m or g (e.g. ${example})`);
  return Number(m[1]) * SIZE_SCALE[m[2]!.toLowerCase() as keyof typeof SIZE_SCALE];
}

function parseRingSize(raw: string, name: string): number {
  return checkRingSize(parseSize(raw, name, '256k'), name, `'${raw}'`);
}

function parseRingMaxSize(raw: string, name: string): number {
  return raw.trim() === '0' ? 0 : parseRingSize(raw, name);
}

function checkRingMaxSize(v: number, name: string): number {
  return v === 0 ? 0 : checkRingSize(v, name);
}

const PINNED_MAX_LIMIT = 2 ** 50;

function checkPinnedMax(v: number, name: string, shown = String(v)): number {
  if (!Number.isSafeInteger(v) || v < 0 || v > PINNED_MAX_LIMIT) {
    throw new ConfigError(`${name}=${shown} is out of range: bytes (a number, or with k, m or g), 0 for the default`);
  }
  return v;
}

function parsePinnedMax(raw: string, name: string): number {
  return checkPinnedMax(parseSize(raw, name, '512m'), name, `'${raw}'`);
}

const TRUE_WORDS = ['1', 'true', 'yes', 'on'];
const FALSE_WORDS = ['0', 'false', 'no', 'off'];

function checkBool(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw new ConfigError(`${name} must be true or false`);
  return v;
}

function parseBool(raw: string, name: string): boolean {
  const w = raw.trim().toLowerCase();
  if (TRUE_WORDS.includes(w)) return true;
  if (FALSE_WORDS.includes(w)) return false;
  throw new ConfigError(`${name}='${raw}' is not a boolean: use 1/0, true/false, yes/no or on/off`);
}

function checkLogLevel(v: LogLevel, name: string): LogLevel {
  if (!isLogLevel(v)) throw new ConfigError(`${name}='${String(v)}' is not a log level: use ${LOG_LEVELS.join(', ')}`);
  return v;
}

function checkSocketPath(v: string, name: string): string {
  if (!v.startsWith('/')) throw new ConfigError(`${name}='${v}' must be an absolute path`);
  if (Buffer.byteLength(adminSocketPath(v)) > SUN_PATH_MAX) {
    throw new ConfigError(`${name}='${v}' is too long for a Unix socket: at most ${SUN_PATH_MAX - ADMIN_SUFFIX.length} bytes`);
  }
  return v;
}

// Parse the rules now, so a bad policy stops the agent at start rather than on the first connect.
function checkPolicy(v: string, name: string): string {
  try {
    parsePolicy(v);
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(`${name}: ${err.message}`);
    throw err;
  }
  return v;
}

const asIs = <T>(v: T): T => v;

function checkProfile(v: string, name: string): string {
  if (v !== '' && !PROFILE_NAMES.includes(v)) {
    throw new ConfigError(`${name}='${v}' is not a profile: use ${PROFILE_NAMES.join(', ')}, or '' for none`);
  }
  return v;
}

function checkFabric(v: FabricChoice, name: string): FabricChoice {
  if (!FABRIC_CHOICES.includes(v)) {
    throw new ConfigError(`${name}='${String(v)}' is not a fabric choice: use ${FABRIC_CHOICES.join(', ')}`);
  }
  return v;
}

function checkIpAddress(v: string, name: string): string {
  if (v !== '' && isIP(v) === 0) throw new ConfigError(`${name}='${v}' is not an IP address ('' picks one)`);
  return v;
}

function entry<K extends ConfigKey>(e: ConfigEntry<K>): ConfigEntry<K> {
  return e;
}

export const CONFIG_TABLE: readonly ConfigEntry[] = [
  entry({ key: 'agentSocket', env: 'VTOE_AGENT_SOCKET', default: defaultAgentSocket({}), defaultFor: defaultAgentSocket,
    doc: "control socket of the agent; the shim connects here (default: $XDG_RUNTIME_DIR/vtoe/agent.sock when XDG_RUNTIME_DIR is this user's directory, else /tmp/vtoe-<uid>/agent.sock)", readBy: 'both',
    parse: checkSocketPath, check: checkSocketPath }),
  entry({ key: 'ringSize', env: 'VTOE_RING_SIZE', default: 262144,
    doc: "bytes per direction of each connection's shared ring; power of two, 4 KiB..64 MiB", readBy: 'agent',
    parse: parseRingSize, check: (v, name) => checkRingSize(v, name) }),
  entry({ key: 'ringMaxSize', env: 'VTOE_RING_MAX_SIZE', default: 4194304,
    doc: "bytes a connection's ring grows to once its reader has stalled (read nothing for 1 ms while a writer waits), as the kernel's socket buffers take more from a writer whose reader is not reading; a single write of at least VTOE_RING_SIZE bytes goes to a bulk area of 4 x VTOE_RING_SIZE (at most this), as they grow for a bulk sender (pages are used only once written; the ring returns to VTOE_RING_SIZE when empty); on the verbs fabric, whose rings are registered and keep their size, the agent buffers up to this much less VTOE_RING_SIZE per connection for a reader that lags (registered on demand, within a quarter of VTOE_PINNED_MAX); 0 or at most VTOE_RING_SIZE: never grows, unless the ends set buffers before connecting; on the shm fabric, SO_SNDBUF and SO_RCVBUF that the two ends set, before or after connecting, take a connection's rings further, to the writer's send buffer plus the reader's receive buffer as the kernel keeps them (at most 64 MiB; each ring reserves address space, not memory, for what net.core.wmem_max and rmem_max let a program ask)", readBy: 'agent',
    parse: parseRingMaxSize, check: checkRingMaxSize }),
  entry({ key: 'spinUs', env: 'VTOE_SPIN_US', default: 50,
    doc: 'microseconds a blocked call polls its ring before it sleeps, while that pays (a thread whose spins mostly find nothing sleeps at once); 0 never polls', readBy: 'agent',
    ...intIn(0, 10_000, 'microseconds') }),
  entry({ key: 'verbsSpinUs', env: 'VTOE_VERBS_SPIN_US', default: 50,
    doc: "microseconds the agent keeps polling verbs connections with traffic (completion queues, the processes' rings) after the last thing moved, before it sleeps again: no doorbell or wake-up per message while traffic flows, nothing used when idle; 0 never polls; not on a host with one CPU", readBy: 'agent',
    ...intIn(0, 10_000, 'microseconds') }),
  entry({ key: 'pollKernelUs', env: 'VTOE_POLL_KERNEL_US', default: 1000,
    doc: 'poll, select and epoll answer offloaded fds from the rings; kernel fds in the same set are asked at most this often (microseconds; at least a kernel clock tick; 0: every call) by a call that does not sleep, and on every call while the last answer held one of them ready', readBy: 'shim',
    ...intIn(0, 1_000_000, 'microseconds') }),
  entry({ key: 'logLevel', env: 'VTOE_LOG_LEVEL', default: 'warn' as LogLevel,
    doc: `log level: ${LOG_LEVELS.join('|')}`, readBy: 'both',
    parse: (raw, name) => checkLogLevel(raw.trim().toLowerCase() as LogLevel, name), check: checkLogLevel }),
  entry({ key: 'logFile', env: 'VTOE_LOG_FILE', default: '',
    doc: "file that log lines are appended to; '' means stderr", readBy: 'both',
    parse: asIs, check: asIs }),
  entry({ key: 'policy', env: 'VTOE_POLICY', default: '',
    doc: "policy rules separated by ';' (see policy.ts); '' offloads everything possible", readBy: 'agent',
    parse: checkPolicy, check: checkPolicy }),
  entry({ key: 'profile', env: 'VTOE_PROFILE', default: '',
    doc: `built-in policy rules applied after VTOE_POLICY's (\`vtoe profiles\` lists them): ${PROFILE_NAMES.join(', ')}; '' for none`,
    readBy: 'agent', parse: (raw, name) => checkProfile(raw.trim().toLowerCase(), name), check: checkProfile }),
  entry({ key: 'timewaitMs', env: 'VTOE_TIMEWAIT_MS', default: 2000,
    doc: "how long a closed connection's CM entry stays in TIMEWAIT", readBy: 'agent',
    ...intIn(0, 600_000, 'milliseconds') }),
  entry({ key: 'drainMs', env: 'VTOE_DRAIN_MS', default: 5000,
    doc: 'on SIGTERM/SIGINT the agent takes no new connections and waits at most this long for the open ones to close; those left on this host (shm) keep working between their processes, without the agent; those to other hosts (verbs), which the agent carries, are reset (ECONNRESET)', readBy: 'agent',
    ...intIn(0, 3_600_000, 'milliseconds') }),
  entry({ key: 'maxConnections', env: 'VTOE_MAX_CONNECTIONS', default: 4096,
    doc: 'offloaded connections the agent holds at once; beyond it new ones fall back to kernel TCP', readBy: 'agent',
    ...intIn(1, 1_048_576, 'connections') }),
  entry({ key: 'pinnedMax', env: 'VTOE_PINNED_MAX', default: 0,
    doc: "bytes of memory the agent may pin for verbs connections (each end registers its two rings and a page: 2 x VTOE_RING_SIZE + 4 KiB); a connection that does not fit at either end is made on kernel TCP (fallback resources) until others close; 0: a quarter of physical memory; never more than 3/4 of the agent's memlock limit (ulimit -l) unless it has CAP_IPC_LOCK. `vtoe stats` shows the budget in effect and its use", readBy: 'agent',
    parse: parsePinnedMax, check: (v, name) => checkPinnedMax(v, name) }),
  entry({ key: 'maxProcessSockets', env: 'VTOE_MAX_PROCESS_SOCKETS', default: 3072,
    doc: 'sockets one process holds in the agent at once (listeners and offloaded connection ends, waiting or not); beyond it its new ones fall back to kernel TCP, so that no process takes every connection or the memory of all', readBy: 'agent',
    ...intIn(1, 1_048_576, 'sockets') }),
  entry({ key: 'maxPendingAccepts', env: 'VTOE_MAX_PENDING_ACCEPTS', default: 4096,
    doc: "remote (verbs) connections one listener holds that its process has not accepted yet, as the kernel's accept queue; beyond it new ones fall back to kernel TCP", readBy: 'agent',
    ...intIn(1, 1_048_576, 'connections') }),
  entry({ key: 'shortBytes', env: 'VTOE_SHORT_BYTES', default: 16384,
    doc: 'a connection that moved at most this many bytes (both ways) and closed within VTOE_SHORT_MS is short: setting up its offload cost more than it saved; after 8 in a row to one listener, its new connections stay on kernel TCP for VTOE_SHORT_HOLD_MS (the shims do not even ask the agent), then one is offloaded again to look; 0: offload every connection', readBy: 'agent',
    ...intIn(0, 1 << 30, 'bytes') }),
  entry({ key: 'shortMs', env: 'VTOE_SHORT_MS', default: 1000,
    doc: 'see VTOE_SHORT_BYTES: milliseconds from the connect to the first close (a connection per request lives longer than its set-up: a PostgreSQL backend forked per connection, some 150 ms here)', readBy: 'agent',
    ...intIn(0, 60_000, 'milliseconds') }),
  entry({ key: 'shortHoldMs', env: 'VTOE_SHORT_HOLD_MS', default: 1000,
    doc: "see VTOE_SHORT_BYTES: how long a short listener's connections stay on kernel TCP before the next is offloaded to look again", readBy: 'agent',
    ...intIn(1, 3_600_000, 'milliseconds') }),
  entry({ key: 'kernelHoldMs', env: 'VTOE_KERNEL_HOLD_MS', default: 1000,
    doc: "after the agent answers a connect with kernel TCP because a policy rule says so, no fabric reaches the destination, or a server without the shim listens there, the process connects to that destination without asking again for this long (no bind, no round trip); then it asks again, so a server restarted with the shim is offloaded at most this much later; 0: ask every time", readBy: 'agent',
    ...intIn(0, 3_600_000, 'milliseconds') }),
  entry({ key: 'silentHoldMs', env: 'VTOE_SILENT_HOLD_MS', default: 30000,
    doc: 'a remote host that left a verbs REQ unanswered (no RDMA device there, or its fabric drops ours) gets kernel TCP at once for this long instead of a wait for each connect; then one connection tries again, and each silence doubles the hold, up to 16 times; any answer ends it; 0: try every connection', readBy: 'agent',
    ...intIn(0, 3_600_000, 'milliseconds') }),
  entry({ key: 'agentTimeoutMs', env: 'VTOE_AGENT_TIMEOUT_MS', default: 5000,
    doc: 'how long the shim waits for an agent reply before it falls back to kernel TCP', readBy: 'shim',
    ...intIn(1, 3_600_000, 'milliseconds') }),
  entry({ key: 'offload', env: 'VTOE_OFFLOAD', default: true,
    doc: '0 makes the shim pass every call to the kernel', readBy: 'shim',
    parse: parseBool, check: checkBool }),
  entry({ key: 'peerBells', env: 'VTOE_PEER_BELLS', default: true,
    doc: "1: an offloaded socket also holds its peer's doorbell (2 fds; a wake-up is one write), until the process runs out of fds, when sockets give theirs up rather than fail; 0: never (1 fd per socket, as kernel TCP; each wake-up of a sleeping peer goes through the agent)",
    readBy: 'shim', parse: parseBool, check: checkBool }),
  entry({ key: 'fabric', env: 'VTOE_FABRIC', default: 'auto' as FabricChoice,
    doc: 'auto: shm on this host, verbs (rdma_cm) to other hosts; verbs: verbs even on this host; shm: never verbs',
    readBy: 'agent',
    parse: (raw, name) => checkFabric(raw.trim().toLowerCase() as FabricChoice, name), check: checkFabric }),
  entry({ key: 'rdmaPort', env: 'VTOE_RDMA_PORT', default: 7471,
    doc: 'rdma_cm port (RDMA_PS_TCP) where agents listen for each other', readBy: 'agent',
    ...intIn(1, 65535, 'port numbers') }),
  entry({ key: 'rdmaAddress', env: 'VTOE_RDMA_ADDRESS', default: '',
    doc: "this host's address on its RDMA port, for verbs connections to itself; '' finds it", readBy: 'agent',
    parse: (raw, name) => checkIpAddress(raw.trim(), name), check: checkIpAddress }),
  entry({ key: 'peerTimeoutMs', env: 'VTOE_PEER_TIMEOUT_MS', default: 924_600,
    doc: "verbs fabric: how long data may go unacknowledged by a remote peer that fell silent before the connection ends with ETIMEDOUT, when the socket sets no TCP_USER_TIMEOUT (Linux's default tcp_retries2 of 15 gives about 15.4 minutes); SO_KEEPALIVE and TCP_USER_TIMEOUT work as on kernel TCP", readBy: 'agent',
    ...intIn(1000, 86_400_000, 'milliseconds') }),
  entry({ key: 'clusterKeyFile', env: 'VTOE_CLUSTER_KEY_FILE', default: '',
    doc: "file holding the cluster's shared secret (at least 32 bytes, mode 0600, the same on every host; e.g. head -c 32 /dev/urandom): agents prove it to each other on every verbs connection (HMAC-SHA256 over the CM private data and a fresh nonce); '' allows verbs connections within this host only, unless VTOE_FABRIC_TRUSTED=1",
    readBy: 'agent', parse: (raw) => raw.trim(), check: asIs }),
  entry({ key: 'fabricTrusted', env: 'VTOE_FABRIC_TRUSTED', default: false,
    doc: '1: without VTOE_CLUSTER_KEY_FILE, make and accept verbs connections to and from other hosts unauthenticated; declare it only for a fabric that nobody else can reach',
    readBy: 'agent', parse: parseBool, check: checkBool }),
  entry({ key: 'metricsPort', env: 'VTOE_METRICS_PORT', default: 0,
    doc: 'the agent serves its counters as OpenMetrics (for Prometheus) at http://127.0.0.1:PORT/metrics, on loopback only; 0: off', readBy: 'agent',
    ...intIn(0, 65535, 'port numbers') }),
] as ConfigEntry[];

export type ConfigSources = Record<ConfigKey, ConfigSource>;

// Lets formatConfig find the sources of a config that resolveConfig returned.
const sourcesOf = new WeakMap<ResolvedConfig, ConfigSources>();

/**
 * Resolves every setting: an override wins, then the environment, then the default. An empty
 * variable counts as unset. Throws ConfigError naming the variable and what it allows.
 */
export function resolveConfigWithSources(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<ResolvedConfig> = {},
): { config: ResolvedConfig; sources: ConfigSources } {
  const config: Record<string, unknown> = {};
  const sources: Record<string, ConfigSource> = {};
  for (const e of CONFIG_TABLE) {
    const override = overrides[e.key];
    const raw = env[e.env];
    if (override !== undefined) {
      config[e.key] = (e.check as (v: unknown, n: string) => unknown)(override, `override ${e.key}`);
      sources[e.key] = 'override';
    } else if (raw !== undefined && raw !== '') {
      config[e.key] = e.parse(raw, e.env);
      sources[e.key] = 'env';
    } else {
      config[e.key] = e.defaultFor ? e.defaultFor(env) : e.default;
      sources[e.key] = 'default';
    }
  }
  const result = { config: config as unknown as ResolvedConfig, sources: sources as ConfigSources };
  sourcesOf.set(result.config, result.sources);
  return result;
}

export function resolveConfig(
  env: NodeJS.ProcessEnv = process.env,
  overrides: Partial<ResolvedConfig> = {},
): ResolvedConfig {
  return resolveConfigWithSources(env, overrides).config;
}

function show(v: unknown): string {
  if (v === '') return "''";
  // Keep each row on one line; a multi-line policy shows its escapes.
  return typeof v === 'string' && /[\u0000-\u001f]/.test(v) ? JSON.stringify(v) : String(v);
}

/**
 * A table of every setting: variable, value, source, description. Sources come from the
 * resolve call that made `cfg`; for a config built elsewhere, a value equal to the default shows
 * as 'default' and any other as 'override'.
 */
export function formatConfig(cfg: ResolvedConfig, sources: Partial<ConfigSources> = sourcesOf.get(cfg) ?? {}): string {
  const rows = CONFIG_TABLE.map((e) => [
    e.env,
    show(cfg[e.key]),
    sources[e.key] ?? (cfg[e.key] === (e.defaultFor ? e.defaultFor(process.env) : e.default) ? 'default' : 'override'),
    `${e.doc} [${e.readBy}]`,
  ]);
  const header = ['VARIABLE', 'VALUE', 'SOURCE', 'MEANING [read by]'];
  return `${formatTable([header, ...rows])}\n`;
}
