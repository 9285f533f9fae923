// Where the built artefacts live, relative to the package root (dist/ and src/ are siblings).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const packageRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const libvtoePath = join(packageRoot, 'preload', 'libvtoe.so');
export const addonPath = join(packageRoot, 'build', 'Release', 'vtoe_native.node');
/** The verbs fabric's addon, linked with librdmacm and libibverbs; loaded only when used. */
export const verbsAddonPath = join(packageRoot, 'build', 'Release', 'vtoe_verbs.node');

/** A program built from tools/ (e.g. 'vtoe-pingpong'). */
export function toolPath(name: string): string {
  return join(packageRoot, 'tools', 'bin', name);
}

export function assertBuilt(path: string): string {
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run 'npm install' (or 'npm run build') in ${packageRoot}`);
  }
  return path;
}
