import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import type { DeadLetterPage } from '../../coordinator/dead-letters';
import { clusterSuite } from '../support/cluster';
import { projectRoot } from '../support/processes';
import { waitFor } from '../support/wait';

/**
 * Dead letters can be listed and cleared, over HTTP by admins only (`GET` and `DELETE
 * /admin/dead-letters`) and with `dstore dead-letters list|clear`. The entries are provoked
 * as they happen: malformed entries XADDed onto a worker's ops stream, which the worker
 * dead-letters.
 */

const SECRETS = { admin: 'a'.repeat(32), write: 'w'.repeat(32) };
const TOKENS = `ops:${SECRETS.admin}:admin,ci:${SECRETS.write}:write`;
// A value that must never show in a listing: payloads may hold row data.
const SECRET_ROW = `row-data-${Date.now().toString(36)}`;

/** Runs the CLI to completion with stdin closed (not a terminal). */
function cli(args: string[], token = SECRETS.admin): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(projectRoot(), 'dist', 'cli', 'main.js'), ...args], {
    encoding: 'utf8',
    timeout: 30_000,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, DSTORE_TOKEN: token, COLUMNS: '' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('e2e: dead letters (GET/DELETE /admin/dead-letters, dstore dead-letters)', function () {
  this.timeout(120_000);
  const e2e = clusterSuite({ workers: 1, replicas: 1, env: { DSTORE_TOKENS: TOKENS }, token: SECRETS.admin });
  const provoked: string[] = [];

  /** XADDs malformed entries onto w1's ops stream and waits until w1 dead-lettered them all. */
  async function provoke(entries: string[][]): Promise<string[]> {
    const ops = e2e.keys.workerOps('w1');
    const ids: string[] = [];
    for (const e of entries) ids.push((await e2e.cluster.redis.xadd(ops, '*', ...e))!);
    await waitFor(
      async () => {
        const dead = await e2e.cluster.redis.xrange(e2e.keys.dead, '-', '+');
        const seen = new Set(dead.map(([, f]) => f[f.indexOf('id') + 1]));
        return ids.every((id) => seen.has(id));
      },
      { what: `w1 to dead-letter ${ids.join(', ')}`, timeoutMs: 20_000 },
    );
    provoked.push(...ids);
    return ids;
  }

  const list = async (query = '') => {
    const r = await e2e.cluster.api<DeadLetterPage>('GET', `/admin/dead-letters${query}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  };

  before(async () => {
    await provoke([
      ['type', 'BOGUS', 'note', SECRET_ROW],
      ['type', 'POST', 'chunk', 'c1', 'rows', `{"secret":"${SECRET_ROW}"}`],
      ['no-type-at-all', SECRET_ROW],
    ]);
  });

  it('lists them newest first with their stream, entry, worker, reason, type and time, and the total', async () => {
    const page = await list();
    assert.equal(page.total, 3);
    const [noType, post, bogus] = page.deadLetters;
    assert.deepEqual(
      page.deadLetters.map((d) => [d.entryId, d.worker, d.stream, d.type]),
      [
        [provoked[2], 'w1', e2e.keys.workerOps('w1'), null],
        [provoked[1], 'w1', e2e.keys.workerOps('w1'), 'POST'],
        [provoked[0], 'w1', e2e.keys.workerOps('w1'), 'BOGUS'],
      ],
    );
    assert.match(bogus.reason, /unknown message type "BOGUS"/);
    assert.match(post.reason, /invalid POST/);
    assert.match(noType.reason, /unknown message type/);
    for (const d of page.deadLetters) {
      assert.match(d.id, /^\d+-\d+$/);
      assert.equal(d.at, Number(d.id.split('-')[0]));
      assert.ok(Math.abs(d.at - Date.now()) < 60_000, `at ${d.at} is not about now`);
    }
    assert.ok(!JSON.stringify(page).includes(SECRET_ROW), 'a listing shows no payload');
    const one = await list('?limit=1');
    assert.equal(one.total, 3);
    assert.deepEqual(
      one.deadLetters.map((d) => d.entryId),
      [provoked[2]],
    );
  });

  it('refuses a bad limit or selection with a 400 naming the parameter', async () => {
    for (const [method, q, field] of [
      ['GET', '?limit=0', 'limit'],
      ['GET', '?limit=abc', 'limit'],
      ['GET', '?limit=100000', 'limit'],
      ['DELETE', '?before=yesterday', 'before'],
      ['DELETE', '?ids=1-1,nope', 'ids'],
      ['DELETE', '?before=1-1&ids=1-1', 'before'],
    ]) {
      const r = await e2e.cluster.api<{ error: string; message: string; field: string }>(
        method,
        `/admin/dead-letters${q}`,
      );
      assert.equal(r.status, 400, `${method} ${q}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.field, field);
      assert.match(r.body.message, new RegExp(`\\?${field}=`));
    }
    assert.equal((await list()).total, 3, 'a refused DELETE deleted nothing');
  });

  it('is for admins only: 401 without a token, 403 for the write role', async () => {
    for (const method of ['GET', 'DELETE']) {
      const none = await fetch(`${e2e.cluster.url}/admin/dead-letters`, { method });
      assert.equal(none.status, 401);
      const writer = await fetch(`${e2e.cluster.url}/admin/dead-letters`, {
        method,
        headers: { authorization: `Bearer ${SECRETS.write}` },
      });
      assert.equal(writer.status, 403);
      assert.match(((await writer.json()) as { message: string }).message, /needs the admin role; token ci has write/);
    }
    assert.equal((await list()).total, 3);
  });

  it('dstore dead-letters list prints them as a table or as the API answer', () => {
    const table = cli(['dead-letters', 'list', '--url', e2e.cluster.url]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.trimEnd().split('\n');
    assert.equal(lines[0], '3 dead letter(s)');
    assert.match(lines[1], /^id +time +worker +type +entry +reason$/);
    assert.match(
      lines[2],
      new RegExp(`^\\d+-\\d+ +\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d +w1 +- +${provoked[2]} +unknown message type`),
    );
    assert.match(lines[4], new RegExp(` w1 +BOGUS +${provoked[0]} `));
    const json = cli(['dead-letters', 'list', '--limit', '2', '--format', 'json', '--url', e2e.cluster.url]);
    assert.equal(json.code, 0, json.stderr);
    const page = JSON.parse(json.stdout) as DeadLetterPage;
    assert.equal(page.total, 3);
    assert.deepEqual(
      page.deadLetters.map((d) => d.entryId),
      [provoked[2], provoked[1]],
    );
  });

  it('dstore dead-letters fails with one line naming the flag to change', () => {
    const bad = cli(['dead-letters', 'list', '--limit', '0', '--url', e2e.cluster.url]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stderr, 'dstore: --limit must be a whole number from 1 to 1000, got "0"\n');
    const noYes = cli(['dead-letters', 'clear', '--url', e2e.cluster.url]);
    assert.equal(noYes.code, 1);
    assert.equal(
      noYes.stderr,
      'dstore: dead-letters clear would delete 3 dead letter(s): add --yes to confirm (stdin is not a terminal, so it cannot ask)\n',
    );
    const writer = cli(['dead-letters', 'list', '--url', e2e.cluster.url], SECRETS.write);
    assert.equal(writer.code, 1);
    assert.match(writer.stderr, /^dstore: GET \/admin\/dead-letters needs the admin role; token ci has write\n$/);
  });

  it('DELETE ?ids= and ?before= remove just those', async () => {
    const [older, newer] = await provoke([
      ['type', 'NOPE_1'],
      ['type', 'NOPE_2'],
    ]);
    const page = await list();
    assert.equal(page.total, 5);
    const idOf = (entry: string) => page.deadLetters.find((d) => d.entryId === entry)!.id;
    const byIds = await e2e.cluster.api('DELETE', `/admin/dead-letters?ids=${idOf(newer)},1-1`);
    assert.deepEqual(byIds.body, { deleted: 1 });
    // Everything older than the first of the two new ones: the three from before.
    const before = await e2e.cluster.api('DELETE', `/admin/dead-letters?before=${idOf(older)}`);
    assert.deepEqual(before.body, { deleted: 3 });
    assert.deepEqual(
      (await list()).deadLetters.map((d) => d.entryId),
      [older],
    );
  });

  it('dstore dead-letters clear --yes removes them all, and then there are none', async () => {
    await provoke([['type', 'NOPE_3']]);
    assert.equal((await list()).total, 2);
    const clear = cli(['dead-letters', 'clear', '--yes', '--url', e2e.cluster.url]);
    assert.equal(clear.code, 0, clear.stderr);
    assert.equal(clear.stdout, 'deleted 2 dead letter(s)\n');
    assert.deepEqual(await list(), { total: 0, deadLetters: [] });
    assert.equal(await e2e.cluster.redis.xlen(e2e.keys.dead), 0);
    const again = cli(['dead-letters', 'clear', '--url', e2e.cluster.url]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, 'no dead letters to clear\n');
    assert.equal(cli(['dead-letters', 'list', '--url', e2e.cluster.url]).stdout, 'no dead letters\n');
  });

  it('DELETE without a selection clears every one', async () => {
    await provoke([
      ['type', 'NOPE_4'],
      ['type', 'NOPE_5'],
    ]);
    const r = await e2e.cluster.api('DELETE', '/admin/dead-letters');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { deleted: 2 });
    assert.equal((await list()).total, 0);
  });
});
