import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Keys } from '../common/keys';
import type { DstoreRedis } from '../common/redis';

/** A worker directory of a local cluster, and what the cluster says of its worker. */
export interface LocalWorker {
  id: string;
  /** Its data dir: `<dataDir>/<id>` for the workers `dstore up` made. */
  dir: string;
  /**
   * `active` takes chunks; `draining` still serves the chunks being moved off it (so it is
   * started, but does not count); `retired` was drained empty and is never started again;
   * `new` is made now.
   */
  state: 'active' | 'draining' | 'retired' | 'new';
}

/** What Redis knows of worker ids under the cluster's prefix. */
export interface KnownWorkers {
  retired: Set<string>;
  draining: Set<string>;
  /** Every id with any trace in Redis (heartbeat, status, shard, drain marks): never given to a new worker. */
  all: Set<string>;
}

/** Reads {@link KnownWorkers} (one MULTI: every key is tagged with the prefix, so one slot on a cluster). */
export async function readKnownWorkers(cmd: DstoreRedis, keys: Keys): Promise<KnownWorkers> {
  const res =
    (await cmd
      .multi()
      .zrange(keys.workers, 0, -1)
      .hkeys(keys.workerStatus)
      .hkeys(keys.workerShards)
      .hkeys(keys.draining)
      .hkeys(keys.retired)
      .exec()) ?? [];
  const [beating, status, shards, draining, retired] = res.map(([err, v]) => {
    if (err) throw err;
    return v as string[];
  });
  return {
    retired: new Set(retired),
    draining: new Set(draining),
    all: new Set([...beating, ...status, ...shards, ...draining, ...retired]),
  };
}

/** `w2` < `w10`. */
function byId(a: LocalWorker, b: LocalWorker): number {
  return a.id.localeCompare(b.id, 'en', { numeric: true });
}

/** The worker dirs under `dataDir`: each subdirectory holding a `worker-id` file. */
export function scanWorkerDirs(dataDir: string, known: KnownWorkers): LocalWorker[] {
  const out: LocalWorker[] = [];
  for (const e of fs.readdirSync(dataDir, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const dir = path.join(dataDir, e.name);
    let id: string;
    try {
      id = fs.readFileSync(path.join(dir, 'worker-id'), 'utf8').trim();
    } catch {
      continue;
    }
    if (!id) continue;
    out.push({ id, dir, state: known.retired.has(id) ? 'retired' : known.draining.has(id) ? 'draining' : 'active' });
  }
  return out.sort(byId);
}

/** The first `w<k>` neither taken as an id nor present as a name under `dataDir`. */
export function freeWorkerId(dataDir: string, taken: Set<string>): string {
  for (let k = 1; ; k++) {
    const id = `w${k}`;
    if (!taken.has(id) && !fs.existsSync(path.join(dataDir, id))) return id;
  }
}

/**
 * The workers to run for `wanted` active ones on `dataDir`: every active and draining worker
 * found there (a shard is never left unserved, even beyond `wanted`), plus new ones with
 * fresh ids and directories up to `wanted` active. A retired worker is not started: its id
 * is out of the cluster for good and its shard was emptied by the drain; a new worker takes
 * its place with a new id and a new directory (reusing the old one would carry its stale
 * `worker-id` and shard identity for nothing). Its directory is left alone, for the user to
 * delete.
 */
export function planWorkers(
  dataDir: string,
  wanted: number,
  known: KnownWorkers,
): { start: LocalWorker[]; retired: LocalWorker[] } {
  const found = scanWorkerDirs(dataDir, known);
  const start = found.filter((w) => w.state !== 'retired');
  const taken = new Set([...known.all, ...found.map((w) => w.id)]);
  let active = start.filter((w) => w.state === 'active').length;
  while (active < wanted) {
    const id = freeWorkerId(dataDir, taken);
    taken.add(id);
    start.push({ id, dir: path.join(dataDir, id), state: 'new' });
    active++;
  }
  return { start, retired: found.filter((w) => w.state === 'retired') };
}
