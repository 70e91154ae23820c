import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import { clusterSuite } from '../support/cluster';
import { lossAndDuplicates, makeRows } from '../support/data';
import type { Row } from '../support/driver';
import { sleep, waitFor } from '../support/wait';

const WORKERS = 2;
const WINDOW = 2;
const BATCH_ROWS = 50;
const CHUNK_ROWS = 50;
const ROWS = 6000;

/**
 * Read flow control: a client that does not read its answer must not make the coordinator
 * hold the table. Workers send DSTORE_FETCH_WINDOW batches each and then wait for credit,
 * so what the coordinator holds (`dstore_fetch_queued_bytes_peak`) stays under
 * window × workers × one batch, and the answer is still exact. A client that goes away
 * releases the workers.
 */
describe('e2e: reads are flow-controlled for slow clients', function () {
  this.timeout(180_000);
  let rows: Row[];
  let batchBytes: number;

  const e2e = clusterSuite({
    workers: WORKERS,
    replicas: 1,
    env: {
      DSTORE_FETCH_WINDOW: String(WINDOW),
      DSTORE_FETCH_BATCH_ROWS: String(BATCH_ROWS),
      DSTORE_CHUNK_ROWS: String(CHUNK_ROWS),
      DSTORE_FETCH_TIMEOUT_MS: '20000',
      DSTORE_WORKER_TIMEOUT_MS: '20000',
    },
  });

  before(async () => {
    assert.equal((await e2e.cluster.api('PUT', '/tables/t')).status, 201);
    // Padded rows, so the table is many times what the window allows.
    rows = makeRows(ROWS, 7).map((r, i) => ({ ...r, pad: 'p'.repeat(200 + (i % 50)) }));
    const r = await e2e.cluster.api(
      'POST',
      '/tables/t/records',
      rows.map((x) => JSON.stringify(x)).join('\n') + '\n',
      'application/x-ndjson',
    );
    assert.equal(r.status, 200, JSON.stringify(r.body));
    // A batch is cut at a chunk boundary once it holds BATCH_ROWS rows: at most a chunk more.
    const longest = Math.max(...rows.map((x) => JSON.stringify(x).length));
    batchBytes = (BATCH_ROWS + CHUNK_ROWS) * longest;
  });

  async function metric(name: string): Promise<number> {
    const text = await (await fetch(`${e2e.cluster.url}/metrics`)).text();
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
    assert.ok(m, `${name} is not in /metrics`);
    return Number(m[1]);
  }

  /** Starts a full read and returns the paused response (nothing is read from it yet). */
  function openRead(): Promise<{ res: http.IncomingMessage; req: http.ClientRequest }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        `${e2e.cluster.url}/tables/t/query`,
        { method: 'POST', headers: { 'content-type': 'application/json' } },
        (res) => {
          res.pause();
          resolve({ res, req });
        },
      );
      req.on('error', reject);
      req.end('{}');
    });
  }

  it('holds at most window × workers batches while the client reads slowly, and answers exactly', async () => {
    const { res } = await openRead();
    assert.equal(res.statusCode, 200);
    // Not reading: with no flow control the workers would now send the whole table here.
    await sleep(1500);
    const parts: Buffer[] = [];
    for await (const b of res) {
      parts.push(b as Buffer);
      // Read slowly: a little at a time, with pauses.
      if (parts.length % 20 === 0) await sleep(20);
    }
    const got = Buffer.concat(parts)
      .toString()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Row);
    assert.deepEqual(lossAndDuplicates(rows, got), { lost: 0, duplicated: 0, wrong: 0 });
    assert.equal(got.length, ROWS);
    const peak = await metric('dstore_fetch_queued_bytes_peak');
    const bound = WINDOW * WORKERS * batchBytes;
    assert.ok(peak > 0, 'the peak counts what was held');
    assert.ok(peak <= bound, `the coordinator held ${peak} bytes of answers; the window allows ${bound}`);
    assert.ok(peak < JSON.stringify(rows).length / 2, `the coordinator held ${peak} bytes, most of the table`);
    await waitFor(async () => ((await metric('dstore_fetch_queued_bytes')) === 0 ? true : undefined), {
      timeoutMs: 10_000,
      what: 'nothing held after the read',
    });
  });

  it('releases the workers when clients go away mid-read', async () => {
    // More abandoned reads than a worker answers at once (4): if they kept their turns, the
    // read after them would never be answered.
    const open = await Promise.all(Array.from({ length: 6 }, () => openRead()));
    await sleep(500);
    for (const { req, res } of open) {
      res.destroy();
      req.destroy();
    }
    const all = await e2e.cluster.query<Row>('t', {});
    assert.deepEqual(lossAndDuplicates(rows, all), { lost: 0, duplicated: 0, wrong: 0 });
    await waitFor(async () => ((await metric('dstore_fetch_queued_bytes')) === 0 ? true : undefined), {
      timeoutMs: 10_000,
      what: 'nothing held after the clients left',
    });
  });
});
