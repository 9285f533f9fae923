// The environment that makes a program start with the shim and find a given agent.
import { basename } from 'node:path';
import { assertBuilt, libvtoePath } from '../paths.js';
import { sanitizerOptions, sanitizing, withLibasan } from '../sanitize.js';

const shimNames = new Set(['libvtoe.so', 'libvtoe-asan.so']);

export function offloadEnv(socketPath: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const lib = assertBuilt(libvtoePath);
  const others = (base.LD_PRELOAD ?? '').split(/[:\s]+/).filter((p) => p && p !== lib);
  if (!sanitizing) return { ...base, LD_PRELOAD: [lib, ...others].join(':'), VTOE_AGENT_SOCKET: socketPath };
  // The sanitized shim needs libasan before it; the caller's sanitizer options, if any, stand.
  return { ...sanitizerOptions(), ...base, LD_PRELOAD: withLibasan([lib, ...others]).join(':'), VTOE_AGENT_SOCKET: socketPath };
}

/** The environment with the shim (any copy of it) removed: kernel TCP for everything. */
export function kernelEnv(base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env = { ...base };
  const others = (env.LD_PRELOAD ?? '').split(/[:\s]+/).filter((p) => p && !shimNames.has(basename(p)));
  if (others.length) env.LD_PRELOAD = others.join(':');
  else delete env.LD_PRELOAD;
  delete env.VTOE_AGENT_SOCKET;
  return env;
}
