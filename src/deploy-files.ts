// What a site installs around the agent, written for this installation's own paths: systemd
// units (a user's own agent, or one per user run by the system manager), environment-module
// files (Lmod, Environment Modules) and shell lines that preload the shim without a wrapper.
// Pure: the caller passes the paths (thisInstallation() in src/paths.ts).

export interface Installation {
  /** bin/vtoe of this package (absolute) */
  vtoeBin: string;
  /** preload/libvtoe.so of this package (absolute) */
  shim: string;
  version: string;
  /** VTOE_DRAIN_MS: a stop waits this long for connections before the agent exits */
  drainMs: number;
}

/** The system template's socket for user `u` (%i in the unit, $USER in a module). */
export const systemSocket = (user: string) => `/run/vtoe-${user}/agent.sock`;

/** systemd's stop timeout: the agent's drain, plus time to close what is left and exit. */
function stopSeconds(drainMs: number): number {
  return Math.ceil(drainMs / 1000) + 10;
}

/**
 * A user's own agent (`systemctl --user`): its socket is the default the shim finds in that
 * user's sessions, $XDG_RUNTIME_DIR/vtoe/agent.sock.
 */
export function userUnit(i: Installation): string {
  return [
    '# vtoe agent for this user: ~/.config/systemd/user/vtoe.service, then',
    '#   systemctl --user daemon-reload && systemctl --user enable --now vtoe',
    `# Written by \`vtoe unit\` (vtoe ${i.version}).`,
    '[Unit]',
    "Description=vtoe agent: offloads the TCP connections of this user's programs",
    'Documentation=man:vtoe(1)',
    '',
    '[Service]',
    'Type=notify',
    'NotifyAccess=main',
    `ExecStart=${i.vtoeBin} agent`,
    `TimeoutStopSec=${stopSeconds(i.drainMs)}`,
    'Restart=on-failure',
    'RestartSec=1',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n');
}

/**
 * One agent per user, run by the system manager (`systemctl enable --now vtoe@alice`): the
 * shim talks only to an agent of its own user, so a single root agent would serve nobody else.
 */
export function systemUnit(i: Installation): string {
  return [
    '# vtoe agent for the user named after the @: /etc/systemd/system/vtoe@.service, then',
    '#   systemctl daemon-reload && systemctl enable --now vtoe@USER',
    `# Its socket is ${systemSocket('USER')}: jobs set VTOE_AGENT_SOCKET to it (vtoe env --system).`,
    `# Written by \`vtoe unit --system\` (vtoe ${i.version}).`,
    '[Unit]',
    'Description=vtoe agent of %i: offloads the TCP connections of its programs',
    'Documentation=man:vtoe(1)',
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=notify',
    'NotifyAccess=main',
    'User=%i',
    `ExecStart=${i.vtoeBin} agent`,
    `Environment=VTOE_AGENT_SOCKET=${systemSocket('%i')}`,
    'RuntimeDirectory=vtoe-%i',
    'RuntimeDirectoryMode=0700',
    '# verbs rings are registered (pinned) memory; the agent budgets them (VTOE_PINNED_MAX)',
    'LimitMEMLOCK=infinity',
    'LimitNOFILE=1048576',
    `TimeoutStopSec=${stopSeconds(i.drainMs)}`,
    'Restart=on-failure',
    'RestartSec=1',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

const shellQuote = (s: string) => `'${s.replaceAll("'", "'\\''")}'`;

/**
 * Shell lines that preload the shim for what follows (`eval "$(vtoe env)"`): the shim first in
 * LD_PRELOAD, any other preloads kept, and the agent's socket.
 */
export function shellEnv(preload: string, agentSocket: string): string {
  return `export LD_PRELOAD=${shellQuote(preload)}\nexport VTOE_AGENT_SOCKET=${shellQuote(agentSocket)}\n`;
}

const luaString = (s: string) => JSON.stringify(s); // a JSON string is a valid Lua string literal
const tclString = (s: string) => `{${s}}`;

/**
 * An environment module that preloads the shim for a job and names its agent (so that
 * `mpirun -x VTOE_AGENT_SOCKET` has it to pass): Lmod (lua) or Environment Modules (tcl).
 * `system`: the agents of `vtoe unit --system`, whose socket is named after $USER; otherwise the
 * default, decided when the module is loaded.
 */
export function moduleFile(kind: 'lua' | 'tcl', i: Installation, system: boolean): string {
  const bin = i.vtoeBin.slice(0, i.vtoeBin.lastIndexOf('/'));
  const help = `vtoe ${i.version}: offloads the TCP connections of the job's programs through this host's vtoe agent `
    + '(start it first: vtoe agent, or its systemd unit). Open MPI: mpirun -x LD_PRELOAD -x VTOE_AGENT_SOCKET ...; '
    + 'MPICH: mpiexec -genvlist LD_PRELOAD,VTOE_AGENT_SOCKET ...';
  if (kind === 'lua') {
    return [
      `-- Written by \`vtoe env --module lua${system ? ' --system' : ''}\`.`,
      `help(${luaString(help)})`,
      `whatis(${luaString(`vtoe ${i.version}: TCP offload (LD_PRELOAD shim and per-host agent)`)})`,
      `prepend_path("PATH", ${luaString(bin)})`,
      `prepend_path("LD_PRELOAD", ${luaString(i.shim)})`,
      ...(system ? ['setenv("VTOE_AGENT_SOCKET", "/run/vtoe-" .. (os.getenv("USER") or "") .. "/agent.sock")'] : [
        '-- the default the shim and a `systemctl --user` agent find: the session\'s runtime directory, else /tmp',
        'local runtime = os.getenv("XDG_RUNTIME_DIR") or ""',
        'if runtime:sub(1, 1) == "/" then',
        '  setenv("VTOE_AGENT_SOCKET", runtime .. "/vtoe/agent.sock")',
        'else',
        '  setenv("VTOE_AGENT_SOCKET", "/tmp/vtoe-" .. capture("id -u"):gsub("%s+", "") .. "/agent.sock")',
        'end',
      ]),
      '',
    ].join('\n');
  }
  return [
    '#%Module1.0',
    `# Written by \`vtoe env --module tcl${system ? ' --system' : ''}\`.`,
    `proc ModulesHelp { } { puts stderr ${tclString(help)} }`,
    `module-whatis ${tclString(`vtoe ${i.version}: TCP offload (LD_PRELOAD shim and per-host agent)`)}`,
    `prepend-path PATH ${tclString(bin)}`,
    `prepend-path LD_PRELOAD ${tclString(i.shim)}`,
    ...(system ? ['setenv VTOE_AGENT_SOCKET "/run/vtoe-$env(USER)/agent.sock"'] : [
      "# the default the shim and a `systemctl --user` agent find: the session's runtime directory, else /tmp",
      'if {[info exists env(XDG_RUNTIME_DIR)] && [string index $env(XDG_RUNTIME_DIR) 0] eq "/"} {',
      '  setenv VTOE_AGENT_SOCKET "$env(XDG_RUNTIME_DIR)/vtoe/agent.sock"',
      '} else {',
      '  setenv VTOE_AGENT_SOCKET "/tmp/vtoe-[exec id -u]/agent.sock"',
      '}',
    ]),
    '',
  ].join('\n');
}
