import { strict as assert } from 'node:assert';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Command, type Option } from 'commander';
import { buildDelete } from '../../cli/commands/delete';
import {
  buildQuery,
  parseAggregates,
  parseFieldList,
  parseJsonObjectFlag,
  parseLimit,
  parseSort,
  parseNext,
  parseTrailer,
  runQuery,
} from '../../cli/commands/fetch';
import { registerClientCommands } from '../../cli/commands/index';
import { detectFormat } from '../../cli/commands/post';
import { parseSchemaFlag } from '../../cli/commands/table';
import { buildUpdate } from '../../cli/commands/update';
import { CliError, HttpClient, clientFor } from '../../cli/http-client';
import { FETCH_TERMS, inCliTerms } from '../../cli/cli-terms';
import { SHELL_TERMS, shellQuery } from '../../cli/commands/shell';

const cliError = (re: RegExp) => (e: unknown) => e instanceof CliError && re.test(e.message);

describe('cli args: fetch flags', () => {
  it('parses --agg: ops, fields, "as" names, count() and count(*)', () => {
    assert.deepEqual(parseAggregates('count(),sum(x),avg(y) as m'), [
      { op: 'count' },
      { op: 'sum', field: 'x' },
      { op: 'avg', field: 'y', as: 'm' },
    ]);
    assert.deepEqual(parseAggregates(' COUNT(*) AS n , Max( a.b ) '), [
      { op: 'count', as: 'n' },
      { op: 'max', field: 'a.b' },
    ]);
    assert.deepEqual(parseAggregates('count(x)'), [{ op: 'count', field: 'x' }]);
  });

  it('rejects unknown aggregate ops and missing fields clearly', () => {
    assert.throws(
      () => parseAggregates('count(),median(x)'),
      cliError(/^--agg "median\(x\)": unknown aggregate "median"; use count, sum, min, max, avg$/),
    );
    assert.throws(() => parseAggregates('sum()'), cliError(/sum needs a field/));
    assert.throws(() => parseAggregates('sum x'), cliError(/expected op\(field\)/));
    assert.throws(() => parseAggregates('count(),'), cliError(/--agg ""/));
  });

  it('pages with --all and --page-size, or continues one page with --cursor', () => {
    assert.deepEqual(buildQuery({ all: true }), { limit: 1000 });
    assert.deepEqual(buildQuery({ all: true, pageSize: '50', sort: 'n:desc' }), {
      limit: 50,
      sort: [{ field: 'n', dir: 'desc' }],
    });
    assert.deepEqual(buildQuery({ limit: '10', cursor: 'abc.def' }), { limit: 10, cursor: 'abc.def' });
    assert.throws(() => buildQuery({ all: true, limit: '5' }), cliError(/--all .* --page-size N .* not --limit/));
    assert.throws(() => buildQuery({ pageSize: '5' }), cliError(/--page-size goes with --all/));
    assert.throws(() => buildQuery({ all: true, pageSize: 'x' }), cliError(/^--page-size must be a whole number/));
    assert.throws(() => buildQuery({ all: true, pageSize: '0' }), cliError(/--page-size must be 1 or more/));
    assert.throws(() => buildQuery({ all: true, agg: 'count()' }), cliError(/drop --all/));
    assert.throws(() => buildQuery({ cursor: 'abc' }), cliError(/--cursor .* same --limit/));
    assert.equal(parseNext('{"_next":"abc.def"}'), 'abc.def');
    assert.equal(parseNext('{"_next":"abc","a":1}'), undefined);
    assert.equal(parseNext('{"_id":"r1"}'), undefined);
  });

  it('parses --sort with optional :asc / :desc', () => {
    assert.deepEqual(parseSort('f:desc,g, h:ASC'), [
      { field: 'f', dir: 'desc' },
      { field: 'g', dir: 'asc' },
      { field: 'h', dir: 'asc' },
    ]);
    assert.deepEqual(parseSort('a:b:desc'), [{ field: 'a:b', dir: 'desc' }]);
    assert.throws(() => parseSort('f:down'), cliError(/--sort "f:down".*asc or desc/));
  });

  it('parses --fields, --group-by and --limit', () => {
    assert.deepEqual(parseFieldList('--fields', 'a, b.c'), ['a', 'b.c']);
    assert.throws(() => parseFieldList('--fields', 'a,,b'), cliError(/^--fields must be comma-separated/));
    assert.equal(parseLimit('10'), 10);
    assert.throws(() => parseLimit('-1'), cliError(/^--limit must be a whole number/));
    assert.throws(() => parseLimit('ten'), cliError(/--limit/));
  });

  it('reads JSON flags as objects and names the flag when they are wrong', () => {
    assert.deepEqual(parseJsonObjectFlag('--where', '{"a":{"$gt":1}}'), { a: { $gt: 1 } });
    assert.throws(() => parseJsonObjectFlag('--where', '{a:1}'), cliError(/^--where is not valid JSON/));
    assert.throws(() => parseJsonObjectFlag('--set', '[1]'), cliError(/^--set must be a JSON object/));
  });

  it('builds the query body, and refuses combinations the API refuses', () => {
    assert.deepEqual(buildQuery({}), {});
    assert.deepEqual(buildQuery({ where: '{"a":1}', fields: 'a,b', sort: 'a:desc', limit: '5', partial: true }), {
      where: { a: 1 },
      fields: ['a', 'b'],
      sort: [{ field: 'a', dir: 'desc' }],
      limit: 5,
      partial: true,
    });
    assert.deepEqual(buildQuery({ agg: 'count()', groupBy: 'city' }), {
      aggregate: [{ op: 'count' }],
      groupBy: ['city'],
    });
    assert.throws(() => buildQuery({ groupBy: 'city' }), cliError(/--group-by needs --agg/));
    assert.throws(
      () => buildQuery({ agg: 'count()', fields: 'a' }),
      cliError(/--fields cannot be combined with --agg/),
    );
  });

  it('tells trailers from rows', () => {
    assert.deepEqual(parseTrailer('{"_partial":true,"missingWorkers":["w2"],"missingChunks":3}'), {
      kind: 'partial',
      missingWorkers: ['w2'],
      missingChunks: 3,
    });
    assert.deepEqual(parseTrailer('{"_error":{"error":"timeout","message":"slow"}}'), {
      kind: 'error',
      code: 'timeout',
      message: 'slow',
      details: {},
    });
    assert.deepEqual(parseTrailer('{"_error":{"error":"unavailable","message":"m","missingChunks":2}}'), {
      kind: 'error',
      code: 'unavailable',
      message: 'm',
      details: { missingChunks: 2 },
    });
    assert.equal(parseTrailer('{"_id":"r1","a":1}'), undefined);
    assert.equal(parseTrailer('{"_partial":"a user field"}'), undefined);
  });
});

describe('cli errors in CLI terms', () => {
  it('turns a read that misses chunks into a line naming --partial, built from missingChunks, never from the wording', () => {
    const details = { missingWorkers: ['w1', 'w3'], missingChunks: 4 };
    const line = inCliTerms('4 chunk(s) … or ask for a partial answer (partial=true)', details, FETCH_TERMS);
    assert.equal(
      line,
      '4 chunk(s) have no live replica that answers (their replicas: w1, w3); restart those workers or wait for repair, or ask for the rows that can be read with --partial',
    );
    assert.match(inCliTerms('anything', details, SHELL_TERMS), /with "partial": true$/);
    assert.doesNotMatch(
      inCliTerms('… (partial=true)', details, {}),
      /partial/,
      'a command without --partial (get) offers none',
    );
  });

  it('names the flag of the query key an error points at', () => {
    assert.equal(
      inCliTerms(
        'limit 200000000 is over DSTORE_MAX_RESULT_ROWS (10000000), the most rows …',
        { limit: 'DSTORE_MAX_RESULT_ROWS', field: 'limit' },
        FETCH_TERMS,
      ),
      '--limit 200000000 is over DSTORE_MAX_RESULT_ROWS (10000000), the most rows …',
    );
    assert.equal(
      inCliTerms(
        'sort[1].field: unknown field "hp"; the table\'s columns are _id, a',
        { field: 'sort[1].field' },
        FETCH_TERMS,
      ),
      '--sort item 2: unknown field "hp"; the table\'s columns are _id, a',
    );
    assert.equal(
      inCliTerms('aggregate[0].op: must be one of …', { field: 'aggregate[0].op' }, FETCH_TERMS),
      '--agg item 1: must be one of …',
    );
    assert.equal(
      inCliTerms('fields: must name at least one field', { field: 'fields' }, FETCH_TERMS),
      '--fields: must name at least one field',
    );
    assert.equal(
      inCliTerms('where.age.$gt must be a number', { field: 'where.age.$gt' }, FETCH_TERMS),
      '--where: where.age.$gt must be a number',
    );
    assert.equal(
      inCliTerms('set: "_id" cannot be updated', { field: 'set._id' }, FETCH_TERMS),
      '--set: set: "_id" cannot be updated',
    );
  });

  it('leaves other messages, and keys the command has no flag for, as they are', () => {
    assert.equal(inCliTerms('table t does not exist', {}, FETCH_TERMS), 'table t does not exist');
    assert.equal(
      inCliTerms('row 3: field "x" is not in the schema', { row: 3, field: 'x' }, FETCH_TERMS),
      'row 3: field "x" is not in the schema',
    );
    assert.equal(
      inCliTerms('sort[0].field: unknown field', { field: 'sort[0].field' }, SHELL_TERMS),
      'sort[0].field: unknown field',
    );
  });

  it('carries the error body on a CliError', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          error: 'limit_exceeded',
          message: 'limit 9 is over DSTORE_MAX_RESULT_ROWS (5), …',
          limit: 'DSTORE_MAX_RESULT_ROWS',
          field: 'limit',
          value: 9,
          max: 5,
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const client = new HttpClient(
        `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
        undefined,
        FETCH_TERMS,
      );
      await assert.rejects(client.request('POST', '/tables/t/query', { limit: 9 }), (e: unknown) => {
        assert.ok(e instanceof CliError);
        assert.equal(e.message, '--limit 9 is over DSTORE_MAX_RESULT_ROWS (5), …');
        assert.deepEqual(
          [e.status, e.code, e.details],
          [400, 'limit_exceeded', { limit: 'DSTORE_MAX_RESULT_ROWS', field: 'limit', value: 9, max: 5 }],
        );
        return true;
      });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe("cli args: the shell's FETCH", () => {
  it('takes sort, fields, groupBy and aggregate as the CLI writes them', () => {
    assert.deepEqual(shellQuery({ sort: 'Horsepower:desc,Name', limit: 3 }), {
      sort: [
        { field: 'Horsepower', dir: 'desc' },
        { field: 'Name', dir: 'asc' },
      ],
      limit: 3,
    });
    assert.deepEqual(shellQuery({ sort: ['Horsepower:desc', { field: 'Name', dir: 'asc' }] }), {
      sort: [
        { field: 'Horsepower', dir: 'desc' },
        { field: 'Name', dir: 'asc' },
      ],
    });
    assert.deepEqual(shellQuery({ fields: 'a, b', groupBy: 'c', aggregate: 'count(),avg(hp) as m' }), {
      fields: ['a', 'b'],
      groupBy: ['c'],
      aggregate: [{ op: 'count' }, { op: 'avg', field: 'hp', as: 'm' }],
    });
  });

  it('keeps the API form as it is, and names the key in errors', () => {
    const q = { where: { a: 1 }, sort: [{ field: 'a', dir: 'desc' }], partial: true };
    assert.deepEqual(shellQuery(q), q);
    assert.throws(
      () => shellQuery({ sort: 'hp:down' }),
      cliError(/^"sort" "hp:down": the direction after ":" must be asc or desc$/),
    );
    assert.throws(
      () => shellQuery({ aggregate: 'median(x)' }),
      cliError(/^"aggregate" "median\(x\)": unknown aggregate/),
    );
  });
});

describe('cli args: other commands', () => {
  it('detects the post format from the flag, else the extension, else ndjson', () => {
    assert.equal(detectFormat('csv', 'x.json'), 'csv');
    assert.equal(detectFormat(undefined, 'a/b.JSONL'), 'ndjson');
    assert.equal(detectFormat(undefined, 'x.ndjson'), 'ndjson');
    assert.equal(detectFormat(undefined, 'x.json'), 'json');
    assert.equal(detectFormat(undefined, 'x.csv'), 'csv');
    assert.equal(detectFormat(undefined, 'x.txt'), 'ndjson');
    assert.equal(detectFormat(undefined, '-'), 'ndjson');
    assert.equal(detectFormat(undefined, undefined), 'ndjson');
    assert.throws(() => detectFormat('xml', 'x'), cliError(/^--format must be one of ndjson, json, csv/));
  });

  it('requires --where for delete and update, allowing an explicit {}', () => {
    assert.throws(
      () => buildDelete('t', {}),
      cliError(/^delete needs --where; to delete every row of t pass --where '\{\}'$/),
    );
    assert.deepEqual(buildDelete('t', { where: '{}' }), { where: {} });
    assert.throws(() => buildUpdate({ set: '{"a":1}' }), cliError(/^update needs --where/));
    assert.throws(() => buildUpdate({ where: '{}' }), cliError(/^update needs --set/));
    assert.deepEqual(buildUpdate({ where: '{}', set: '{"a":1}' }), { where: {}, set: { a: 1 } });
  });

  it('sends --schema text as is and JSON as an object', () => {
    assert.equal(parseSchemaFlag(' a:integer,b:string '), 'a:integer,b:string');
    assert.deepEqual(parseSchemaFlag('{"a":"integer"}'), { a: 'integer' });
    assert.throws(() => parseSchemaFlag('{a}'), cliError(/^--schema is not valid JSON/));
  });
});

describe('cli args: commander wiring', () => {
  function program(): Command {
    const p = new Command('dstore').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} });
    registerClientCommands(p);
    return p;
  }

  function allCommands(c: Command): Command[] {
    return [c, ...c.commands.flatMap(allCommands)];
  }

  it('registers every client command, each option described and --url on every leaf', () => {
    const p = program();
    assert.deepEqual(
      p.commands.map((c) => c.name()),
      [
        'table',
        'index',
        'post',
        'fetch',
        'get',
        'update',
        'delete',
        'workers',
        'status',
        'dead-letters',
        'rebalance',
        'shell',
        'backup',
        'watch',
      ],
    );
    for (const c of allCommands(p).slice(1)) {
      assert.ok(c.description(), `${c.name()} has no description`);
      for (const o of c.options as readonly Option[])
        assert.ok(o.description, `${c.name()} ${o.flags} has no description`);
      // `backup verify` reads files only: no coordinator to name.
      if (c.commands.length === 0 && c.name() !== 'verify')
        assert.ok(
          c.options.some((o) => o.long === '--url'),
          `${c.name()} lacks --url`,
        );
    }
  });

  it('fails a delete without --where before any request, as a rejected parseAsync', async () => {
    await assert.rejects(
      program().parseAsync(['delete', 't', '--url', 'http://127.0.0.1:9'], { from: 'user' }),
      cliError(/delete needs --where/),
    );
  });

  it('names --url when it is not a URL', async () => {
    await assert.rejects(
      program().parseAsync(['workers', '--url', 'nope'], { from: 'user' }),
      /^Error: --url: is not a URL|--url: is not a URL/,
    );
  });

  it('takes the URL from --url, else DSTORE_URL, treating an empty one as unset', () => {
    const saved = process.env.DSTORE_URL;
    try {
      const c = new Command('x').option('--url <url>');
      process.env.DSTORE_URL = 'http://env:1/';
      assert.equal(clientFor(c).baseUrl, 'http://env:1');
      c.setOptionValue('url', 'http://flag:2');
      assert.equal(clientFor(c).baseUrl, 'http://flag:2');
      process.env.DSTORE_URL = '';
      assert.equal(clientFor(new Command('y')).baseUrl, 'http://127.0.0.1:7070');
    } finally {
      if (saved === undefined) delete process.env.DSTORE_URL;
      else process.env.DSTORE_URL = saved;
    }
  });
});

describe('cli http client', () => {
  let server: http.Server;
  let url: string;
  before(async () => {
    server = http.createServer((req, res) => {
      if (req.url === '/json-error') {
        res.writeHead(404, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ error: 'not_found', message: 'table t does not exist' }));
      }
      if (req.url === '/html-error') {
        res.writeHead(502, { 'content-type': 'text/html' });
        return res.end('<p>bad gateway</p>');
      }
      if (req.url === '/tables/t/query') {
        res.writeHead(200, { 'content-type': 'application/x-ndjson' });
        res.write('{"a":1}\n{"a"');
        setTimeout(() => res.end(':2}\n{"_partial":true,"missingWorkers":["w9"],"missingChunks":1}\n'), 20);
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      req.pipe(res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('sends and parses JSON', async () => {
    assert.deepEqual(await new HttpClient(url).request('POST', '/echo', { a: [1] }), { a: [1] });
  });

  it("throws the server's message and status on an error answer", async () => {
    await assert.rejects(
      new HttpClient(url).request('GET', '/json-error'),
      (e: unknown) =>
        e instanceof CliError && e.message === 'table t does not exist' && e.status === 404 && e.code === 'not_found',
    );
    await assert.rejects(
      new HttpClient(url).request('GET', '/html-error'),
      cliError(/^GET \/html-error failed with HTTP 502 Bad Gateway: <p>bad gateway<\/p>$/),
    );
  });

  it('streams lines split across reads and holds back the trailer', async () => {
    const rows: string[] = [];
    const end = await runQuery(new HttpClient(url), 't', {}, async (lines) => {
      rows.push(...lines);
    });
    assert.deepEqual(rows, ['{"a":1}', '{"a":2}']);
    assert.deepEqual(end, { trailer: { kind: 'partial', missingWorkers: ['w9'], missingChunks: 1 } });
  });

  it('says how to start a coordinator when nothing listens at the URL', async () => {
    const free = http.createServer();
    await new Promise<void>((resolve) => free.listen(0, '127.0.0.1', resolve));
    const port = (free.address() as AddressInfo).port;
    await new Promise<void>((resolve) => free.close(() => resolve()));
    await assert.rejects(
      new HttpClient(`http://127.0.0.1:${port}`).request('GET', '/tables'),
      cliError(
        new RegExp(
          `^cannot reach the coordinator at http://127\\.0\\.0\\.1:${port} \\(is it running\\? start one with dstore up\\)$`,
        ),
      ),
    );
  });
});
