// The package as a site installs it: `npm pack` in the checkout, then `npm install -g` of that
// tarball into a fresh prefix, which compiles the native parts there (no TypeScript, no tests),
// then `vtoe demo` and `vtoe config` from the installed command.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from './helpers/cc.js';

const exec = promisify(execFile);
let dir: string;
let tarball: string;
let packed: string[];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vtoe-package-'));
  // --ignore-scripts: the checkout's dist/ as built (its `prepare`), not rebuilt under the
  // feet of tests running beside this one.
  const { stdout } = await exec('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dir], { cwd: repoRoot });
  const [info] = JSON.parse(stdout) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, info!.filename);
  packed = info!.files.map((f) => f.path);
}, 120_000);

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('carries the built JavaScript and the sources to compile, and no tests, fixtures or benchmarks', () => {
    for (const f of ['bin/vtoe.js', 'dist/cli.js', 'dist/index.js', 'dist/index.d.ts', 'binding.gyp', 'native/addon.cc',
      'include/vtoe_abi.h', 'preload/Makefile', 'preload/libvtoe.map', 'preload/vtoe_socket.c', 'tools/Makefile',
      'tools/vtoe_pingpong.c', 'tools/install-native.mjs', 'README.md', 'man/man1/vtoe.1', 'man/man8/vtoe-agent.8',
      'man/man5/vtoe-policy.5', 'preload/vtoe_launch.c']) {
      expect(packed, f).toContain(f);
    }
    const stray = packed.filter((f) => /^(test|fuzz|bench|build|node_modules)\/|^docs\/bench|\.(o|so|node)$/.test(f));
    expect(stray).toEqual([]);
  });

  it('installs with npm install -g into a fresh prefix, and the installed vtoe runs its demo', async () => {
    const prefix = join(dir, 'prefix');
    await exec('npm', ['install', '-g', '--prefix', prefix, '--allow-scripts=vtoe', '--prefer-offline', '--no-audit',
      '--no-fund', tarball], { cwd: dir, maxBuffer: 64 << 20 });
    const installed = join(prefix, 'lib', 'node_modules', 'vtoe');
    for (const built of ['build/Release/vtoe_native.node', 'build/Release/vtoe_verbs.node', 'preload/libvtoe.so',
      'preload/vtoe-launch', 'tools/bin/vtoe-pingpong']) {
      expect(existsSync(join(installed, built)), built).toBe(true);
    }
    // What only a checkout needs was not installed: TypeScript, the test runner.
    for (const dev of ['typescript', 'vitest', 'fast-check']) expect(existsSync(join(installed, 'node_modules', dev)), dev).toBe(false);
    // npm links the man pages under the prefix, where man finds them
    expect(existsSync(join(prefix, 'share', 'man', 'man1', 'vtoe.1'))).toBe(true);
    const vtoe = join(prefix, 'bin', 'vtoe');
    const env = { ...process.env, VTOE_AGENT_SOCKET: join(dir, 'agent.sock') };
    const config = await exec(vtoe, ['config'], { env });
    expect(config.stdout).toMatch(/VTOE_RING_SIZE/);
    // run goes through the installed C launcher: with no agent answering, to the CLI's embedded one
    expect((await exec(vtoe, ['run', '--', 'sh', '-c', 'echo "$LD_PRELOAD"'], { env })).stdout.trim())
      .toBe(join(installed, 'preload', 'libvtoe.so'));
    const demo = await exec(vtoe, ['demo', '--reps', '1'], { env, timeout: 120_000 });
    expect(demo.stdout).toMatch(/^agent: 2 connections offloaded, 0 fell back/m);
  }, 300_000);
});
