// Chunks across the zone (docs/dcfs.md, "Placement" and "Reading"): storing a chunk on the disks its policy needs,
// local or on other nodes, resolving only when every copy is durable; and reading one from wherever a healthy copy
// is, this node's disks first, checking its hash whoever sent it.
import { contentIdAsync } from './hashing.ts';
import { DiskFullError, type ReadCheck } from './chunk-store.ts';
import type { DiskSet } from './disks.ts';
import type { PeerChunks } from './peers.ts';
import { type DiskInfo, type DiskRef, domainOf, placeChunk } from './placement.ts';
import type { PlacementPolicy } from '../../lib/config/storage-records.ts';
import type { ZoneStorage } from './zone-view.ts';

export class PlacementError extends Error {
  constructor(
    message: string,
    /** A disk in service was out of reach: the write may succeed once it is back (else the disks lack room). */
    readonly transient: boolean,
  ) {
    super(message);
    this.name = 'PlacementError';
  }
}

export class ChunkUnavailableError extends Error {
  constructor(readonly chunkId: string, why: string) {
    super(`chunk ${chunkId} cannot be read from any copy: ${why}`);
    this.name = 'ChunkUnavailableError';
  }
}

/** Remembered holders of chunks this node read from elsewhere: a file's chunks are read in runs. */
const MAX_LOCATIONS = 100_000;

export class ChunkIO {
  private readonly locations = new Map<string, string[]>();
  /** `<disk>/<chunk>` of copies on this node being dropped right now (dropLocalIfCovered). */
  private readonly leaving = new Set<string>();
  private infos: { at: number; value: Promise<DiskInfo[]> } | null = null;

  constructor(
    private readonly self: string,
    private readonly disks: DiskSet,
    private readonly peers: PeerChunks,
    private readonly zone: () => ZoneStorage,
    /** Re-reads the zone's storage now: placement found too few disks, perhaps only because its view is old. */
    private readonly refreshZone: () => Promise<unknown> = async () => undefined,
  ) {}

  /** Every disk of the zone as placement sees it: this node's from its stores, others' from their last report. Kept
   * for a second: a file is many chunks, and free space does not need to be exact to the chunk. */
  diskInfos(): Promise<DiskInfo[]> {
    const now = Date.now();
    if (!this.infos || now - this.infos.at > 1000) this.infos = { at: now, value: this.readDiskInfos() };
    return this.infos.value;
  }

  private async readDiskInfos(): Promise<DiskInfo[]> {
    const z = this.zone();
    const out: DiskInfo[] = [];
    const local = new Map((await this.disks.report()).map((r) => [r.disk_id, r]));
    for (const d of z.disks) {
      if (d.node === this.self) {
        const r = local.get(d.disk);
        out.push({
          node: d.node, disk: d.disk, state: d.record.state, free_bytes: r?.free_bytes ?? 0, live: r !== undefined && r.state !== 'unreachable',
          used_bytes: r?.bytes ?? 0, capacity_bytes: r?.capacity_bytes ?? 0,
        });
        continue;
      }
      const r = z.reported.get(d.node)?.find((x) => x.disk_id === d.disk);
      out.push({
        node: d.node, disk: d.disk, state: d.record.state, free_bytes: r?.free_bytes ?? 0,
        live: z.live.has(d.node) && r !== undefined && r.state !== 'unreachable',
        used_bytes: r?.bytes ?? 0, capacity_bytes: r?.capacity_bytes ?? 0,
      });
    }
    return out;
  }

  /**
   * Puts one copy; a failure names the disk. Every caller's `id` was computed here from `data` (by the chunker, or by
   * the read that fetched it), so this node's stores take it without hashing the bytes again; a peer checks them.
   */
  private async putOn(t: DiskRef, id: string, data: Buffer, crc?: number): Promise<void> {
    if (t.node === this.self) {
      const d = this.disks.get(t.disk);
      if (!d?.store) throw new Error(`disk ${t.disk} of ${t.node} is not open`);
      await d.store.put(id, data, { hashed: true, crc });
    } else await this.peers.put(t.node, t.disk, id, data);
  }

  /**
   * Stores a chunk with the copies `policy` asks for and resolves once all of them are durable. A disk that fails
   * is passed over for another; when no disk is left, PlacementError says what is short. `crc`: the bytes' CRC-32,
   * when the caller took it with their id.
   */
  async store(id: string, data: Buffer, policy: PlacementPolicy, have: readonly DiskRef[] = [], crc?: number): Promise<DiskRef[]> {
    let disks = await this.diskInfos();
    const failed: (DiskRef & { full: boolean })[] = [];
    const done: DiskRef[] = [];
    const why: string[] = [];
    for (let round = 0; round < 4; round++) {
      // A disk that refused for want of room has none; one that failed otherwise is out of reach for this write.
      const usable = disks.map((d) => {
        const f = failed.find((x) => x.node === d.node && x.disk === d.disk);
        return f === undefined ? d : f.full ? { ...d, free_bytes: 0 } : { ...d, live: false };
      });
      const p = placeChunk({ chunkId: id, size: data.length, policy, disks: usable, have: [...have, ...done], local: this.self });
      if (!p.ok && round === 0 && why.length === 0) {
        await this.refreshZone();
        this.infos = null;
        disks = await this.diskInfos();
        continue;
      }
      if (!p.ok) throw new PlacementError(`${p.reason}${why.length ? ` (failed: ${why.join('; ')})` : ''}`, p.transient);
      const todo = p.targets.filter((t) => !done.some((d) => d.node === t.node && d.disk === t.disk) && !have.some((h) => h.node === t.node && h.disk === t.disk));
      const results = await Promise.allSettled(todo.map((t) => this.putOn(t, id, data, crc)));
      results.forEach((r, i) => {
        if (r.status === 'fulfilled') done.push(todo[i]!);
        else {
          failed.push({ ...todo[i]!, full: r.reason instanceof DiskFullError });
          why.push(`${todo[i]!.node}/${todo[i]!.disk}: ${(r.reason as Error).message}`);
        }
      });
      if (results.every((r) => r.status === 'fulfilled')) return p.targets;
    }
    throw new PlacementError(`could not store ${policy.copies} copies: ${why.join('; ')}`, !failed.every((f) => f.full));
  }

  /** Puts one copy on a given disk (rebalancing). */
  copyTo(t: DiskRef, id: string, data: Buffer): Promise<void> {
    return this.putOn(t, id, data);
  }

  /**
   * Drops the copy on `t` only if the chunk's other copies, looked up now, still meet `policy` on active disks of live
   * nodes; resolves whether it dropped it. The node holding the copy decides (dropLocalIfCovered), so that two nodes
   * dropping two copies of one chunk at once (two primaries rebalancing or draining a chunk their volumes share) never
   * both go.
   */
  async dropIfCovered(t: DiskRef, id: string, policy: PlacementPolicy): Promise<boolean> {
    this.infos = null;
    return t.node === this.self ? this.dropLocalIfCovered(t.disk, id, policy) : this.peers.dropIfCovered(t.node, t.disk, id, policy);
  }

  /**
   * dropIfCovered's decision on this node. The copy is marked leaving before the others are looked up, and a leaving
   * copy is not reported by `holds` (nor so by `locate`, here or to other nodes): of two drops that overlap, the later
   * look-up sees the earlier copy marked or gone, so at most one of them counts the other's copy and goes.
   */
  async dropLocalIfCovered(disk: string, id: string, policy: PlacementPolicy): Promise<boolean> {
    const d = this.disks.get(disk);
    if (!d?.store) throw new Error(`disk ${disk} of ${this.self} is not open`);
    const key = `${disk}/${id}`;
    if (!d.store.has(id) || this.leaving.has(key)) return false;
    this.leaving.add(key);
    try {
      this.infos = null;
      const usable = new Set((await this.diskInfos()).filter((i) => i.live && i.state === 'active').map((i) => `${i.node}/${i.disk}`));
      const others = ((await this.locate([id])).get(id) ?? []).filter((r) => usable.has(`${r.node}/${r.disk}`) && !(r.node === this.self && r.disk === disk));
      if (new Set(others.map((r) => domainOf(policy, r))).size < policy.copies) return false;
      await d.store.delete(id);
      return true;
    } finally {
      this.leaving.delete(key);
    }
  }

  /** This node's disks holding a copy of `id` that is not on its way out (dropLocalIfCovered). */
  holds(id: string): string[] {
    return this.disks.open().filter((d) => d.store.has(id) && !this.leaving.has(`${d.id}/${id}`)).map((d) => d.id);
  }

  /** Where copies of `ids` are: this node's disks, and every live node's (asked in one request per node). */
  async locate(ids: readonly string[]): Promise<Map<string, DiskRef[]>> {
    const out = new Map<string, DiskRef[]>(ids.map((id) => [id, []]));
    for (const id of ids) for (const disk of this.holds(id)) out.get(id)!.push({ node: this.self, disk });
    const nodes = [...this.zone().live].filter((n) => n !== this.self);
    await Promise.all(
      nodes.map(async (node) => {
        try {
          for (const [id, disks] of await this.peers.has(node, ids)) for (const disk of disks) out.get(id)?.push({ node, disk });
        } catch {
          // A node that cannot answer holds nothing we can use now.
        }
      }),
    );
    return out;
  }

  /** A chunk's bytes from a healthy copy: hash checked, or a local copy CRC checked if `check` allows (ReadCheck). */
  async fetch(id: string, check: ReadCheck = 'hash'): Promise<Buffer> {
    const errors: string[] = [];
    for (const d of this.disks.open()) {
      if (!d.store.has(id)) continue;
      try {
        return await d.store.get(id, check);
      } catch (err) {
        errors.push(`${this.self}/${d.id}: ${(err as Error).message}`);
      }
    }
    const tryNodes = async (nodes: readonly string[]): Promise<Buffer | null> => {
      for (const node of nodes) {
        try {
          const data = await this.peers.get(node, id);
          if ((await contentIdAsync(data)) !== id) {
            errors.push(`${node}: sent bytes that do not match the id`);
            continue;
          }
          this.remember(id, node);
          return data;
        } catch (err) {
          errors.push(`${node}: ${(err as Error).message}`);
        }
      }
      return null;
    };
    const known = this.locations.get(id);
    if (known) {
      const got = await tryNodes(known);
      if (got) return got;
    }
    const holders = [...new Set((await this.locate([id])).get(id)!.filter((r) => r.node !== this.self).map((r) => r.node))];
    const got = await tryNodes(holders);
    if (got) return got;
    throw new ChunkUnavailableError(id, errors.length ? errors.join('; ') : 'no node holds it');
  }

  private remember(id: string, node: string): void {
    if (this.locations.size >= MAX_LOCATIONS) this.locations.delete(this.locations.keys().next().value as string);
    this.locations.set(id, [node]);
  }
}
