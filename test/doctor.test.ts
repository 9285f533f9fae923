// `vtoe doctor`: (a) on this host, whose kernel has no RDMA; (b) in the Soft-RoCE guest
// (test/rdma-vm/, see rdma-vm.test.ts; VTOE_SKIP_RDMA_VM=1 skips it); (c) the problem rules
// against synthetic probes.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIX, findProblems, formatDoctor, parseMemlock, type DoctorReport } from '../src/doctor.js';
import type { VerbsProbe } from '../src/native.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'bin', 'vtoe.js');
const vmDir = join(root, 'test', 'rdma-vm');
const guestDir = process.env.VTOE_RXE_GUEST ?? '/tmp/vtoe-rxe-guest';
const skipVm = process.env.VTOE_SKIP_RDMA_VM === '1';
const hostHasRdma = existsSync('/sys/class/infiniband');

const noAgent = { socket: '/nonexistent/agent.sock.admin', running: false, error: 'ENOENT' };
const agentUp = { socket: '/tmp/x/agent.sock.admin', running: true };

function memlockOk(v: unknown): boolean {
  return v === 'unlimited' || (typeof v === 'number' && Number.isInteger(v) && v >= 0);
}

describe.skipIf(hostHasRdma)('vtoe doctor on a host without RDMA', () => {
  let work: string;
  beforeAll(() => { work = mkdtempSync(join(tmpdir(), 'vtoe-doctor-')); });
  afterAll(() => { rmSync(work, { recursive: true, force: true }); });

  it('--json: library loaded, no devices, the no-device fix, memlock parsed, exit 1', () => {
    const r = spawnSync(process.execPath, [cli, 'doctor', '--json'], {
      encoding: 'utf8',
      env: { ...process.env, VTOE_AGENT_SOCKET: join(work, 'agent.sock') },
      timeout: 30_000,
    });
    expect(r.status, r.stderr).toBe(1);
    const report = JSON.parse(r.stdout) as DoctorReport;
    expect(report.library.loaded).toBe(true);
    expect(report.devices).toEqual([]);
    const noDevice = report.problems.find((p) => p.what.startsWith('no RDMA device'));
    expect(noDevice?.fix).toBe(FIX.noDevice);
    expect(noDevice?.fix).toContain('modprobe rdma_rxe && rdma link add rxe0 type rxe netdev IFACE');
    expect(noDevice?.fix).toContain('test/rdma-vm/run.sh');
    expect(report.memlock).not.toBeNull();
    expect(memlockOk(report.memlock?.soft)).toBe(true);
    expect(memlockOk(report.memlock?.hard)).toBe(true);
    expect(report.agent).toMatchObject({ socket: join(work, 'agent.sock.admin'), running: false, error: 'ENOENT' });
    expect(report.problems.find((p) => p.fix === FIX.agent)).toBeDefined();
  }, 30_000);

  it('prints the human report and still exits 1', () => {
    const r = spawnSync(process.execPath, [cli, 'doctor'], {
      encoding: 'utf8',
      env: { ...process.env, VTOE_AGENT_SOCKET: join(work, 'agent.sock') },
      timeout: 30_000,
    });
    expect(r.status, r.stderr).toBe(1);
    expect(r.stdout).toContain('libibverbs: loaded');
    expect(r.stdout).toContain('RDMA devices: none');
    expect(r.stdout).toContain(`fix: ${FIX.noDevice}`);
  }, 30_000);
});

describe.skipIf(skipVm)('vtoe doctor in the Soft-RoCE guest', () => {
  let work: string;
  beforeAll(() => {
    const r = spawnSync(join(vmDir, 'setup-guest.sh'), [guestDir], { encoding: 'utf8', timeout: 900_000 });
    if (r.status !== 0) throw new Error(`setup-guest.sh failed (status ${r.status}):\n${r.stdout}${r.stderr}`);
    // The guest sees the host read-only and a fresh tmpfs on /tmp: the repository (which may
    // itself live under /tmp) must be the read-write directory, and the output inside it.
    mkdirSync(join(root, 'test', 'c', 'bin'), { recursive: true });
    work = mkdtempSync(join(root, 'test', 'c', 'bin', 'doctor-rxe-'));
  }, 900_000);
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('rxe0 opens, allocates a PD, port 1 is ACTIVE on Ethernet with the 192.0.2.1 GID', () => {
    const out = join(work, 'doctor.json');
    const script = `node '${cli}' doctor --json > '${out}'; echo "doctor-status=$?"`;
    const r = spawnSync(join(vmDir, 'run.sh'), ['-w', root, '--', 'sh', '-c', script], {
      cwd: root,
      encoding: 'utf8',
      env: { ...process.env, VTOE_RXE_GUEST: guestDir, VTOE_RXE_TIMEOUT: '150' },
      timeout: 170_000,
    });
    const console = `${r.stdout ?? ''}${r.stderr ?? ''}`;
    expect(r.status, console).toBe(0);
    // memlock is low in the guest and no agent runs there: problems, so doctor exits 1.
    expect(console).toMatch(/doctor-status=[01]\b/);
    const report = JSON.parse(readFileSync(out, 'utf8')) as DoctorReport;
    expect(report.library.loaded).toBe(true);
    const rxe = report.devices.find((d) => d.name === 'rxe0');
    expect(rxe, JSON.stringify(report.devices)).toBeDefined();
    expect(rxe?.guid).toMatch(/^[0-9a-f]{16}$/);
    expect(rxe?.canOpen).toBe(true);
    expect(rxe?.canAllocPd).toBe(true);
    const port = rxe?.ports.find((p) => p.port === 1);
    expect(port?.state).toBe('ACTIVE');
    expect(port?.linkLayer).toBe('Ethernet');
    expect(port?.activeMtu).toBeGreaterThan(0);
    // inet_ntop writes the IPv4-mapped GID as ::ffff:192.0.2.1 (= ::ffff:c000:201)
    expect(port?.gids.some((g) => /^::ffff:(192\.0\.2\.1|c000:201)$/.test(g.gid)), JSON.stringify(port?.gids)).toBe(true);
    expect(report.problems.find((p) => p.what.startsWith('no RDMA device'))).toBeUndefined();
    expect(report.problems.find((p) => p.what.includes('rxe0'))).toBeUndefined();
  }, 180_000);
});

describe('doctor problem rules (synthetic probes)', () => {
  const downPort: VerbsProbe = {
    library: { loaded: true },
    devices: [{
      name: 'mlx5_0', guid: '0123456789abcdef', transport: 'InfiniBand', canOpen: true, canAllocPd: true,
      ports: [
        { port: 1, state: 'ACTIVE', linkLayer: 'InfiniBand', activeMtu: 4096, gids: [{ index: 0, gid: 'fe80::1' }] },
        { port: 2, state: 'DOWN', linkLayer: 'InfiniBand', activeMtu: 0, gids: [] },
      ],
    }],
  };
  const eightMiB = { soft: 8 * 1024 * 1024, hard: 8 * 1024 * 1024 };

  it('a DOWN port', () => {
    const problems = findProblems(downPort, { soft: 'unlimited', hard: 'unlimited' }, agentUp);
    expect(problems).toEqual([{ what: 'port 2 of mlx5_0 is DOWN', fix: FIX.portNotActive }]);
    expect(FIX.portNotActive).toContain('check the cable/subnet manager (InfiniBand: opensm) or the netdev link');
  });

  it('a working device but the agent\'s verbs fabric down', () => {
    const down = { ...agentUp, verbs: 'down: rdma_cm is not available: No such device' };
    const problems = findProblems(downPort, { soft: 'unlimited', hard: 'unlimited' }, down);
    expect(problems).toContainEqual({ what: "the agent's verbs fabric is down: rdma_cm is not available: No such device", fix: FIX.verbsDown });
    const up = { ...agentUp, verbs: 'up on rdma_cm port 7471' };
    expect(findProblems(downPort, { soft: 'unlimited', hard: 'unlimited' }, up).some((p) => p.fix === FIX.verbsDown)).toBe(false);
    // Up, but without a cluster key: other hosts stay on kernel TCP, and the doctor says how to fix it.
    const alone = { ...agentUp, verbs: 'up on rdma_cm port 7471 (this host only: no VTOE_CLUSTER_KEY_FILE)' };
    expect(findProblems(downPort, { soft: 'unlimited', hard: 'unlimited' }, alone).map((p) => p.fix)).toContain(FIX.noClusterKey);
    const keyed = { ...agentUp, verbs: 'up on rdma_cm port 7471 (cluster key)' };
    expect(findProblems(downPort, { soft: 'unlimited', hard: 'unlimited' }, keyed).map((p) => p.fix)).not.toContain(FIX.noClusterKey);
  });

  it('memlock of 8 MiB', () => {
    const problems = findProblems(downPort, eightMiB, agentUp);
    const memlock = problems.find((p) => p.what.includes('memlock'));
    expect(memlock?.what).toContain('8 MiB');
    expect(memlock?.fix).toBe(FIX.memlock);
    expect(memlock?.fix).toContain('ulimit -l unlimited');
    expect(memlock?.fix).toContain('LimitMEMLOCK=infinity');
    expect(memlock?.fix).toContain('/etc/security/limits.conf');
    expect(memlock?.fix).toContain('only the agent registers memory');
    // 64 MiB and unlimited are enough; soft counts, not hard
    expect(findProblems(downPort, { soft: 64 * 1024 * 1024, hard: 'unlimited' }, agentUp).some((p) => p.what.includes('memlock'))).toBe(false);
    expect(findProblems(downPort, { soft: 'unlimited', hard: 'unlimited' }, agentUp).some((p) => p.what.includes('memlock'))).toBe(false);
  });

  it('libibverbs missing', () => {
    const probe: VerbsProbe = { library: { loaded: false, error: 'libibverbs.so.1: cannot open shared object file' }, devices: [] };
    const problems = findProblems(probe, { soft: 'unlimited', hard: 'unlimited' }, noAgent);
    expect(problems[0].what).toContain('libibverbs.so.1: cannot open shared object file');
    expect(problems[0].fix).toBe('apt-get install rdma-core ibverbs-providers');
    // no "no RDMA device" on top of a missing library
    expect(problems.some((p) => p.what.startsWith('no RDMA device'))).toBe(false);
    expect(problems[1]).toEqual({ what: `no agent answers at ${noAgent.socket} (ENOENT)`, fix: 'start one with `vtoe agent`' });
  });

  it('all three at once, and the text report lists each with its fix', () => {
    const probe: VerbsProbe = { library: { loaded: false, error: 'not found' }, devices: [] };
    const p1 = findProblems(probe, eightMiB, noAgent);
    const p2 = findProblems(downPort, eightMiB, noAgent);
    expect(p1.map((p) => p.fix)).toEqual([FIX.noLibrary, FIX.memlock, FIX.agent]);
    expect(p2.map((p) => p.fix)).toEqual([FIX.portNotActive, FIX.memlock, FIX.agent]);
    const text = formatDoctor({ ...downPort, memlock: eightMiB, agent: noAgent, problems: p2 });
    expect(text).toContain('port 2: DOWN');
    expect(text).toContain('3 problems:');
    for (const p of p2) expect(text).toContain(`fix: ${p.fix}`);
  });

  it('a device that cannot be opened: EACCES points at /dev/infiniband/uverbs*', () => {
    const probe: VerbsProbe = {
      library: { loaded: true },
      devices: [{ name: 'rxe0', guid: '0'.repeat(16), canOpen: false, openError: 'EACCES', canAllocPd: false, ports: [] }],
    };
    const problems = findProblems(probe, { soft: 'unlimited', hard: 'unlimited' }, agentUp);
    expect(problems).toHaveLength(1);
    expect(problems[0].what).toBe('cannot open rxe0: EACCES');
    expect(problems[0].fix).toContain('/dev/infiniband/uverbs');
    expect(problems[0].fix).toContain('udev');
  });

  it('parseMemlock reads /proc/self/limits', () => {
    expect(parseMemlock('Max locked memory         8388608              8388608              bytes     \n')).toEqual(eightMiB);
    expect(parseMemlock('Max locked memory         unlimited            unlimited            bytes\n')).toEqual({ soft: 'unlimited', hard: 'unlimited' });
    expect(parseMemlock('Max open files 1024 4096 files\n')).toBeNull();
    expect(parseMemlock(readFileSync('/proc/self/limits', 'utf8'))).not.toBeNull();
  });
});
