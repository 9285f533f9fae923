import { describe, expect, it } from 'vitest';
import { decide, parsePolicy, type PolicyQuery } from '../src/policy.js';
import { effectivePolicy, PROFILES } from '../src/profiles.js';

const rulesOf = (policy: string, profile: string) => parsePolicy(effectivePolicy(policy, profile));
const q = (program: string, role: 'connect' | 'listen', port: number, address = '127.0.0.1'): PolicyQuery =>
  ({ program, role, address, port });

describe('policy profiles', () => {
  it('every profile parses', () => {
    for (const [name, p] of Object.entries(PROFILES)) {
      expect(() => parsePolicy(p.rules), name).not.toThrow();
      expect(p.doc.length, name).toBeGreaterThan(20);
    }
  });

  it('mpi: launchers and their helpers keep kernel TCP, in both roles', () => {
    const rules = rulesOf('', 'mpi');
    for (const program of ['mpirun', 'mpirun.openmpi', 'mpirun.mpich', 'orterun', 'orted', 'prted', 'prterun', 'mpiexec', 'mpiexec.hydra', 'hydra_pmi_proxy', 'ssh', 'sshd']) {
      for (const role of ['connect', 'listen'] as const) {
        expect(decide(rules, q(program, role, 41000)).action, `${program} ${role}`).toBe('tcp');
      }
    }
  });

  it('mpi: ranks are offloaded, except their X11 display probes', () => {
    const rules = rulesOf('', 'mpi');
    for (const program of ['hpcc', 'vtoe-mpi-pingpong', 'IMB-MPI1', 'NPmpi']) {
      expect(decide(rules, q(program, 'listen', 0)).action).toBe('offload');
      expect(decide(rules, q(program, 'connect', 45123)).action).toBe('offload');
      expect(decide(rules, q(program, 'connect', 6000)).action).toBe('tcp');
      expect(decide(rules, q(program, 'connect', 6063)).action).toBe('tcp');
      expect(decide(rules, q(program, 'connect', 6064)).action).toBe('offload');
    }
  });

  it("the user's VTOE_POLICY rules come first", () => {
    const rules = rulesOf('offload both orted *:*; tcp connect hpcc *:5000', 'mpi');
    expect(decide(rules, q('orted', 'connect', 41000)).action).toBe('offload');
    expect(decide(rules, q('hpcc', 'connect', 5000)).action).toBe('tcp');
    expect(decide(rules, q('mpirun', 'connect', 41000)).action).toBe('tcp');
  });

  it('no profile leaves the policy as it is', () => {
    expect(effectivePolicy('tcp both sshd *:*', '')).toBe('tcp both sshd *:*');
    expect(decide(rulesOf('', ''), q('mpirun', 'connect', 41000)).action).toBe('offload');
  });
});
