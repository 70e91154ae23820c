import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ClusterStatus } from '../../coordinator/cluster-status';
import { withBrowser } from '../support/browser';
import { clusterSuite } from '../support/cluster';
import { makeRows } from '../support/data';
import { documentedKeys, patternRegex } from '../support/operations-doc';
import { keepTemp, projectRoot, tempDir } from '../support/processes';
import { scanKeys } from '../support/redis';
import { waitFor } from '../support/wait';

/** Prometheus text → samples. */
function parseMetrics(text: string): { name: string; labels: Record<string, string>; value: number }[] {
  const out: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

/** Runs the CLI to completion (stdout and stderr apart). */
function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(projectRoot(), 'dist', 'cli', 'main.js'), ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, COLUMNS: '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('e2e: operator tooling (status, metrics, logs, queue dashboard, Redis keys)', function () {
  this.timeout(180_000);
  const N = 3000;
  // A value that must never reach a log line at info level, nor the status answer.
  const SECRET = `secret-${Date.now().toString(36)}`;
  const rows = makeRows(N, 7).map((r) => ({ ...r, note: SECRET }));
  const body = rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
  let deadId: string;
  let shots: string;

  const e2e = clusterSuite({ workers: 2, replicas: 2, env: { DSTORE_CHUNK_ROWS: '500', LOG_FORMAT: 'json' } });

  before(async () => {
    shots = tempDir('screenshots');
    assert.equal((await e2e.cluster.api('PUT', '/tables/events')).status, 201);
    assert.equal((await e2e.cluster.api('POST', '/tables/events/records', body, 'application/x-ndjson')).status, 200);
    assert.equal(
      (await e2e.cluster.query('events', { where: { note: SECRET, city: 'Oslo' } })).length,
      rows.filter((r) => (r as { city?: unknown }).city === 'Oslo').length,
    );
    assert.equal((await e2e.cluster.query('events', { aggregate: [{ op: 'count' }] }))[0].count, N);
    // An entry no worker can decode: w1 dead-letters it.
    deadId = (await e2e.cluster.redis.xadd(e2e.keys.workerOps('w1'), '*', 'type', 'BOGUS', 'note', SECRET))!;
    await waitFor(
      async () => {
        const s = (await e2e.cluster.api<ClusterStatus>('GET', '/status')).body;
        const done =
          s.deadLetters.count === 1 &&
          s.workers.every((w) => w.counters?.rows === N && w.counters.entries > 0 && w.stream?.pending === 0);
        return done && s.workers.find((w) => w.id === 'w1')!.counters!.deadLettered === 1 ? true : undefined;
      },
      { what: 'heartbeats reporting every row and the dead letter', timeoutMs: 30_000 },
    );
  });

  describe('GET /status', () => {
    it('reports each worker, its ops stream as Redis reports it, and the dead letter without its payload', async () => {
      const res = await e2e.cluster.api<ClusterStatus>('GET', '/status');
      assert.equal(res.status, 200);
      const s = res.body;
      assert.deepEqual(s.incomplete, []);
      assert.deepEqual(
        s.workers.map((w) => [w.id, w.live, w.ready, w.rows]),
        [
          ['w1', true, true, N],
          ['w2', true, true, N],
        ],
        'R = 2 over 2 workers: each holds every row',
      );
      for (const w of s.workers) {
        const key = e2e.keys.workerOps(w.id);
        assert.equal(w.stream?.length, await e2e.cluster.redis.xlen(key));
        const [count] = (await e2e.cluster.redis.xpending(key, 'apply')) as [number];
        assert.equal(w.stream?.pending, count);
        assert.equal(w.stream?.lag, 0);
      }
      assert.equal(s.tables, 1);
      assert.equal(s.chunks, N / 500);
      assert.deepEqual(
        s.deadLetters.recent.map((d) => [d.worker, d.entry]),
        [['w1', deadId]],
      );
      assert.match(s.deadLetters.recent[0].reason, /BOGUS|type/);
      assert.ok(s.coordinators.some((c) => c.id === s.coordinator && c.live));
      assert.deepEqual(Object.keys(s.queues).sort(), ['cleanup', 'repair', 'scrub']);
      assert.ok(!JSON.stringify(s).includes(SECRET), 'no row data in /status');
    });
  });

  describe('GET /metrics', () => {
    it('exports ingest counters, latency histograms and the workers\u2019 heartbeat counters', async () => {
      const res = await fetch(`${e2e.cluster.url}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      const samples = parseMetrics(await res.text());
      const one = (name: string, labels: Record<string, string> = {}) => {
        const hits = samples.filter(
          (x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v),
        );
        assert.equal(hits.length, 1, `${name} ${JSON.stringify(labels)}: ${hits.length} samples`);
        return hits[0].value;
      };
      assert.equal(one('dstore_rows_ingested_total'), N);
      assert.equal(one('dstore_bytes_ingested_total'), Buffer.byteLength(body));
      assert.equal(
        one('dstore_http_request_duration_seconds_count', {
          method: 'POST',
          route: '/tables/:name/records',
          status: '200',
        }),
        1,
      );
      assert.equal(one('dstore_fetch_duration_seconds_count', { outcome: 'ok' }), 2);
      assert.equal(one('dstore_workers_live'), 2);
      for (const w of ['w1', 'w2']) {
        assert.equal(one('dstore_worker_rows_stored_total', { workerId: w }), N);
        assert.equal(one('dstore_worker_rows', { workerId: w }), N);
        assert.equal(one('dstore_worker_up', { workerId: w }), 1);
        assert.equal(one('dstore_stream_length', { workerId: w }), await e2e.cluster.redis.xlen(e2e.keys.workerOps(w)));
        assert.equal(one('dstore_stream_lag', { workerId: w }), 0);
      }
      assert.equal(one('dstore_worker_dead_lettered_total', { workerId: 'w1' }), 1);
      assert.equal(one('dstore_worker_dead_lettered_total', { workerId: 'w2' }), 0);
      assert.equal(one('dstore_dead_letters'), 1);
      assert.equal(one('dstore_under_replicated_chunks'), await e2e.cluster.redis.zcard(e2e.keys.underReplicated));
      assert.equal(one('dstore_chunks'), N / 500);
      for (const queue of ['cleanup', 'repair', 'scrub'])
        assert.ok(one('dstore_queue_jobs', { queue, state: 'failed' }) >= 0);
      assert.equal(samples.filter((x) => x.name === 'dstore_status_incomplete').length, 0);
    });
  });

  describe('dstore status', () => {
    let screen = '';

    it('prints one screen of workers, coordinators, dead letters and queues, and --json for scripts', () => {
      const text = cli(['status', '--url', e2e.cluster.url]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, new RegExp(`^dstore status  prefix ${e2e.prefix}  via `));
      assert.match(text.stdout, /^workers 2\/2 live .* dead letters 1$/m);
      assert.match(text.stdout, new RegExp(`^  w1  yes   yes    ready +${N} `, 'm'));
      assert.match(text.stdout, /^DEAD LETTERS \(1\)$/m);
      assert.match(text.stdout, /^  repair /m);
      screen = text.stdout;
      const json = cli(['status', '--json', '--url', e2e.cluster.url]);
      assert.equal(json.code, 0, json.stderr);
      assert.deepEqual(
        (JSON.parse(json.stdout) as ClusterStatus).workers.map((w) => w.id),
        ['w1', 'w2'],
      );
    });

    it('shows that screen in Chromium as an operator\u2019s terminal would', async function () {
      assert.ok(screen, 'the screen of the test above');
      const png = path.join(shots, 'dstore-status.png');
      const shown = await withBrowser(this, async (ctx) => {
        const page = await ctx.newPage();
        const html = screen.replace(/&/g, '&amp;').replace(/</g, '&lt;');
        await page.setContent(
          `<html><body style="margin:0;background:#111;color:#ddd"><pre id="t" style="font:14px monospace;padding:16px;margin:0">${html}</pre></body></html>`,
        );
        await page.screenshot({ path: png, fullPage: true });
        return page.locator('#t').innerText();
      });
      assert.equal(shown.trimEnd(), screen.trimEnd());
      assert.ok(fs.statSync(png).size > 0);
      if (keepTemp()) console.error(`screenshot of dstore status: ${png}`);
    });

    it('fails with one line and a non-zero exit when the coordinator is unreachable', () => {
      const r = cli(['status', '--url', 'http://127.0.0.1:1']);
      assert.notEqual(r.code, 0);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, /^dstore: /);
    });
  });

  describe('the queue dashboard at /admin/queues', () => {
    it('loads in Chromium and lists the repair, cleanup and scrub queues', async function () {
      const api = await e2e.cluster.api<{ queues: { name: string }[] }>('GET', '/admin/queues/api/queues');
      assert.equal(api.status, 200);
      assert.deepEqual(api.body.queues.map((q) => q.name).sort(), ['cleanup', 'repair', 'scrub']);
      const png = path.join(shots, 'queue-dashboard.png');
      const text = await withBrowser(this, async (ctx) => {
        const page = await ctx.newPage();
        const res = await page.goto(`${e2e.cluster.url}/admin/queues`);
        assert.equal(res?.status(), 200);
        // The sidebar lists the queues first; the cards with their job counts load after it.
        await page.waitForFunction(
          () =>
            ['repair', 'cleanup', 'scrub'].every((q) => document.body.innerText.includes(q)) &&
            !document.body.innerText.includes('Loading'),
          undefined,
          {
            timeout: 30_000,
          },
        );
        await page.screenshot({ path: png, fullPage: true });
        return page.locator('body').innerText();
      });
      assert.match(text, new RegExp(`dstore · ${e2e.prefix}`), 'the board title names the prefix, once');
      assert.ok(fs.statSync(png).size > 0);
      if (keepTemp()) console.error(`screenshot of the queue dashboard: ${png}`);
    });
  });

  describe('logs', () => {
    it('are JSON lines naming the component and the process id, with request ids and no row values', async () => {
      const res = await fetch(
        `${e2e.cluster.url}/tables/events/records?where=${encodeURIComponent(JSON.stringify({ note: SECRET }))}&limit=1`,
        { headers: { 'x-request-id': 'ops-test-req-1' } },
      );
      assert.equal(res.headers.get('x-request-id'), 'ops-test-req-1');
      await res.text();
      const files = [
        { file: e2e.cluster.coordinator.logFile, idKey: 'coordinatorId' },
        ...[...e2e.cluster.workers.values()].map((w) => ({ file: w.child.logFile, idKey: 'workerId', id: w.id })),
      ];
      const done = await waitFor(
        () =>
          fs
            .readFileSync(e2e.cluster.coordinator.logFile, 'utf8')
            .split('\n')
            .find((l) => l.includes('"ops-test-req-1"')),
        { what: 'the request log line', timeoutMs: 10_000 },
      );
      const line = JSON.parse(done) as Record<string, unknown>;
      assert.deepEqual(
        [line.msg, line.reqId, line.route, line.status, line.component],
        ['request done', 'ops-test-req-1', '/tables/:name/records', 200, 'http'],
      );
      for (const { file, idKey, id } of files as { file: string; idKey: string; id?: string }[]) {
        const text = fs.readFileSync(file, 'utf8');
        assert.ok(!text.includes(SECRET), `${path.basename(file)} holds a row value`);
        const json = text.split('\n').filter((l) => l.startsWith('{'));
        assert.ok(json.length > 3, `${path.basename(file)}: only ${json.length} JSON lines`);
        for (const l of json) {
          assert.equal((l.match(/"component":/g) ?? []).length, 1, `one component key: ${l}`);
          const o = JSON.parse(l) as Record<string, unknown>;
          assert.equal(typeof o.component, 'string', l);
          assert.equal(typeof o[idKey], 'string', `${idKey} missing: ${l}`);
          if (id) assert.equal(o[idKey], id, l);
        }
      }
    });
  });

  describe('Redis keys', () => {
    it('are all in the key table of docs/operations.md', async () => {
      const patterns = documentedKeys().map((d) => patternRegex(d.pattern, e2e.prefix));
      const found = new Set(await scanKeys(e2e.cluster.redis, e2e.keys.patterns));
      assert.ok(found.size > 20, `only ${found.size} keys under ${e2e.prefix}`);
      const undocumented = [...found].filter((k) => !patterns.some((re) => re.test(k)));
      assert.deepEqual(undocumented, [], 'keys missing from docs/operations.md');
      // Every kind of key this run must have written is there (the scan saw real keys).
      const keys = e2e.keys;
      for (const k of [
        keys.workerOps('w1'),
        keys.dead,
        keys.workers,
        keys.workerStatus,
        keys.tables,
        keys.chunks,
        keys.tableChunks('events'),
        keys.workerChunks('w2'),
        keys.coordinators,
      ]) {
        assert.ok(found.has(k), `${k} not found`);
      }
    });
  });
});
