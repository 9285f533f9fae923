// Built-in policy profiles (VTOE_PROFILE): rules for a kind of workload, checked after the user's
// own VTOE_POLICY rules, so that the user can always override them. Pure data.

export interface Profile {
  doc: string;
  rules: string;
}

export const PROFILES: Readonly<Record<string, Profile>> = {
  mpi: {
    doc: "MPI jobs: launchers and their helpers (mpirun, orted, prted, hydra, ssh) and X11 display probes stay on kernel TCP; every rank's data connections (Open MPI's TCP BTL, MPICH's TCP netmod) are offloaded",
    rules: [
      '# launchers and their helpers: control traffic, set up before the ranks exist',
      'tcp both mpirun* *:*',
      'tcp both mpiexec* *:*',
      'tcp both orterun* *:*',
      'tcp both orted *:*',
      'tcp both prte* *:*',
      'tcp both prted *:*',
      'tcp both hydra_* *:*',
      'tcp both ssh *:*',
      'tcp both sshd *:*',
      '# X11 displays :0..:63, probed by hwloc in every process (refused where no X server runs)',
      'tcp connect * *:6000-6063',
    ].join('\n'),
  },
};

export const PROFILE_NAMES: readonly string[] = Object.keys(PROFILES);

/** The rules the agent applies: the user's first (first match wins), then the profile's. */
export function effectivePolicy(policy: string, profile: string): string {
  const rules = profile ? PROFILES[profile]?.rules : undefined;
  if (!rules) return policy;
  return policy ? `${policy}\n${rules}` : rules;
}
