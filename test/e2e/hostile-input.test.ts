import 'reflect-metadata';
import { strict as assert } from 'node:assert';
import fc from 'fast-check';
import { clusterSuite } from '../support/cluster';
import { waitFor } from '../support/wait';

/**
 * Malformed input against a real coordinator over HTTP and straight into a real worker's
 * ops stream: always a 4xx (or a 2xx for input that happens to be valid) with a JSON
 * error, never a 500, a hang or a crash; hostile stream entries are dead-lettered and the
 * worker keeps serving.
 */

const SEED = 424242;
// Bounded so the suite stays quick; a failure prints the seed and path to replay it.
const RUNS = 60;

const hostileText = fc.oneof(
  fc.constantFrom(
    "' OR 1=1 --",
    '"; DROP TABLE t; --',
    '{"$gt":',
    '\u0000',
    '%00',
    '../../etc/passwd',
    '__proto__',
    'constructor',
    '😀',
    '\ud800',
    'a'.repeat(300),
  ),
  fc.string({ unit: 'binary', maxLength: 20 }),
);
const key = fc.oneof(
  hostileText,
  fc.constantFrom('$and', '$or', '$not', '$gt', '$in', '$regex', '$where', 'n', 's', 'a.b', '..', '_id', '$'),
);
const json = fc.letrec<{ v: unknown }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.double(),
    fc.integer(),
    hostileText,
    fc.array(tie('v'), { maxLength: 3 }),
    fc.dictionary(key, tie('v'), { maxKeys: 3 }),
  ),
})).v;

interface Answer {
  status: number;
  text: string;
}

async function send(
  url: string,
  method: string,
  path: string,
  body?: string,
  contentType = 'application/json',
): Promise<Answer> {
  const res = await fetch(url + path, {
    method,
    headers: body === undefined ? {} : { 'content-type': contentType },
    body,
  });
  return { status: res.status, text: await res.text() };
}

/** A non-500 answer; a 4xx must be a JSON {error, message}. Returns the status. */
function assertHandled(a: Answer, what: string): number {
  assert.ok(a.status < 500, `${what}: HTTP ${a.status} ${a.text.slice(0, 300)}`);
  if (a.status >= 400) {
    const body = JSON.parse(a.text) as { error?: unknown; message?: unknown };
    assert.equal(typeof body.error, 'string', `${what}: no error code in ${a.text.slice(0, 200)}`);
    assert.ok(typeof body.message === 'string' && body.message.length > 0, `${what}: no message`);
  } else {
    // A 200 stream must not end with an error line.
    assert.doesNotMatch(a.text, /"_error"/, `${what}: ${a.text.slice(0, 300)}`);
  }
  return a.status;
}

describe('e2e: fuzzed and hostile input', function () {
  this.timeout(240_000);
  const statuses = new Map<string, number>();
  const tally = (route: string, status: number) =>
    statuses.set(`${route} ${status}`, (statuses.get(`${route} ${status}`) ?? 0) + 1);

  const e2e = clusterSuite({ workers: 1, replicas: 1, env: { DSTORE_MAX_RESULT_ROWS: '1000' } });

  before(async () => {
    assert.equal(
      (await e2e.cluster.api('PUT', '/tables/t', { schema: { n: 'integer', s: 'string', j: 'json' } })).status,
      201,
    );
    assert.equal((await e2e.cluster.api('PUT', '/tables/free')).status, 201);
    const rows = Array.from({ length: 50 }, (_, i) => JSON.stringify({ n: i, s: `s${i % 7}`, j: { a: i % 3 } })).join(
      '\n',
    );
    assert.equal((await e2e.cluster.api('POST', '/tables/t/records', rows, 'application/x-ndjson')).status, 200);
  });

  after(async () => {
    if (statuses.size) console.log('      statuses seen:', Object.fromEntries([...statuses].sort()));
  });

  it('POST /tables/t/query with random JSON bodies: 200 or a JSON 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          json,
          fc.record({ where: json }),
          fc.record(
            { where: json, fields: json, sort: json, limit: json, aggregate: json, groupBy: json },
            { requiredKeys: [] },
          ),
        ),
        async (body) => {
          tally(
            'query',
            assertHandled(
              await send(e2e.cluster.url, 'POST', '/tables/t/query', JSON.stringify(body)),
              `query ${JSON.stringify(body)}`,
            ),
          );
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('GET /tables/t/records with random query strings: 200 or a JSON 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record(
          { where: hostileText, fields: hostileText, sort: hostileText, limit: hostileText, partial: hostileText },
          { requiredKeys: [] },
        ),
        async (qs) => {
          const path = '/tables/t/records?' + new URLSearchParams(qs as Record<string, string>).toString();
          tally('get', assertHandled(await send(e2e.cluster.url, 'GET', path), `GET ${path}`));
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('PATCH and DELETE with random bodies on a schemaless table: 2xx or a JSON 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(fc.record({ where: json, set: json }, { requiredKeys: [] }), fc.boolean(), async (body, del) => {
        const a = await send(e2e.cluster.url, del ? 'DELETE' : 'PATCH', '/tables/free/records', JSON.stringify(body));
        tally(del ? 'delete' : 'patch', assertHandled(a, `${del ? 'DELETE' : 'PATCH'} ${JSON.stringify(body)}`));
      }),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('POST records with random lines, arrays and CSV: 2xx or a JSON 4xx', async () => {
    const line = fc.oneof(
      json.map((v) => JSON.stringify(v) ?? 'null'),
      hostileText,
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(line, { minLength: 1, maxLength: 5 }),
        fc.constantFrom('application/x-ndjson', 'application/json', 'text/csv', 'text/plain'),
        fc.constantFrom('t', 'free'),
        async (lines, ct, table) => {
          const body = ct === 'application/json' ? `[${lines.join(',')}]` : lines.join('\n');
          const a = await send(e2e.cluster.url, 'POST', `/tables/${table}/records`, body, ct);
          tally(`post ${table}`, assertHandled(a, `POST ${ct} ${body.slice(0, 200)}`));
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('PUT /tables/<random name> with random schemas: 2xx or a JSON 4xx', async () => {
    await fc.assert(
      fc.asyncProperty(
        hostileText,
        fc.oneof(
          json,
          hostileText.map((s) => `${s}:string`),
        ),
        async (name, schema) => {
          // encodeURIComponent refuses lone surrogates; send their UTF-8 replacement's encoding.
          const a = await send(
            e2e.cluster.url,
            'PUT',
            `/tables/${encodeURIComponent(name.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd'))}`,
            JSON.stringify({ schema }),
          );
          tally('put', assertHandled(a, `PUT ${JSON.stringify(name)} ${JSON.stringify(schema)}`));
        },
      ),
      { seed: SEED, numRuns: RUNS },
    );
  });

  it('answers a refused upload with its error while the client is still sending, not a reset connection', async () => {
    // 8 MB after a bad first line: far more than socket buffers, so the client is mid-upload when the answer comes.
    const tail = `${JSON.stringify({ pad: 'x'.repeat(200) })}\n`.repeat(40_000);
    for (const [path, type, body, status] of [
      ['/tables/t/records', 'application/x-ndjson', `{not json\n${tail}`, 400],
      ['/tables/no_such_table/records', 'application/x-ndjson', tail, 404],
      ['/tables/t/records', 'text/plain', tail, 415],
    ] as const) {
      const r = await e2e.cluster.api<{ error: string }>('POST', path, body, type);
      assert.equal(r.status, status, `${path} ${type}: ${JSON.stringify(r.body)}`);
    }
  });

  it('raw garbage: bad JSON, wrong content types, odd methods', async () => {
    const cases: [string, string, string | undefined, string][] = [
      ['POST', '/tables/t/query', '{', 'application/json'],
      ['POST', '/tables/t/query', '[]', 'application/json'],
      ['POST', '/tables/t/query', '"x"', 'application/json'],
      ['POST', '/tables/t/query', 'where=1', 'application/x-www-form-urlencoded'],
      ['PATCH', '/tables/t/records', 'null', 'application/json'],
      ['POST', '/tables/t/records', '\u0000\u0001\u0002', 'application/octet-stream'],
      ['POST', '/tables/t/records', '[{"n":1}', 'application/json'],
      ['POST', '/tables/t/records', '{"n":1}}', 'application/x-ndjson'],
      ['POST', '/tables/%00/records', '{"n":1}', 'application/x-ndjson'],
      ['GET', '/tables/..%2F..%2Fetc/records', undefined, ''],
      ['GET', '/tables/t/records?where=%7B%22n%22%3A%7B%22%24gt%22%3A%7B%7D%7D%7D', undefined, ''],
      ['GET', '/tables/t/records?limit=-1', undefined, ''],
      ['GET', '/tables/t/records?limit=99999999999999999999', undefined, ''],
      ['GET', '/tables/t/records?sort=n:sideways', undefined, ''],
      ['PUT', '/tables/' + 'x'.repeat(5000), '{}', 'application/json'],
      ['PUT', '/tables', '{}', 'application/json'],
      ['DELETE', '/tables/t/records', '{"where":null}', 'application/json'],
      ['POST', '/tables/t/records', 'n,s\n1,a,EXTRA\n', 'text/csv'],
    ];
    for (const [method, path, body, ct] of cases) {
      const a = await send(e2e.cluster.url, method, path, body, ct || undefined);
      tally('raw', assertHandled(a, `${method} ${path} ${JSON.stringify(body)}`));
      assert.ok(a.status >= 400, `${method} ${path} should be refused, got ${a.status}`);
    }
  });

  it('hostile ops-stream entries are dead-lettered and the worker keeps serving', async () => {
    const keys = e2e.keys;
    const ops = keys.workerOps('w1');
    const r = e2e.cluster.redis;
    const huge = 'x'.repeat(4 * 1024 * 1024);
    const entries: string[][] = [
      ['garbage', 'yes'],
      ['type', 'NO_SUCH_TYPE'],
      ['type', 'POST'],
      [
        'type',
        'POST',
        'chunk',
        '01ARZ3NDEKTSV4RRFFQ69G5FAV',
        'post',
        'p',
        'table',
        't',
        'replicas',
        'w1',
        'replyTo',
        keys.coordReplies('c1'),
        'ids',
        'a\nb',
        'rows',
        'not json',
      ],
      [
        'type',
        'POST',
        'chunk',
        '[]',
        'post',
        '{}',
        'table',
        '../../etc',
        'replicas',
        '',
        'replyTo',
        'elsewhere:replies',
        'ids',
        '',
        'rows',
        '',
      ],
      [
        'type',
        'SETUP_TABLE',
        'op',
        'o1',
        'table',
        'x',
        'schema',
        '{"a":"nope"}',
        'version',
        '-1',
        'replyTo',
        keys.coordReplies('c1'),
      ],
      [
        'type',
        'UPDATE',
        'op',
        'o2',
        'table',
        't',
        'where',
        '{"$where":"1"}',
        'set',
        '[]',
        'replyTo',
        keys.coordReplies('c1'),
      ],
      [
        'type',
        'DELETE',
        'op',
        'o3',
        'table',
        't',
        'where',
        '{"n":{"$gt":{}}}',
        'replyTo',
        'other-prefix:coord:c1:replies',
      ],
      ['type', 'DROP_TABLE', 'op', 'o4', 'table', 't', 'replyTo', 'x'.repeat(10_000)],
      ['type', 'COMMIT', 'op', 'o5', 'post', huge, 'replyTo', keys.coordReplies('c1')],
      ['type', huge],
      ['\u0000', '\u0000'],
    ];
    const ids: string[] = [];
    for (const e of entries) ids.push((await r.xadd(ops, '*', ...e))!);
    const dead = await waitFor(
      async () => {
        const all = await r.xrange(keys.dead, '-', '+');
        const mine = all.filter(([, f]) => f[f.indexOf('stream') + 1] === ops && ids.includes(f[f.indexOf('id') + 1]));
        return mine.length === ids.length ? mine : undefined;
      },
      { what: 'every hostile entry in the dead-letter stream', timeoutMs: 30_000 },
    );
    for (const [, f] of dead) assert.ok(f[f.indexOf('reason') + 1].length > 0, 'a dead letter without a reason');
    // The table the DROP_TABLE entry named is still there, the worker is live and answers.
    await e2e.cluster.waitLive(['w1']);
    assert.deepEqual(await e2e.cluster.query('t', { aggregate: [{ op: 'count' }] }), [{ count: 50 }]);
    const more = await e2e.cluster.api('POST', '/tables/t/records', '{"n":1000,"s":"after"}\n', 'application/x-ndjson');
    assert.equal(more.status, 200, JSON.stringify(more.body));
    assert.equal((await e2e.cluster.query('t', { where: { s: 'after' } })).length, 1);
    assert.equal([...e2e.cluster.workers.values()][0].child.child.exitCode, null, 'the worker exited');
    assert.equal((await send(e2e.cluster.url, 'GET', '/healthz')).status, 200);
  });
});
