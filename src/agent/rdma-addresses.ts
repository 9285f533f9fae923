// This host's addresses on its RDMA ports: the IPv4 addresses of the network devices that
// back an active RoCE or Soft-RoCE port (sysfs gid_attrs/ndevs) or that are IPoIB interfaces.  The
// verbs fabric connects to one of them when it is forced to carry a connection on this host.
import { readdirSync, readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { join } from 'node:path';

const SYSFS_IB = '/sys/class/infiniband';

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** A port that can carry traffic: sysfs says "4: ACTIVE" (a port without link is no use to
 * connect to). */
function portActive(portDir: string): boolean {
  try {
    return readFileSync(join(portDir, 'state'), 'utf8').trim().endsWith('ACTIVE');
  } catch {
    return false;
  }
}

/** Names of the network devices behind active RDMA ports, e.g. ['dummy0'] for rxe0 on dummy0. */
export function rdmaNetdevs(root = SYSFS_IB): string[] {
  const names = new Set<string>();
  for (const dev of listDir(root)) {
    for (const port of listDir(join(root, dev, 'ports'))) {
      if (!portActive(join(root, dev, 'ports', port))) continue;
      const ndevs = join(root, dev, 'ports', port, 'gid_attrs', 'ndevs');
      for (const idx of listDir(ndevs)) {
        try {
          const name = readFileSync(join(ndevs, idx), 'utf8').trim();
          if (name) names.add(name);
        } catch {
          // an empty GID slot reads as EINVAL
        }
      }
    }
  }
  // IPoIB interfaces have no gid_attrs netdev entries; they are ib* by convention.
  for (const name of Object.keys(networkInterfaces())) if (/^ib/.test(name)) names.add(name);
  return [...names].sort();
}

/** The first non-loopback IPv4 address on an RDMA-capable device, or null. */
export function findRdmaAddress(root = SYSFS_IB): string | null {
  const ifaces = networkInterfaces();
  for (const name of rdmaNetdevs(root)) {
    for (const info of ifaces[name] ?? []) {
      if (info.family === 'IPv4' && !info.internal) return info.address;
    }
  }
  return null;
}
