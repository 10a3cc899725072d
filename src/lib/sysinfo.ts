// What a device is: reported by activation (`GET /device`) and by node_daemon to `devices/<node>/info`.
import { cpus, arch, platform, release, totalmem, freemem, networkInterfaces, hostname, uptime, loadavg } from 'node:os';
import { readFileSync, statfsSync } from 'node:fs';

export interface DiskInfo {
  mount: string;
  device: string;
  fstype: string;
  size_bytes: number;
  free_bytes: number;
}

export interface AddressInfo {
  iface: string;
  family: 'IPv4' | 'IPv6';
  address: string;
}

export interface DeviceInfo {
  hostname: string;
  arch: string;
  platform: string;
  kernel: string;
  cpu: { model: string; count: number; load1: number };
  memory: { total_bytes: number; free_bytes: number };
  disks: DiskInfo[];
  addresses: AddressInfo[];
  uptime_sec: number;
}

/** File systems on real block devices; pseudo and container overlays would only confuse a capacity view. */
export function listDisks(mountsText?: string): DiskInfo[] {
  let text = mountsText;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/mounts', 'utf8');
    } catch {
      return [];
    }
  }
  const seen = new Set<string>();
  const disks: DiskInfo[] = [];
  for (const line of text.split('\n')) {
    const [device, mount, fstype] = line.split(' ');
    if (!device?.startsWith('/dev/') || !mount || seen.has(device)) continue;
    seen.add(device);
    const decoded = mount.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    try {
      const s = statfsSync(decoded);
      disks.push({ mount: decoded, device, fstype: fstype ?? '', size_bytes: s.blocks * s.bsize, free_bytes: s.bavail * s.bsize });
    } catch {
      // An unreadable mount (stale, permission) is left out rather than reported with made-up sizes.
    }
  }
  return disks;
}

export function listAddresses(): AddressInfo[] {
  const out: AddressInfo[] = [];
  for (const [iface, addrs] of Object.entries(networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.internal) continue;
      out.push({ iface, family: a.family === 'IPv6' ? 'IPv6' : 'IPv4', address: a.address });
    }
  }
  return out;
}

export function collectDeviceInfo(): DeviceInfo {
  const c = cpus();
  return {
    hostname: hostname(),
    arch: arch(),
    platform: platform(),
    kernel: release(),
    cpu: { model: c[0]?.model.trim() ?? 'unknown', count: c.length, load1: loadavg()[0] },
    memory: { total_bytes: totalmem(), free_bytes: freemem() },
    disks: listDisks(),
    addresses: listAddresses(),
    uptime_sec: Math.round(uptime()),
  };
}

/** Whether a process with this pid exists (signal 0 checks without sending anything). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Resident memory of a process in bytes, or null when it is gone. */
export function processRss(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}
