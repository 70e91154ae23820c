import type { CoordinatorContext } from '../context';
import type { WorkerStatus } from '../../common/worker-status';
import { bumpPlacement } from '../placement';
import { SCRIPT_CODES, ScriptError, scriptResult } from '../../common/script-codes';

/** A worker id that now serves another shard, and the chunks it stopped counting for. */
export interface NewIncarnation {
  worker: string;
  shard: string;
  was: string;
  chunks: number;
}

/**
 * Compares the shard each worker reports in its heartbeat with the one recorded for its id
 * (`<prefix>:workers:shards`). A first report is recorded. Another shard means a new
 * incarnation (a lost or replaced disk, a shard restored from an old copy): the chunks
 * recorded for the worker are treated as lost, repaired from the other replicas, and the
 * worker is no longer asked for them (lose-shard-4.lua). Run by the repair sweep.
 */
export async function reconcileShards(ctx: CoordinatorContext): Promise<NewIncarnation[]> {
  const [[, statuses], [, records]] = (await ctx.cmd
    .multi()
    .hgetall(ctx.keys.workerStatus)
    .hgetall(ctx.keys.workerShards)
    .exec()) as [[null, Record<string, string>], [null, Record<string, string>]];
  const out: NewIncarnation[] = [];
  for (const [worker, raw] of Object.entries(statuses)) {
    let shard: string | undefined;
    try {
      shard = (JSON.parse(raw) as WorkerStatus).shard;
    } catch {
      continue;
    }
    if (!shard) continue;
    const was = records[worker] ? ((JSON.parse(records[worker]) as { shard?: string }).shard ?? '') : '';
    if (was === shard) continue;
    const res = await ctx.cmd.loseShard(
      ctx.keys.workerShards,
      ctx.keys.workerChunks(worker),
      ctx.keys.chunks,
      ctx.keys.underReplicated,
      worker,
      was,
      JSON.stringify({ shard, at: Date.now() }),
      String(Date.now()),
    );
    let n: number;
    try {
      n = scriptResult('lose-shard-4.lua', Number(res[0]));
    } catch (e) {
      // Another coordinator recorded it first: the next sweep sees the new record.
      if (e instanceof ScriptError && e.code === SCRIPT_CODES.RECORD_CHANGED) continue;
      throw e;
    }
    if (was === '') continue;
    const tables = res.slice(1).map(String);
    if (tables.length > 0) {
      const p = ctx.cmd.multi();
      bumpPlacement(p, ctx.keys, tables);
      await p.exec();
    }
    ctx.workers.invalidate();
    ctx.log.warn(
      { worker, shard, was, chunks: n },
      `worker ${worker} serves a new shard (its disk was lost, replaced or restored): its ${n} chunk(s) are repaired from other replicas`,
    );
    out.push({ worker, shard, was, chunks: n });
  }
  return out;
}
