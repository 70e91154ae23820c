/**
 * The API describes itself (issue 18, part 4): `GET /openapi.json` is an OpenAPI 3.1 document
 * made from the routes' own schemas, valid for a standard validator, naming every route; what
 * it says a request takes is what the coordinator checks (a body of the wrong shape, built
 * from the document alone, is a 400 naming the field), and what it says an answer is, the
 * answers are. `/docs` shows it in Chromium.
 */
import Ajv from 'ajv';
import { strict as assert } from 'node:assert';
import { ROUTE_SCHEMAS } from '../../coordinator/api/route-schemas';
import { withBrowser } from '../support/browser';
import { clusterSuite } from '../support/cluster';

type Doc = {
  openapi: string;
  info: { version: string };
  paths: Record<string, Record<string, Operation>>;
};
type Operation = {
  parameters?: { in: string; name: string; schema: Record<string, unknown> }[];
  requestBody?: { content: Record<string, { schema: Schema }> };
  responses: Record<string, { content?: Record<string, { schema: Schema }> }>;
};
type Schema = Record<string, unknown> & {
  properties?: Record<string, Schema>;
  type?: string | string[];
  required?: string[];
};

/** ESM-only packages from this CommonJS build (TypeScript would turn import() into require()). */
const importEsm = new Function('m', 'return import(m)') as <T>(m: string) => Promise<T>;

/** `/tables/:name` → `/tables/{name}`, as OpenAPI writes paths. */
const openApiPath = (route: string) => route.replace(/:([A-Za-z]+)/g, '{$1}');

/** A value of another JSON type than `type` says. */
function wrongValue(s: Schema): unknown {
  const types = ([] as string[]).concat(s.type ?? []);
  if (types.length === 0) return undefined;
  for (const v of [12345, 'text', true, ['x'], { x: 1 }]) {
    const t = Array.isArray(v) ? 'array' : typeof v === 'object' ? 'object' : typeof v;
    const fits = types.includes(t) || (t === 'number' && types.includes('integer'));
    if (!fits) return v;
  }
  return undefined;
}

/** A value of the JSON type `type` says (the first of several). */
function validValue(s: Schema): unknown {
  const t = ([] as string[]).concat(s.type ?? 'object')[0];
  return { object: {}, array: ['city'], string: 'city', boolean: false, integer: 1, number: 1, null: null }[t];
}

describe('e2e: the OpenAPI document and /docs', function () {
  this.timeout(120_000);
  const e2e = clusterSuite({ workers: 2, replicas: 2 });
  let doc: Doc;

  before(async () => {
    const r = await fetch(`${e2e.cluster.url}/openapi.json`);
    assert.equal(r.status, 200);
    doc = (await r.json()) as Doc;
    await e2e.cluster.api('PUT', '/tables/t', { schema: { city: 'string', n: 'integer' } });
  });

  it('is a valid OpenAPI 3.1 document (a standard validator), with every route of the API', async () => {
    const { Validator } = await importEsm<{
      Validator: new () => { validate(d: unknown): Promise<{ valid: boolean; errors?: unknown }>; version: string };
    }>('@seriousme/openapi-schema-validator');
    const v = new Validator();
    const res = await v.validate(doc);
    assert.ok(res.valid, JSON.stringify(res.errors, null, 1));
    assert.equal(v.version, '3.1');
    const documented = Object.entries(doc.paths).flatMap(([p, ops]) =>
      Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`),
    );
    const routes = Object.keys(ROUTE_SCHEMAS).map((k) => {
      const [m, p] = k.split(' ');
      return `${m} ${openApiPath(p)}`;
    });
    assert.deepEqual(documented.sort(), routes.sort(), 'exactly the API routes, no page or asset');
    for (const [p, ops] of Object.entries(doc.paths))
      for (const [m, op] of Object.entries(ops)) {
        assert.ok(op.responses['4XX'], `${m} ${p} documents its errors`);
        for (const name of p.match(/\{(\w+)\}/g) ?? [])
          assert.ok(
            op.parameters?.some((x) => x.in === 'path' && `{${x.name}}` === name),
            `${m} ${p} documents ${name}`,
          );
      }
  });

  it('checks requests with what it documents: a wrong type of each body field is a 400 naming it', async () => {
    const c = e2e.cluster;
    let tried = 0;
    for (const [p, ops] of Object.entries(doc.paths)) {
      for (const [m, op] of Object.entries(ops)) {
        const schema = op.requestBody?.content['application/json']?.schema;
        if (!schema?.properties) continue;
        const url = p.replace('{name}', 't').replace('{index}', 'by_x').replace('{id}', 'w-none');
        for (const [field, fs] of Object.entries(schema.properties)) {
          const bad = wrongValue(fs);
          if (bad === undefined) continue;
          // The other required fields present and well typed: the one at fault is this one.
          const others: Record<string, unknown> = Object.fromEntries(
            (schema.required ?? []).map((f: string) => [f, validValue(schema.properties![f])]),
          );
          const r = await c.api<{ error: string; field?: string; message: string }>(m.toUpperCase(), url, {
            ...others,
            [field]: bad,
          });
          assert.equal(r.status, 400, `${m} ${p} with ${field}=${JSON.stringify(bad)}: ${JSON.stringify(r.body)}`);
          assert.equal(r.body.error, 'bad_request');
          assert.equal(r.body.field, field, `${m} ${p}: ${JSON.stringify(r.body)}`);
          assert.ok(r.body.message.includes(field), r.body.message);
          tried++;
        }
      }
    }
    assert.ok(tried >= 12, `tried ${tried} fields`);
    // Keys a body does not take, query values out of their list, names against their pattern.
    const unknown = await c.api<{ field: string; message: string }>('PATCH', '/tables/t/records', {
      where: {},
      set: { n: 1 },
      sett: 1,
    });
    assert.equal(unknown.status, 400);
    assert.equal(unknown.body.field, 'sett');
    assert.match(unknown.body.message, /unknown key "sett"; it takes where, set/);
    const mode = await c.api<{ field: string; message: string }>('POST', '/tables/t/records?onConflict=upsert', '{}');
    assert.deepEqual([mode.status, mode.body.field], [400, 'onConflict']);
    const name = await c.api<{ field: string; message: string }>('PUT', '/tables/bad:name');
    assert.deepEqual([name.status, name.body.field], [400, 'name']);
    assert.match(name.body.message, /invalid table name "bad:name"/);
  });

  it('describes the answers as they are', async () => {
    const c = e2e.cluster;
    const ajv = new Ajv({ strict: false });
    const check = async (method: string, route: string, url: string, body?: unknown) => {
      const r = await c.api(method, url, body);
      const answers = doc.paths[openApiPath(route)][method.toLowerCase()].responses;
      const schema = (answers[String(r.status)] ?? answers[`${String(r.status)[0]}XX`])?.content?.['application/json']
        ?.schema;
      assert.ok(schema, `${method} ${route} documents status ${r.status}`);
      const ok = ajv.validate(schema, r.body);
      assert.ok(ok, `${method} ${url}: ${JSON.stringify(r.body)} ${ajv.errorsText()}`);
    };
    await check('PUT', '/tables/:name', '/tables/docs_t', { schema: 'city:string' });
    await check('PUT', '/tables/:name', '/tables/docs_t', { schema: 'city:string' });
    await check('GET', '/tables', '/tables');
    await check('GET', '/tables/:name', '/tables/docs_t');
    await check('POST', '/tables/:name/records', '/tables/docs_t/records', [{ _id: 'a', city: 'Oslo' }]);
    await check('POST', '/tables/:name/records', '/tables/docs_t/records', [{ _id: 'a', city: 'Oslo' }]);
    await check('PATCH', '/tables/:name/records', '/tables/docs_t/records', { where: {}, set: { city: 'Lima' } });
    await check('PATCH', '/tables/:name', '/tables/docs_t', { addColumns: { n: 'integer' } });
    await check('PUT', '/tables/:name/indexes/:index', '/tables/docs_t/indexes/by_city', { fields: ['city'] });
    await check('GET', '/tables/:name/indexes', '/tables/docs_t/indexes');
    await check('DELETE', '/tables/:name/indexes/:index', '/tables/docs_t/indexes/by_city');
    await check('GET', '/tables/:name/records/:id', '/tables/docs_t/records/a');
    await check('GET', '/tables/:name/records/:id', '/tables/docs_t/records/none');
    await check('DELETE', '/tables/:name/records', '/tables/docs_t/records', { where: {} });
    await check('GET', '/healthz', '/healthz');
    await check('GET', '/workers', '/workers');
    await check('GET', '/rebalance', '/rebalance');
    await check('POST', '/rebalance', '/rebalance', { dryRun: true });
    await check('GET', '/admin/dead-letters', '/admin/dead-letters');
    await check('DELETE', '/tables/:name', '/tables/docs_t');
  });

  it('shows the routes at /docs in Chromium, and a route opens with its parameters', async function () {
    const [text, opened] = await withBrowser(this, async (ctx) => {
      const page = await ctx.newPage();
      const res = await page.goto(`${e2e.cluster.url}/docs`);
      assert.equal(res?.status(), 200);
      await page.waitForSelector('.opblock-summary', { timeout: 30_000 });
      await page.locator('.opblock-summary-path[data-path="/tables/{name}/query"]').click();
      const open = page.locator('.opblock.is-open');
      await open.locator('.parameters').waitFor({ timeout: 30_000 });
      return [await page.locator('body').innerText(), await open.innerText()];
    });
    for (const want of ['dstore', 'OAS 3.1', '/tables/{name}/records', 'Read: filter, project, sort']) {
      assert.ok(text.includes(want), `the page shows ${want}`);
    }
    // The opened route shows its path parameter, its body's fields and its answers.
    for (const want of [/name\s*\*/, /\(path\)/, /table name/, /Request body/, /application\/json/, /Responses/])
      assert.match(opened, want, 'the opened route shows its parameter, body and answers');
  });
});
