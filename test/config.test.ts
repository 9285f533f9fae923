import { describe, expect, it } from 'vitest';
import {
  adminSocketPath, CONFIG_TABLE, formatConfig, resolveConfig, resolveConfigWithSources, type ResolvedConfig,
} from '../src/config.js';
import { ConfigError } from '../src/errors.js';

function rejects(env: Record<string, string>, pattern: RegExp): void {
  let caught: unknown;
  try {
    resolveConfig(env);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ConfigError);
  expect((caught as ConfigError).code).toBe('EINVAL');
  expect((caught as Error).message).toMatch(pattern);
}

describe('config table', () => {
  it('declares each setting once, with VTOE_* names and docs', () => {
    const keys = CONFIG_TABLE.map((e) => e.key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(keys.sort()).toEqual(['agentSocket', 'agentTimeoutMs', 'clusterKeyFile', 'drainMs', 'fabric', 'fabricTrusted', 'kernelHoldMs', 'logFile', 'logLevel',
      'maxConnections', 'maxPendingAccepts', 'maxProcessSockets', 'metricsPort', 'offload', 'peerBells', 'peerTimeoutMs', 'pinnedMax', 'policy', 'pollKernelUs', 'profile', 'rdmaAddress', 'rdmaPort', 'ringMaxSize', 'ringSize', 'shortBytes', 'shortHoldMs', 'shortMs', 'silentHoldMs', 'spinUs', 'timewaitMs', 'verbsSpinUs']);
    for (const e of CONFIG_TABLE) {
      expect(e.env).toMatch(/^VTOE_[A-Z_]+$/);
      expect(e.doc.length).toBeGreaterThan(5);
      expect(['agent', 'shim', 'both']).toContain(e.readBy);
    }
  });

  it('resolves the defaults from an empty environment', () => {
    const uid = process.getuid!();
    expect(resolveConfig({})).toEqual({
      agentSocket: `/tmp/vtoe-${uid}/agent.sock`, ringSize: 262144, ringMaxSize: 4194304, spinUs: 50, verbsSpinUs: 50, pollKernelUs: 1000, logLevel: 'warn', logFile: '',
      policy: '', profile: '', timewaitMs: 2000, drainMs: 5000, maxConnections: 4096, maxProcessSockets: 3072, shortBytes: 16384, shortMs: 1000,
      shortHoldMs: 1000, kernelHoldMs: 1000, silentHoldMs: 30000, agentTimeoutMs: 5000, offload: true, peerBells: true, fabric: 'auto', rdmaPort: 7471, rdmaAddress: '',
      clusterKeyFile: '', fabricTrusted: false, maxPendingAccepts: 4096, peerTimeoutMs: 924_600, pinnedMax: 0,
      metricsPort: 0,
    } satisfies ResolvedConfig);
  });

  it('treats an empty variable as unset', () => {
    const { config, sources } = resolveConfigWithSources({ VTOE_RING_SIZE: '', VTOE_OFFLOAD: '' });
    expect(config.ringSize).toBe(262144);
    expect(sources.ringSize).toBe('default');
  });

  it('reads every variable from the environment', () => {
    const cfg = resolveConfig({
      VTOE_AGENT_SOCKET: '/run/vtoe/a.sock', VTOE_RING_SIZE: '1048576', VTOE_RING_MAX_SIZE: '8m', VTOE_SPIN_US: '0', VTOE_VERBS_SPIN_US: '20', VTOE_POLL_KERNEL_US: '250',
      VTOE_LOG_LEVEL: 'DEBUG', VTOE_LOG_FILE: '/tmp/x.log', VTOE_POLICY: 'tcp both sshd *:*',
      VTOE_TIMEWAIT_MS: '0', VTOE_DRAIN_MS: '750', VTOE_MAX_CONNECTIONS: '1', VTOE_MAX_PROCESS_SOCKETS: '7', VTOE_AGENT_TIMEOUT_MS: '250', VTOE_OFFLOAD: 'off',
      VTOE_SHORT_BYTES: '0', VTOE_SHORT_MS: '3', VTOE_SHORT_HOLD_MS: '50', VTOE_KERNEL_HOLD_MS: '0', VTOE_SILENT_HOLD_MS: '0',
      VTOE_PEER_BELLS: 'no', VTOE_FABRIC: 'Verbs', VTOE_RDMA_PORT: '18515', VTOE_RDMA_ADDRESS: '192.0.2.1', VTOE_PROFILE: 'MPI',
      VTOE_CLUSTER_KEY_FILE: ' /etc/vtoe/key ', VTOE_FABRIC_TRUSTED: 'yes', VTOE_MAX_PENDING_ACCEPTS: '9',
      VTOE_PEER_TIMEOUT_MS: '5000', VTOE_PINNED_MAX: '3g', VTOE_METRICS_PORT: '9464',
    });
    expect(cfg).toEqual({
      agentSocket: '/run/vtoe/a.sock', ringSize: 1048576, ringMaxSize: 8 << 20, spinUs: 0, verbsSpinUs: 20, pollKernelUs: 250, logLevel: 'debug', logFile: '/tmp/x.log',
      policy: 'tcp both sshd *:*', profile: 'mpi', timewaitMs: 0, drainMs: 750, maxConnections: 1, maxProcessSockets: 7, shortBytes: 0, shortMs: 3,
      shortHoldMs: 50, kernelHoldMs: 0, silentHoldMs: 0, agentTimeoutMs: 250, offload: false,
      peerBells: false, fabric: 'verbs', rdmaPort: 18515, rdmaAddress: '192.0.2.1',
      clusterKeyFile: '/etc/vtoe/key', fabricTrusted: true, maxPendingAccepts: 9, peerTimeoutMs: 5000,
      pinnedMax: 3 * 2 ** 30, metricsPort: 9464,
    });
  });

  it('adminSocketPath appends .admin', () => {
    expect(adminSocketPath('/tmp/vtoe-1/agent.sock')).toBe('/tmp/vtoe-1/agent.sock.admin');
  });
});

describe('parsers', () => {
  it('fabric, rdma port and address are checked', () => {
    rejects({ VTOE_FABRIC: 'tcp4' }, /VTOE_FABRIC='tcp4' is not a fabric choice: use auto, shm, verbs/);
    rejects({ VTOE_RDMA_PORT: '0' }, /VTOE_RDMA_PORT=0 is out of range/);
    rejects({ VTOE_RDMA_ADDRESS: 'rxe0' }, /VTOE_RDMA_ADDRESS='rxe0' is not an IP address/);
    rejects({ VTOE_PROFILE: 'hpc' }, /VTOE_PROFILE='hpc' is not a profile: use mpi/);
  });

  it('ring size accepts bytes and k/m suffixes', () => {
    expect(resolveConfig({ VTOE_RING_SIZE: '256k' }).ringSize).toBe(262144);
    expect(resolveConfig({ VTOE_RING_SIZE: '4K' }).ringSize).toBe(4096);
    expect(resolveConfig({ VTOE_RING_SIZE: '64M' }).ringSize).toBe(64 << 20);
    expect(resolveConfig({ VTOE_RING_SIZE: '2m' }).ringSize).toBe(2 << 20);
    expect(resolveConfig({ VTOE_RING_SIZE: '8192' }).ringSize).toBe(8192);
  });

  it('the largest ring size is 0 (never grow) or a ring size', () => {
    expect(resolveConfig({ VTOE_RING_MAX_SIZE: '0' }).ringMaxSize).toBe(0);
    expect(resolveConfig({ VTOE_RING_MAX_SIZE: '16m' }).ringMaxSize).toBe(16 << 20);
    rejects({ VTOE_RING_MAX_SIZE: '3m' }, /VTOE_RING_MAX_SIZE='3m' is not allowed: a power of two/);
    rejects({ VTOE_RING_MAX_SIZE: 'big' }, /VTOE_RING_MAX_SIZE='big' is not a size/);
  });

  it('ring size rejects non powers of two, out-of-range sizes and junk', () => {
    rejects({ VTOE_RING_SIZE: '3000' }, /VTOE_RING_SIZE='3000' .*power of two/);
    rejects({ VTOE_RING_SIZE: '100k' }, /VTOE_RING_SIZE='100k'.*power of two/);
    rejects({ VTOE_RING_SIZE: '1k' }, /VTOE_RING_SIZE='1k'.*4k/);
    rejects({ VTOE_RING_SIZE: '128m' }, /64m/);
    rejects({ VTOE_RING_SIZE: '1g' }, /VTOE_RING_SIZE='1g' is not allowed: .*64m/);
    rejects({ VTOE_RING_SIZE: '0' }, /VTOE_RING_SIZE/);
    rejects({ VTOE_RING_SIZE: '256kb' }, /not a size/);
    rejects({ VTOE_RING_SIZE: '-4096' }, /not a size/);
    rejects({ VTOE_RING_SIZE: '0x1000' }, /not a size/);
  });

  it('the pinned-memory budget is bytes with k/m/g, 0 for the default', () => {
    expect(resolveConfig({ VTOE_PINNED_MAX: '512m' }).pinnedMax).toBe(512 << 20);
    expect(resolveConfig({ VTOE_PINNED_MAX: '64K' }).pinnedMax).toBe(65536);
    expect(resolveConfig({ VTOE_PINNED_MAX: '1000000' }).pinnedMax).toBe(1_000_000);
    expect(resolveConfig({ VTOE_PINNED_MAX: '0' }).pinnedMax).toBe(0);
    rejects({ VTOE_PINNED_MAX: '1t' }, /VTOE_PINNED_MAX='1t' is not a size/);
    rejects({ VTOE_PINNED_MAX: '-1' }, /not a size/);
    rejects({ VTOE_PINNED_MAX: '2000000g' }, /VTOE_PINNED_MAX='2000000g' is out of range/);
    expect(() => resolveConfig({}, { pinnedMax: -1 })).toThrow(/override pinnedMax=-1 is out of range/);
  });

  it('spin accepts 0..10000 and rejects the rest', () => {
    expect(resolveConfig({ VTOE_SPIN_US: '10000' }).spinUs).toBe(10000);
    expect(resolveConfig({ VTOE_SPIN_US: ' 7 ' }).spinUs).toBe(7);
    rejects({ VTOE_SPIN_US: '-1' }, /VTOE_SPIN_US=-1 is out of range.*0\.\.10000/);
    rejects({ VTOE_SPIN_US: '10001' }, /VTOE_SPIN_US/);
    rejects({ VTOE_SPIN_US: '1.5' }, /not a whole number/);
    rejects({ VTOE_SPIN_US: 'fast' }, /not a whole number/);
  });

  it('other integers have ranges', () => {
    rejects({ VTOE_MAX_CONNECTIONS: '0' }, /VTOE_MAX_CONNECTIONS=0 is out of range/);
    rejects({ VTOE_MAX_PROCESS_SOCKETS: '0' }, /VTOE_MAX_PROCESS_SOCKETS=0 is out of range/);
    rejects({ VTOE_AGENT_TIMEOUT_MS: '0' }, /VTOE_AGENT_TIMEOUT_MS=0 is out of range/);
    rejects({ VTOE_SHORT_HOLD_MS: '0' }, /VTOE_SHORT_HOLD_MS=0 is out of range/);
    rejects({ VTOE_SILENT_HOLD_MS: '-1' }, /VTOE_SILENT_HOLD_MS=-1/);
    rejects({ VTOE_SHORT_BYTES: '-1' }, /VTOE_SHORT_BYTES/);
    rejects({ VTOE_TIMEWAIT_MS: '-5' }, /VTOE_TIMEWAIT_MS/);
    rejects({ VTOE_TIMEWAIT_MS: '99999999999999999999' }, /VTOE_TIMEWAIT_MS/);
    rejects({ VTOE_METRICS_PORT: '65536' }, /VTOE_METRICS_PORT=65536 is out of range/);
  });

  it('log level accepts the four levels only', () => {
    for (const l of ['error', 'warn', 'info', 'debug']) expect(resolveConfig({ VTOE_LOG_LEVEL: l }).logLevel).toBe(l);
    rejects({ VTOE_LOG_LEVEL: 'trace' }, /VTOE_LOG_LEVEL='trace'.*error, warn, info, debug/);
  });

  it('booleans accept 1/0/true/false/yes/no/on/off', () => {
    for (const [raw, v] of [['1', true], ['0', false], ['true', true], ['FALSE', false], ['yes', true],
      ['no', false], ['On', true], ['off', false]] as const) {
      expect(resolveConfig({ VTOE_OFFLOAD: raw }).offload).toBe(v);
    }
    rejects({ VTOE_OFFLOAD: 'maybe' }, /VTOE_OFFLOAD='maybe'.*yes\/no/);
  });

  it('policy is parsed up front', () => {
    rejects({ VTOE_POLICY: 'tcp bth * *:*' }, /VTOE_POLICY: policy line 1, column 5: unknown role/);
  });

  it('agent socket must be absolute and fit in sun_path with .admin', () => {
    rejects({ VTOE_AGENT_SOCKET: 'agent.sock' }, /absolute/);
    rejects({ VTOE_AGENT_SOCKET: '/' + 'a'.repeat(101) }, /too long.*101 bytes/);
    expect(resolveConfig({ VTOE_AGENT_SOCKET: '/' + 'a'.repeat(100) }).agentSocket).toHaveLength(101);
  });
});

describe('sources and formatting', () => {
  it('records env, default and override', () => {
    const { config, sources } = resolveConfigWithSources({ VTOE_SPIN_US: '5', VTOE_RING_SIZE: '8k' }, { ringSize: 16384 });
    expect(config.spinUs).toBe(5);
    expect(config.ringSize).toBe(16384);
    expect(sources.spinUs).toBe('env');
    expect(sources.ringSize).toBe('override');
    expect(sources.logLevel).toBe('default');
  });

  it('checks overrides too', () => {
    expect(() => resolveConfig({}, { ringSize: 5000 })).toThrow(ConfigError);
    expect(() => resolveConfig({}, { spinUs: -1 })).toThrow(/override spinUs/);
    expect(() => resolveConfig({}, { logLevel: 'loud' as never })).toThrow(ConfigError);
  });

  it('formatConfig lists every variable with its value and source', () => {
    const cfg = resolveConfig({ VTOE_SPIN_US: '5', VTOE_POLICY: 'tcp both a *:*\ntcp both b *:*' }, { maxConnections: 8 });
    const text = formatConfig(cfg);
    const lines = text.trimEnd().split('\n');
    expect(lines).toHaveLength(CONFIG_TABLE.length + 1);
    for (const e of CONFIG_TABLE) expect(text).toContain(e.env);
    expect(lines.find((l) => l.startsWith('VTOE_SPIN_US'))).toMatch(/^VTOE_SPIN_US +5 +env +microseconds/);
    expect(lines.find((l) => l.startsWith('VTOE_MAX_CONNECTIONS'))).toMatch(/ 8 +override /);
    expect(lines.find((l) => l.startsWith('VTOE_RING_SIZE'))).toMatch(/ 262144 +default /);
    expect(lines.find((l) => l.startsWith('VTOE_POLICY'))).toContain('"tcp both a *:*\\ntcp both b *:*"');
  });

  it('formatConfig of a hand-built config infers default or override', () => {
    const cfg = { ...resolveConfig({}), spinUs: 9 };
    const lines = formatConfig(cfg).split('\n');
    expect(lines.find((l) => l.startsWith('VTOE_SPIN_US'))).toMatch(/ 9 +override /);
    expect(lines.find((l) => l.startsWith('VTOE_OFFLOAD'))).toMatch(/ true +default /);
  });
});
