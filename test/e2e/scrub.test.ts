import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { clusterSuite } from '../support/cluster';
import { lossAndDuplicates, makeRows } from '../support/data';
import type { ScrubReport } from '../../coordinator/jobs/scrub';
import type { Row } from '../support/driver';
import { scrubReportsSince } from '../support/scrub-reports';
import { waitFor } from '../support/wait';

describe('e2e: scrub finds a silently altered replica and rebuilds it', function () {
  this.timeout(120_000);
  let expected: Row[];
  let loadedAt: number;

  const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '500', DSTORE_SCRUB_MS: '700' } });

  before(async () => {
    const rows = makeRows(5000, 4);
    await e2e.cluster.api('PUT', '/tables/t');
    assert.equal(
      (
        await e2e.cluster.api(
          'POST',
          '/tables/t/records',
          rows.map((r) => JSON.stringify(r)).join('\n'),
          'application/x-ndjson',
        )
      ).status,
      200,
    );
    // A write after the load: digests must follow updates, or scrub would flag every copy.
    assert.equal(
      (await e2e.cluster.api('PATCH', '/tables/t/records', { where: { city: 'Lima' }, set: { seen: true } })).status,
      200,
    );
    expected = rows.map((r) => (r.city === 'Lima' ? { ...r, seen: true } : r));
    loadedAt = Date.now();
  });

  /** The first scrub pass that started after `after` and satisfies `ok`, from the report stream. */
  async function report(after: number, ok: (r: ScrubReport) => boolean = () => true): Promise<ScrubReport | undefined> {
    return (await scrubReportsSince(e2e.cluster.redis, e2e.keys, after + 1)).find(ok);
  }

  it('reports every copy healthy after loads and updates', async () => {
    const r = await waitFor(() => report(loadedAt), { what: 'a scrub report after the load', timeoutMs: 20_000 });
    assert.equal(r.copies, 20, '10 chunks × 2 copies compared');
    assert.deepEqual([r.corrupt, r.divergent, r.rebuilt], [[], [], []]);
    // scrub:last is the newest entry of the report stream (read in one MULTI: passes go on).
    const [[, last], [, newest]] = (await e2e.cluster.redis
      .multi()
      .get(e2e.keys.scrubReport)
      .xrevrange(e2e.keys.scrubReports, '+', '-', 'COUNT', 1)
      .exec()) as [[null, string], [null, [string, string[]][]]];
    assert.deepEqual(JSON.parse(last), JSON.parse(newest[0][1][1]));
  });

  it('rebuilds the altered copies, so a read served only by that replica is exact', async () => {
    const w2 = e2e.cluster.workers.get('w2')!;
    await w2.child.stop();
    const db = new Database(path.join(w2.dataDir, 'shard.sqlite'));
    const ident = `t_${(db.prepare("SELECT seq FROM _tables WHERE name = 't'").get() as { seq: number }).seq}`;
    const altered = db.prepare(`UPDATE ${ident} SET doc = json_set(doc, '$.n', -1) WHERE rowid % 7 = 0`).run().changes;
    db.close();
    assert.ok(altered > 0);
    const t0 = Date.now();
    e2e.cluster.startWorker('w2');
    await e2e.cluster.waitLive(['w1', 'w2', 'w3']);

    const fixed = await waitFor(() => report(t0, (r) => r.rebuilt.length > 0), {
      what: 'scrub to rebuild the altered copies',
      timeoutMs: 30_000,
    });
    assert.ok(
      fixed.corrupt.every((c) => c.worker === 'w2'),
      'only w2 is flagged',
    );
    assert.ok(fixed.rebuilt.every((c) => c.worker === 'w2' && c.from !== 'w2'));
    const clean = await waitFor(() => report(fixed.at, (r) => r.corrupt.length === 0), {
      what: 'a clean scrub pass after the rebuild',
      timeoutMs: 30_000,
    });
    assert.equal(clean.copies, 20);

    for (const id of ['w1', 'w3']) {
      e2e.cluster.workers.get(id)!.child.kill('SIGKILL');
      await e2e.cluster.workers.get(id)!.child.exited;
    }
    await e2e.cluster.waitLive(['w2']);
    const alone = Date.now();
    // Only w2 is left: it answers every chunk it holds (2/3 of them), from its rebuilt copies.
    const metas = Object.values(await e2e.cluster.redis.hgetall(e2e.keys.chunks)).map(
      (v) => JSON.parse(v) as { replicas: string[]; rows: number },
    );
    const held = metas.filter((m) => m.replicas.includes('w2')).reduce((n, m) => n + m.rows, 0);
    const r = await e2e.cluster.api<Row[]>('POST', '/tables/t/query', { partial: true });
    assert.equal(r.status, 200);
    const got = r.body.filter((x) => !('_partial' in x));
    assert.equal(got.length, held);
    const check = lossAndDuplicates(expected, got);
    assert.deepEqual([check.duplicated, check.wrong], [0, 0], 'no row of w2 differs from what was written');

    // A pass with w1 and w3 gone compares only w2's copies and names the two it could not check.
    const lone = await waitFor(() => report(alone), { what: 'a scrub pass with only w2 live', timeoutMs: 30_000 });
    assert.deepEqual([...lone.unchecked].sort(), ['w1', 'w3']);
    assert.equal(lone.copies, metas.filter((m) => m.replicas.includes('w2')).length);
    assert.deepEqual([lone.corrupt, lone.divergent, lone.rebuilt], [[], [], []]);
  });
});
