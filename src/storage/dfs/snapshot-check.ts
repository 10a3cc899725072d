// The child process of snapshots.ts checkSnapshot: `snapshot-check <file> <volume>` checks a received snapshot of the
// volume's metadata and sends what it holds, or why it is refused, to its parent.
import type { CheckAnswer } from './snapshots.ts';
import { MetaError, VolumeMeta } from './volume-meta.ts';

const [file, volume] = process.argv.slice(2);
let answer: CheckAnswer;
try {
  answer = { ok: true, info: VolumeMeta.inspectSnapshot(file!, volume!, { integrity: true }) };
} catch (err) {
  answer = { ok: false, code: err instanceof MetaError ? err.code : 'INVALID_ARGUMENT', message: (err as Error).message };
}
process.send!(answer, () => process.disconnect());
