import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { planWorkers, type KnownWorkers } from '../../cli/local-workers';
import { tempDir } from '../support/processes';

/** A data dir holding worker dirs `name → id` (and the logs and redis dirs `dstore up` keeps beside them). */
function dataDir(workers: Record<string, string>): string {
  const dir = tempDir('data');
  for (const [name, id] of Object.entries(workers)) {
    fs.mkdirSync(path.join(dir, name));
    fs.writeFileSync(path.join(dir, name, 'worker-id'), id + '\n');
  }
  fs.mkdirSync(path.join(dir, 'logs'));
  fs.mkdirSync(path.join(dir, 'redis'));
  return dir;
}

function known(o: { retired?: string[]; draining?: string[]; others?: string[] } = {}): KnownWorkers {
  const retired = new Set(o.retired);
  const draining = new Set(o.draining);
  return { retired, draining, all: new Set([...retired, ...draining, ...(o.others ?? [])]) };
}

const ids = (ws: { id: string; state: string }[]) => ws.map((w) => `${w.id}:${w.state}`);

describe('planWorkers (dstore up on a data dir)', () => {
  it('makes w1..wN on an empty data dir', () => {
    const dir = dataDir({});
    const plan = planWorkers(dir, 3, known());
    assert.deepEqual(ids(plan.start), ['w1:new', 'w2:new', 'w3:new']);
    assert.equal(plan.start[1].dir, path.join(dir, 'w2'));
  });

  it('starts the workers found, in id order (w2 before w10)', () => {
    const plan = planWorkers(dataDir({ w10: 'w10', w2: 'w2', w1: 'w1' }), 3, known());
    assert.deepEqual(ids(plan.start), ['w1:active', 'w2:active', 'w10:active']);
  });

  it('replaces a retired worker by a new id in a new directory, never reusing an id Redis knows', () => {
    const dir = dataDir({ w1: 'w1', w2: 'w2', w3: 'w3' });
    const plan = planWorkers(dir, 3, known({ retired: ['w2'], others: ['w4'] }));
    assert.deepEqual(ids(plan.start), ['w1:active', 'w3:active', 'w5:new']);
    assert.equal(plan.start[2].dir, path.join(dir, 'w5'));
    assert.deepEqual(ids(plan.retired), ['w2:retired']);
  });

  it('starts a draining worker (it still serves the chunks being moved) without counting it', () => {
    const plan = planWorkers(dataDir({ w1: 'w1', w2: 'w2' }), 2, known({ draining: ['w2'] }));
    assert.deepEqual(ids(plan.start), ['w1:active', 'w2:draining', 'w3:new']);
  });

  it('starts every active worker found even beyond the number asked for: no shard is left unserved', () => {
    const plan = planWorkers(dataDir({ w1: 'w1', w2: 'w2', w3: 'w3' }), 1, known());
    assert.deepEqual(ids(plan.start), ['w1:active', 'w2:active', 'w3:active']);
  });

  it('takes the id from the worker-id file, and skips names taken by a directory', () => {
    const dir = dataDir({ w1: 'w-1a2b3c4d' });
    fs.mkdirSync(path.join(dir, 'w2'));
    const plan = planWorkers(dir, 2, known());
    assert.deepEqual(ids(plan.start), ['w-1a2b3c4d:active', 'w3:new']);
  });
});
