/**
 * The typed client (issue 18, part 5): `import { Dstore } from 'dstore'` against a real
 * cluster, every call checked against plain JS over the rows inserted; then the package as a
 * user gets it: `npm pack`, installed into a scratch project, used from CommonJS, from an ES
 * module and from TypeScript (type-checked with the repository's compiler).
 */
import { strict as assert } from 'node:assert';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Dstore, DstoreError, isDstoreError, type Row } from '../../client';
import { compareSql, toSqlValue } from '../../common/sqlite-order';
import { clusterSuite } from '../support/cluster';
import { makeRows } from '../support/data';
import { projectRoot, tempDir } from '../support/processes';
import { freePort } from '../support/redis';
import { waitFor } from '../support/wait';

const byId = (a: { _id?: unknown }, b: { _id?: unknown }) => compareSql(String(a._id), String(b._id));

async function* generated(n: number): AsyncGenerator<Record<string, unknown>> {
  for (let i = 0; i < n; i++) yield { _id: `g${String(i).padStart(5, '0')}`, i, even: i % 2 === 0 };
}

describe('e2e: the typed client (3 workers, R = 2)', function () {
  this.timeout(300_000);
  const e2e = clusterSuite({ workers: 3, replicas: 2, env: { DSTORE_CHUNK_ROWS: '300' } });
  const rows = makeRows(1500, 301);

  it('creates, inserts (array and async iterable), pages, counts, updates, deletes and reads by id', async () => {
    const db = new Dstore({ url: e2e.cluster.url });
    const made = await db.createTable('t');
    assert.deepEqual([made.created, made.table.name, made.table.schema], [true, 't', undefined]);
    const t = db.table<Row>('t');
    const ins = await t.insert(rows);
    assert.equal(ins.inserted, rows.length);
    const g = await db.createTable('g', { schema: { i: 'integer', even: 'boolean' } });
    assert.equal(g.created, true);
    assert.equal((await db.table('g').insert(generated(4000))).inserted, 4000);

    // query() follows cursors: every row once, in _id order, a page of 128 at a time.
    const all: Row[] = [];
    for await (const r of t.query({}, { pageSize: 128 })) all.push(r as Row);
    assert.deepEqual(
      all.map((r) => r._id),
      [...rows].sort(byId).map((r) => r._id),
    );
    const sorted: unknown[] = [];
    for await (const r of t.query(
      { where: { city: 'Oslo' }, sort: [{ field: 'n', dir: 'desc' }], fields: ['_id', 'n'], limit: 250 },
      { pageSize: 60 },
    ))
      sorted.push(r);
    const want = rows
      .filter((r) => r.city === 'Oslo')
      .sort((a, b) => -compareSql(toSqlValue(a.n), toSqlValue(b.n)) || byId(a, b))
      .slice(0, 250)
      .map((r) => ({ _id: r._id, n: r.n }));
    assert.deepEqual(sorted, want);

    const page = await t.page({ limit: 10 });
    assert.equal(page.rows.length, 10);
    assert.ok(page.next);
    const next = await t.page({ limit: 10 }, page.next);
    assert.deepEqual(
      [...page.rows, ...next.rows].map((r) => r._id),
      [...rows]
        .sort(byId)
        .slice(0, 20)
        .map((r) => r._id),
    );

    assert.equal(await t.count(), rows.length);
    assert.equal(await t.count({ city: 'Lima' }), rows.filter((r) => r.city === 'Lima').length);
    const groups = await t.aggregate({ aggregate: [{ op: 'count' }], groupBy: ['city'] });
    assert.deepEqual(
      Object.fromEntries(groups.map((x) => [x.city, x.count])),
      rows.reduce<Record<string, number>>((m, r) => ({ ...m, [String(r.city)]: (m[String(r.city)] ?? 0) + 1 }), {}),
    );
    assert.equal(await db.table('g').count({ even: true }), 2000);

    const up = await t.update({ city: 'Lima' }, { flag: 'x' });
    assert.equal(up.updated, rows.filter((r) => r.city === 'Lima').length);
    const del = await t.delete({ city: 'Accra' });
    assert.equal(del.deleted, rows.filter((r) => r.city === 'Accra').length);
    const lima = rows.find((r) => r.city === 'Lima')!;
    assert.deepEqual(await t.get(lima._id), { ...lima, flag: 'x' });
    assert.equal(await t.get(rows.find((r) => r.city === 'Accra')!._id), undefined);

    const tables = await db.tables({ stats: true });
    assert.deepEqual(tables.map((x) => x.name).sort(), ['g', 't']);
    assert.equal(tables.find((x) => x.name === 'g')!.stats!.rows, 4000);
    const status = await db.status();
    assert.ok(Array.isArray(status.workers));
  });

  it('manages indexes', async () => {
    const t = new Dstore(e2e.cluster.url).table('t');
    assert.deepEqual(await t.indexes.create('by_city', ['city']), {
      table: 't',
      index: 'by_city',
      fields: ['city'],
      created: true,
    });
    const list = await waitFor(
      async () => {
        const l = await t.indexes.list();
        const ix = l.indexes.find((i) => i.name === 'by_city');
        return ix && Object.values(ix.workers).every((w) => w.state === 'ready') ? l : undefined;
      },
      { what: 'by_city ready', timeoutMs: 30_000 },
    );
    assert.deepEqual(
      list.indexes.map((i) => [i.name, i.fields]),
      [['by_city', ['city']]],
    );
    await t.indexes.drop('by_city');
    assert.deepEqual((await t.indexes.list()).indexes, []);
  });

  it("throws DstoreErrors carrying the server's status, code and details", async () => {
    const db = new Dstore({ url: e2e.cluster.url });
    const t = db.table('t');
    const fail = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        assert.ok(e instanceof DstoreError, String(e));
        return e;
      }
      assert.fail('no error');
    };
    const dup = await fail(t.insert([{ _id: rows[0]._id }]));
    assert.deepEqual([dup.status, dup.code, dup.details.row, dup.details.field], [409, 'conflict', 1, '_id']);
    const bad = await fail(t.query({ where: { n: { $regex: 'x' } } }).next());
    assert.deepEqual([bad.status, bad.code, bad.details.field], [400, 'bad_filter', 'where.n.$regex']);
    const missing = await fail(db.table('nope').count());
    assert.ok(isDstoreError(missing, 'not_found'));
    assert.equal(missing.status, 404);
    const cursor = await fail(t.page({ limit: 5 }, 'forged.cursor'));
    assert.deepEqual([cursor.code, cursor.details.field], ['bad_cursor', 'cursor']);
    const down = await fail(new Dstore(`http://127.0.0.1:${await freePort()}`).tables());
    assert.equal(down.status, undefined);
    assert.match(down.message, /cannot reach the coordinator/);
  });

  it('is a package: npm pack, installed into a scratch project, used from CommonJS, ESM and TypeScript', async () => {
    const root = projectRoot();
    const dir = tempDir('client-pack');
    const packed = execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
      cwd: root,
      encoding: 'utf8',
    });
    const [info] = JSON.parse(packed) as { filename: string; files: { path: string }[] }[];
    const files = info.files.map((f) => f.path);
    assert.ok(files.includes('dist/client/index.d.ts'), 'the types are in the package');
    assert.ok(files.includes('common/lua/take-ids-2.lua'), "the CLI's Lua scripts are in the package");
    assert.ok(!files.some((f) => f.startsWith('dist/test/') || f.startsWith('test/')), 'no tests in the package');
    const app = path.join(dir, 'app');
    fs.mkdirSync(app);
    // The scratch project pins dstore's dependencies with a lockfile made from ours (and our
    // overrides), so `npm ci` installs from the cache `npm ci` filled: no network, no drift. No
    // install scripts: the client needs none of the native parts (better-sqlite3 is the workers').
    const lock = JSON.parse(fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8')) as {
      packages: Record<string, { dev?: boolean }>;
    };
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as Record<string, unknown>;
    const tgz = `file:../${info.filename}`;
    const packages: Record<string, unknown> = {
      '': { name: 'app', dependencies: { dstore: tgz } },
      'node_modules/dstore': {
        version: pkg.version,
        resolved: tgz,
        dependencies: pkg.dependencies,
        bin: pkg.bin,
        engines: pkg.engines,
      },
    };
    for (const [k, v] of Object.entries(lock.packages)) if (k.startsWith('node_modules/') && !v.dev) packages[k] = v;
    fs.writeFileSync(
      path.join(app, 'package.json'),
      JSON.stringify({ name: 'app', private: true, dependencies: { dstore: tgz }, overrides: pkg.overrides }),
    );
    fs.writeFileSync(
      path.join(app, 'package-lock.json'),
      JSON.stringify({ name: 'app', lockfileVersion: 3, requires: true, packages }),
    );
    const install = spawnSync('npm', ['ci', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'], {
      cwd: app,
      encoding: 'utf8',
    });
    assert.equal(install.status, 0, install.stderr);
    const url = e2e.cluster.url;
    const run = (file: string) => {
      const r = spawnSync(process.execPath, [file], {
        cwd: app,
        encoding: 'utf8',
        env: { ...process.env, DSTORE_URL: url },
      });
      assert.equal(r.status, 0, `${file}: ${r.stderr}`);
      return JSON.parse(r.stdout) as unknown;
    };
    fs.writeFileSync(
      path.join(app, 'main.cjs'),
      `const { Dstore, DstoreError } = require('dstore');
(async () => {
  const db = new Dstore({ url: process.env.DSTORE_URL });
  const g = db.table('g');
  let n = 0, last = '';
  for await (const r of g.query({ where: { even: false }, fields: ['_id'] }, { pageSize: 333 })) {
    if (r._id <= last) throw new Error('out of order');
    last = r._id; n++;
  }
  let code;
  try { await db.table('nope').count(); } catch (e) { code = e instanceof DstoreError && e.code; }
  console.log(JSON.stringify({ n, code }));
})().catch((e) => { console.error(e); process.exit(1); });
`,
    );
    assert.deepEqual(run('main.cjs'), { n: 2000, code: 'not_found' });
    fs.writeFileSync(
      path.join(app, 'main.mjs'),
      `import { Dstore } from 'dstore';
const t = new Dstore(process.env.DSTORE_URL).table('g');
console.log(JSON.stringify({ n: await t.count({ i: { $lt: 10 } }) }));
`,
    );
    assert.deepEqual(run('main.mjs'), { n: 10 });
    fs.writeFileSync(
      path.join(app, 'main.ts'),
      `import { Dstore, DstoreError, type InsertResult, type Row } from 'dstore';
interface Event { city: string; amount: number }
async function main(): Promise<void> {
  const db = new Dstore({ url: process.env.DSTORE_URL });
  await db.createTable('ts_events', { schema: { city: 'string', amount: 'number' } });
  const events = db.table<Event>('ts_events');
  const r: InsertResult = await events.insert([{ city: 'Oslo', amount: 12 }, { city: 'Lima', amount: 3 }]);
  const out: Event[] = [];
  for await (const e of events.query({ sort: [{ field: 'amount', dir: 'desc' }] })) out.push({ city: e.city, amount: e.amount });
  const byId: Row | undefined = await db.table<Row>('ts_events').get('none');
  try {
    await events.update({}, { amount: 'x' as unknown as number });
  } catch (e) {
    if (!(e instanceof DstoreError)) throw e;
  }
  console.log(JSON.stringify({ inserted: r.inserted, out, byId: byId ?? null }));
}
main().catch((e) => { console.error(e); process.exit(1); });
`,
    );
    fs.writeFileSync(
      path.join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'node16',
          moduleResolution: 'node16',
          strict: true,
          lib: ['ES2022', 'DOM'],
          types: [],
          skipLibCheck: true,
          outDir: 'out',
        },
        files: ['main.ts', 'env.d.ts'],
      }),
    );
    // `process` without @types/node in the scratch project.
    fs.writeFileSync(
      path.join(app, 'env.d.ts'),
      'declare const process: { env: Record<string, string | undefined>; exit(code: number): never };\n',
    );
    const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], {
      encoding: 'utf8',
    });
    assert.equal(tsc.status, 0, tsc.stdout + tsc.stderr);
    assert.deepEqual(run(path.join('out', 'main.js')), {
      inserted: 2,
      out: [
        { city: 'Oslo', amount: 12 },
        { city: 'Lima', amount: 3 },
      ],
      byId: null,
    });
    // A type error is caught: the types are the package's, not `any`.
    fs.writeFileSync(
      path.join(app, 'main.ts'),
      `import { Dstore } from 'dstore';\nconst n: string = new Dstore().table('t').name.length;\nvoid n;\n`,
    );
    const wrong = spawnSync(
      process.execPath,
      [path.join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app],
      {
        encoding: 'utf8',
      },
    );
    assert.notEqual(wrong.status, 0);
    assert.match(wrong.stdout, /Type 'number' is not assignable to type 'string'/);
  });
});
