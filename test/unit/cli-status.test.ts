import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { buildProgram } from '../../cli/main';
import { bashCompletion } from '../../cli/commands/completion';
import { renderStatus } from '../../cli/commands/status';
import type { ClusterStatus } from '../../coordinator/cluster-status';

function sample(): ClusterStatus {
  const stream = (length: number, pending: number, lag: number | null) => ({
    key: 'k',
    length,
    pending,
    lag,
    lastDeliveredId: '1-0',
  });
  return {
    coordinator: 'c1',
    prefix: 'dstore',
    at: new Date(2024, 4, 1, 13, 4, 5).getTime(),
    workers: [
      {
        id: 'w1',
        live: true,
        ready: true,
        state: 'ready',
        storage: 'ok',
        storageError: null,
        shard: 's-1',
        rows: 1200,
        chunks: 3,
        tables: 1,
        shardBytes: 1_500_000,
        heartbeatAgeMs: 450,
        host: 'h',
        pid: 10,
        stream: stream(40, 0, 0),
        counters: null,
        indexes: { ready: 2, failed: 1 },
      },
      {
        id: 'w2',
        live: false,
        ready: false,
        state: 'stopped',
        storage: 'ok',
        storageError: null,
        shard: null,
        rows: null,
        chunks: null,
        tables: null,
        shardBytes: null,
        heartbeatAgeMs: 65_000,
        host: null,
        pid: null,
        stream: null,
        counters: null,
        indexes: { ready: 0, failed: 0 },
      },
    ],
    coordinators: [
      { id: 'c1', live: true, heartbeatAgeMs: 300, replyStreamLength: 7 },
      { id: 'c2', live: false, heartbeatAgeMs: 20_000, replyStreamLength: 0 },
    ],
    tables: 1,
    chunks: 3,
    underReplicated: 2,
    openPosts: 0,
    deadLetters: {
      count: 1,
      recent: [
        { id: '5-0', worker: 'w1', stream: 'dstore:worker:w1:ops', entry: '4-0', reason: 'unknown message type "X"' },
      ],
    },
    queues: { repair: { active: 1, waiting: 0, delayed: 1, failed: 0, completed: 12 } },
    incomplete: [],
    redisMemory: { usedBytes: 2_500_000, maxBytes: 0, usedRatio: 0 },
  };
}

describe('dstore status', () => {
  describe('when rendering a cluster status', () => {
    it('shows the summary, workers with stream figures, coordinators, dead letters and queues', () => {
      const lines = renderStatus(sample(), 200);
      assert.equal(lines[0], 'dstore status  prefix dstore  via c1  at 2024-05-01 13:04:05');
      assert.equal(
        lines[1],
        'workers 1/2 live  coordinators 1/2 live  tables 1  chunks 3  under-replicated 2  open POSTs 0  dead letters 1',
      );
      const at = (title: string) => lines.indexOf(title);
      assert.deepEqual(lines.slice(at('WORKERS') + 1, at('WORKERS') + 4), [
        '  id  live  ready  state    rows  chunks  shard    indexes      stream  pending  lag  heartbeat   host',
        '  w1  yes   yes    ready    1200       3  1.50 MB  2, 1 failed      40        0    0  450ms ago   h:10',
        '  w2  no    no     stopped                -        0                                  1m 05s ago  -',
      ]);
      assert.deepEqual(lines.slice(at('COORDINATORS') + 1, at('COORDINATORS') + 4), [
        '  id         live  heartbeat  reply stream',
        '  c1 (this)  yes   300ms ago             7',
        '  c2         no    20s ago               0',
      ]);
      assert.deepEqual(lines.slice(at('DEAD LETTERS (1)') + 1, at('DEAD LETTERS (1)') + 3), [
        '  id   worker  entry  reason',
        '  5-0  w1      4-0    unknown message type "X"',
      ]);
      assert.deepEqual(lines.slice(at('QUEUES') + 1), [
        '  queue   active  waiting  delayed  failed  completed',
        '  repair       1        0        1       0         12',
      ]);
    });

    it('shows Redis memory, and warns near maxmemory', () => {
      assert.ok(renderStatus(sample(), 200).includes('redis memory 2.50 MB (no maxmemory)'));
      const full = {
        ...sample(),
        redisMemory: { usedBytes: 900, maxBytes: 1000, usedRatio: 0.9, warning: 'Redis uses 90 % of its maxmemory' },
      };
      const lines = renderStatus(full, 200);
      assert.ok(lines.includes('redis memory 900 B of 1.00 kB maxmemory (90 %)'), lines.join('\n'));
      assert.ok(lines.includes('warning: Redis uses 90 % of its maxmemory'));
    });

    it('says when a worker cannot store', () => {
      const s = sample();
      s.workers[0] = { ...s.workers[0], live: false, storage: 'full', storageError: 'database or disk is full' };
      const row = renderStatus(s, 200).find((l) => l.startsWith('  w1 '));
      assert.match(row ?? '', /ready, disk full/);
    });

    it('fits every line in a narrow terminal', () => {
      for (const w of [40, 60, 80])
        for (const l of renderStatus(sample(), w)) assert.ok([...l].length <= w, `${w} columns: ${JSON.stringify(l)}`);
    });

    it('says which parts Redis did not answer in time', () => {
      const lines = renderStatus({ ...sample(), incomplete: ['queues'] }, 200);
      assert.equal(lines[2], 'warning: no answer in time from Redis for: queues (their figures show as 0)');
    });
  });
});

describe('dstore completion bash', () => {
  const script = bashCompletion(buildProgram());
  /** What bash offers for `words` (the last one being completed), with the real script loaded. */
  function complete(...words: string[]): string[] {
    const arr = ['dstore', ...words].map((w) => `'${w}'`).join(' ');
    const r = spawnSync(
      'bash',
      ['-c', `${script}\nCOMP_WORDS=(${arr}); COMP_CWORD=${words.length}; _dstore; printf '%s\\n' "\${COMPREPLY[@]}"`],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    return r.stdout.split('\n').filter(Boolean).sort();
  }

  it('is valid bash', () => {
    const r = spawnSync('bash', ['-n'], { input: script, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  });

  it('completes command names', () => {
    assert.deepEqual(complete('st'), ['status']);
    assert.deepEqual(complete('wor'), ['worker', 'workers']);
  });

  it('completes subcommands and flags of the command typed so far', () => {
    assert.deepEqual(complete('table', ''), ['--help', 'alter', 'changes', 'create', 'drop', 'ls']);
    assert.deepEqual(complete('status', '--w'), ['--watch']);
    assert.deepEqual(complete('--url', 'http://x', 'table', 'create', 't', '--s'), ['--schema']);
  });

  it('completes the values of a flag with fixed choices', () => {
    assert.deepEqual(complete('fetch', 'events', '--format', ''), ['csv', 'json', 'ndjson', 'table']);
    assert.deepEqual(complete('workers', '--format', 'j'), ['json']);
  });
});

describe('dstore --version', () => {
  it('prints the version of package.json', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as {
      version: string;
    };
    const r = spawnSync(process.execPath, [path.join(__dirname, '..', '..', 'cli', 'main.js'), '--version'], {
      encoding: 'utf8',
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), pkg.version);
  });
});
