// Rules both backends enforce identically, so a transaction accepted by one is accepted by the other.
import type { TxOp } from '../store.ts';

/** etcd refuses a transaction that writes one key twice; SQLite follows so a migration never changes behaviour. */
export function assertDistinctOpKeys(ops: TxOp[]): void {
  const seen = new Set<string>();
  for (const op of ops) {
    if (seen.has(op.key)) throw new Error(`transaction writes key ${JSON.stringify(op.key)} more than once`);
    seen.add(op.key);
  }
}
