// Where the built artefacts live, relative to the package root (dist/ and src/ are siblings).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Installation } from './deploy-files.js';
import { sanitizing } from './sanitize.js';

export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

// VTOE_SANITIZE=1 selects the sanitized builds (src/sanitize.ts), made by `npm run build:asan`.
const addonDir = sanitizing ? join(packageRoot, 'build-asan', 'build', 'Release') : join(packageRoot, 'build', 'Release');
const buildHint = sanitizing ? "'npm run build:asan' (VTOE_SANITIZE=1 uses the sanitized builds)"
  : "'npm install' (or 'npm run build')";

export const libvtoePath = join(packageRoot, 'preload', sanitizing ? 'libvtoe-asan.so' : 'libvtoe.so');
export const addonPath = join(addonDir, 'vtoe_native.node');
/** The verbs fabric's addon, linked with librdmacm and libibverbs; loaded only when used. */
export const verbsAddonPath = join(addonDir, 'vtoe_verbs.node');

/** A program built from tools/ (e.g. 'vtoe-pingpong'). */
export function toolPath(name: string): string {
  return join(packageRoot, 'tools', 'bin', name);
}

export function assertBuilt(path: string): string {
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run ${buildHint} in ${packageRoot}`);
  }
  return path;
}

/** This package's paths and version, for the files `vtoe unit` and `vtoe env` write. */
export function thisInstallation(drainMs: number): Installation {
  const { version } = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  return { vtoeBin: join(packageRoot, 'bin', 'vtoe'), shim: libvtoePath, version, drainMs };
}
