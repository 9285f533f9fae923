// npm's install step: what must be compiled on the machine that runs it (the two addons, the
// shim, the benchmark tools). dist/ comes built in the package (`prepare` runs tsc before it is
// packed, and after `npm install` in a checkout), so a consumer needs no TypeScript.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const APT = 'apt-get install -y build-essential python3';

function have(command) {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function fail(what) {
  process.stderr.write(`vtoe: ${what}\nvtoe: install what builds it (Debian: ${APT}; for the verbs fabric also `
    + 'libibverbs-dev librdmacm-dev), then run the install again.\n');
  process.exit(1);
}

const missing = ['cc', 'c++', 'make', 'python3'].filter((c) => !have(c));
if (missing.length) fail(`cannot build the shim and the addons: ${missing.join(', ')} not found.`);

// node-gyp: the one npm runs lifecycle scripts with (on PATH), else the checkout's devDependency.
const steps = [
  ['node-gyp', ['rebuild']],
  ['make', ['-C', 'preload']],
  ['make', ['-C', 'tools']],
];
for (const [command, args] of steps) {
  const r = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (r.error) fail(`${command} could not run: ${r.error.message}`);
  if (r.status !== 0) fail(`\`${command} ${args.join(' ')}\` failed (exit status ${r.status ?? r.signal}); its output is above.`);
}
