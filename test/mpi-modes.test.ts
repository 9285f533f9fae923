// How `vtoe bench` launches MPI jobs, on one host and across hosts (pure argument building).
import { describe, expect, it } from 'vitest';
import { BENCH_MODES, mpiLaunch, type MpiJob } from '../src/bench/mpi-modes.js';
import { modeLabels, parseHosts, parseImbBenchmarks, tcpInterfaceOf, type BenchCommandOptions } from '../src/bench/bench-command.js';
import { imbArgs, rankEnvOf } from '../src/bench/workloads.js';

const preload = { LD_PRELOAD: '/opt/vtoe/libvtoe.so', VTOE_AGENT_SOCKET: '/run/vtoe/agent.sock' };
const across: Partial<MpiJob> = { hosts: ['n1', 'n2'], launcher: '/opt/bin/rsh', rankEnv: preload };

/** The value after each occurrence of a flag. */
function valuesOf(argv: readonly string[], flag: string): string[] {
  return argv.flatMap((a, i) => (a === flag ? [argv[i + 1]!] : []));
}

describe('one host', () => {
  it('Open MPI: the TCP BTL on the interface for offload and ipoib, vader for native, nothing about hosts', () => {
    for (const mode of ['offload', 'ipoib'] as const) {
      const l = mpiLaunch({ flavour: 'openmpi', mode, ranks: 2, tcpInterface: 'lo' });
      expect(l.argv).toEqual(['mpirun.openmpi', '--allow-run-as-root', '--oversubscribe', '-np', '2',
        '--mca', 'pml', 'ob1', '--mca', 'btl', 'self,tcp', '--mca', 'btl_tcp_if_include', 'lo']);
      expect(l.env).toEqual({});
    }
    const native = mpiLaunch({ flavour: 'openmpi', mode: 'native', ranks: 4, tcpInterface: 'lo' });
    expect(valuesOf(native.argv, '--mca')).toEqual(['pml', 'btl']);
    expect(native.argv).toContain('self,vader');
    expect(native.argv).not.toContain('--host');
  });

  it("MPICH: UCX's tcp transport on the interface, even between local ranks; native adds nothing", () => {
    const tcp = mpiLaunch({ flavour: 'mpich', mode: 'offload', ranks: 2, tcpInterface: 'ib0' });
    expect(tcp.argv).toEqual(['mpirun.mpich', '-np', '2']);
    expect(tcp.env).toEqual({ UCX_TLS: 'tcp,self', UCX_NET_DEVICES: 'ib0', MPIR_CVAR_NOLOCAL: '1' });
    expect(mpiLaunch({ flavour: 'mpich', mode: 'native', ranks: 2, tcpInterface: 'ib0' }).env).toEqual({});
  });
});

describe('across hosts', () => {
  it('Open MPI: hosts with their share of slots, one rank per node in turn, the launcher, the preload with -x', () => {
    const l = mpiLaunch({ flavour: 'openmpi', mode: 'offload', ranks: 4, tcpInterface: 'ib0', ...across });
    expect(valuesOf(l.argv, '--host')).toEqual(['n1:2,n2:2']);
    expect(valuesOf(l.argv, '--map-by')).toEqual(['node']);
    expect(valuesOf(l.argv, '--mca')).toEqual(['plm_rsh_agent', 'pml', 'btl', 'btl_tcp_if_include']);
    expect(l.argv[l.argv.indexOf('plm_rsh_agent') + 1]).toBe('/opt/bin/rsh');
    expect(valuesOf(l.argv, '-x')).toEqual(['LD_PRELOAD=/opt/vtoe/libvtoe.so', 'VTOE_AGENT_SOCKET=/run/vtoe/agent.sock']);
    expect(l.transport).toBe('Open MPI TCP BTL over ib0 across 2 hosts');
  });

  it('Open MPI: an odd rank count still fits; ssh by default; native leaves the transport to Open MPI', () => {
    const l = mpiLaunch({ flavour: 'openmpi', mode: 'native', ranks: 3, tcpInterface: 'ib0', hosts: ['a', 'b'] });
    expect(valuesOf(l.argv, '--host')).toEqual(['a:2,b:2']);
    expect(valuesOf(l.argv, '--mca')).toEqual(['plm_rsh_agent']);
    expect(l.argv[l.argv.indexOf('plm_rsh_agent') + 1]).toBe('ssh');
    expect(valuesOf(l.argv, '-x')).toEqual([]);
    expect(l.transport).toBe("Open MPI's own choice of transport across 2 hosts");
  });

  it('MPICH: Hydra with the hosts, ranks per host, the launcher as ssh, the preload with -genv', () => {
    const l = mpiLaunch({ flavour: 'mpich', mode: 'offload', ranks: 2, tcpInterface: 'eth0', ...across });
    expect(l.argv.slice(0, 3)).toEqual(['mpirun.mpich', '-np', '2']);
    expect(valuesOf(l.argv, '-hosts')).toEqual(['n1,n2']);
    expect(valuesOf(l.argv, '-ppn')).toEqual(['1']);
    expect(valuesOf(l.argv, '-launcher')).toEqual(['ssh']);
    expect(valuesOf(l.argv, '-launcher-exec')).toEqual(['/opt/bin/rsh']);
    const genv = l.argv.flatMap((a, i) => (a === '-genv' ? [`${l.argv[i + 1]}=${l.argv[i + 2]}`] : []));
    expect(genv).toEqual(['LD_PRELOAD=/opt/vtoe/libvtoe.so', 'VTOE_AGENT_SOCKET=/run/vtoe/agent.sock']);
    expect(l.env.UCX_NET_DEVICES).toBe('eth0');
  });

  it('every mode of both MPIs names the hosts in its transport', () => {
    for (const flavour of ['openmpi', 'mpich'] as const) {
      for (const mode of BENCH_MODES) {
        expect(mpiLaunch({ flavour, mode, ranks: 2, tcpInterface: 'ib0', hosts: ['a', 'b'] }).transport).toMatch(/across 2 hosts$/);
      }
    }
  });
});

describe('what the ranks carry across hosts', () => {
  it('the preload and every VTOE_ setting, only when the trial is offloaded', () => {
    const env = { ...preload, VTOE_SPIN_US: '0', PATH: '/usr/bin', HOME: '/root' };
    expect(rankEnvOf(env)).toEqual({ ...preload, VTOE_SPIN_US: '0' });
    expect(rankEnvOf({ PATH: '/usr/bin', VTOE_SPIN_US: '0' })).toEqual({});
    expect(rankEnvOf({ LD_PRELOAD: '/usr/lib/other.so' })).toEqual({});
  });
});

describe('vtoe bench --hosts: arguments', () => {
  const base: BenchCommandOptions = {
    workloads: ['pingpong', 'imb'], modes: ['offload', 'ipoib'], mpi: 'openmpi', reps: 1, ranks: 2,
    maxBytes: 1024, iters: 10, hpccMaxN: 80, timeoutMs: 1000,
  };

  it('hosts: at least two, names or addresses only', () => {
    expect(parseHosts('192.0.2.1, 192.0.2.2')).toEqual(['192.0.2.1', '192.0.2.2']);
    expect(parseHosts('node-1,node-2.cluster,fe80::1')).toEqual(['node-1', 'node-2.cluster', 'fe80::1']);
    expect(() => parseHosts('node-1')).toThrow(/at least two hosts/);
    expect(() => parseHosts('a,b;rm -rf /')).toThrow(/not a host name/);
  });

  it('the interface: lo by default on one host, required across hosts', () => {
    expect(tcpInterfaceOf(base)).toBe('lo');
    expect(tcpInterfaceOf({ ...base, tcpInterface: 'ib0' })).toBe('ib0');
    expect(() => tcpInterfaceOf({ ...base, hosts: ['a', 'b'] })).toThrow(/--hosts needs --iface/);
    expect(() => tcpInterfaceOf({ ...base, hosts: ['a', 'b'], tcpInterface: 'lo' })).toThrow(/--hosts needs --iface/);
    expect(tcpInterfaceOf({ ...base, hosts: ['a', 'b'], tcpInterface: 'ib0' })).toBe('ib0');
  });

  it('across hosts only the MPI workloads run', () => {
    for (const w of ['sockperf', 'connect', 'syscalls'] as const) {
      expect(() => tcpInterfaceOf({ ...base, workloads: ['pingpong', w], hosts: ['a', 'b'], tcpInterface: 'ib0' })).toThrow(new RegExp(`drop ${w}`));
    }
  });

  it("the report's labels say the ranks ran across hosts over the agents' fabric", () => {
    const labels = modeLabels({ ...base, hosts: ['a', 'b'], tcpInterface: 'ib0' });
    expect(labels.offload).toBe("offload: Open MPI TCP BTL over ib0 across 2 hosts through vtoe (the verbs fabric between the hosts' agents)");
    expect(labels.ipoib).toBe('ipoib: Open MPI TCP BTL over ib0 across 2 hosts, kernel TCP');
  });

  it("IMB's benchmarks: a chosen subset, checked by name", () => {
    expect(parseImbBenchmarks('PingPong')).toEqual(['PingPong']);
    expect(() => parseImbBenchmarks('PingPong,Barrier')).toThrow(/IMB benchmark 'Barrier' is unknown/);
    expect(imbArgs({ ranks: 2, maxLog2: 4, benchmarks: ['PingPong'] })).toEqual(['PingPong', '-msglog', '0:4', '-npmin', '2']);
    expect(imbArgs({ ranks: 2, maxLog2: 4 }).slice(0, 5)).toEqual(['PingPong', 'PingPing', 'Sendrecv', 'Exchange', 'Allreduce']);
  });
});
