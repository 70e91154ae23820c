/**
 * The seeded schedule of a nemesis run: client operations (POSTs in four encodings,
 * UPDATE, DELETE, five kinds of read) interleaved with faults and their heals, and
 * quiesce points. A seed gives the same steps every time, and a schedule of k steps is
 * the first k steps of a longer one, so a failure at step k replays from the seed alone.
 * Timing is not replayed: what the steps meet in flight can differ from run to run.
 */
import { rng } from '../support/data';
import type { ReadShape, SortKey } from './checker';
import type { Filter } from './filter';
import type { Doc } from './model';

/** How a POST encodes its rows. */
export const POST_FORMATS = ['ndjson', 'json', 'pretty', 'csv'] as const;
export type PostFormat = (typeof POST_FORMATS)[number];

/** Faults, each named as `NEMESIS_FAULTS` spells it. */
export const FAULT_KINDS = [
  'kill',
  'stop',
  'wipe',
  'disk-full',
  'add-worker',
  'drain',
  'rebalance',
  'kill-coordinator',
  'second-coordinator',
  'redis-restart',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** A fault or the heal of one. */
export type Fault =
  | { op: 'kill' | 'stop' | 'wipe' | 'disk-full'; worker: string }
  | { op: 'restart' | 'cont' | 'free-disk'; worker: string }
  | { op: 'add-worker'; worker: string }
  | { op: 'drain'; worker: string }
  | { op: 'rebalance' }
  | { op: 'kill-coordinator'; which: number }
  | { op: 'restart-coordinator'; which: number }
  | { op: 'second-coordinator' }
  | { op: 'redis-restart' };

/** One step. `via` picks the coordinator (0 the first, 1 the second when it runs). */
export type Step =
  | { kind: 'post'; format: PostFormat; rows: number; generatedIds: boolean; via: number }
  | { kind: 'update'; where: Filter; setsNote: boolean; via: number }
  | { kind: 'delete'; where: Filter; via: number }
  | { kind: 'read'; read: ReadShape; partial: boolean; via: number }
  | { kind: 'fault'; fault: Fault }
  | { kind: 'pause'; ms: number }
  | { kind: 'quiesce' };

/** Options of {@link makeSchedule}. */
export interface ScheduleOptions {
  seed: number;
  steps: number;
  /** Workers w1..wN at the start. */
  workers: number;
  /** Faults the schedule may use. @defaultValue all of {@link FAULT_KINDS} */
  faults?: ReadonlySet<FaultKind>;
  /** POST encodings the schedule may use (to set a known defect aside while hunting others). @defaultValue all four */
  formats?: readonly PostFormat[];
  /**
   * Most workers impaired (killed, stopped, wiped, disk full) at once; one healthy worker always remains.
   * @defaultValue 4
   */
  maxImpaired?: number;
  /** Most workers not retired. @defaultValue 5 */
  maxWorkers?: number;
}

/** The table every run uses; a schema keeps CSV values typed like the JSON ones. */
export const TABLE = 'nem';
export const TABLE_SCHEMA = 'rid:string,g:string,k:integer,v:integer,t:string,x:number';
/** Columns in CSV order. */
export const COLUMNS = ['_id', 'rid', 'g', 'k', 'v', 't', 'x'] as const;
const GROUPS = ['a', 'b', 'c', 'd'];
const NOTES = [
  'plain',
  'with, comma',
  'quote "q" here',
  'line\nbreak',
  'ünïcödé',
  '  spaced  ',
  'emoji 😀',
  'semi;colon',
  'tab\there',
];

/**
 * The row id (`rid`) of row `i` of the POST at step `step`: sorts by step, then row. A row
 * the client names has it as `_id` too (`s…`); a row whose `_id` the store generates has
 * only `rid` (`g…`), and filters never name its `_id`.
 */
export function rowId(step: number, i: number, generated = false): string {
  return `${generated ? 'g' : 's'}${String(step).padStart(5, '0')}-${String(i).padStart(3, '0')}`;
}

/**
 * The rows the POST at `step` sends, as the model keeps them (`_id` = `rid`; without
 * `_id` on the wire when the store generates it): `g` and `k` (never updated, so filters
 * may use them), `v` (0 until an UPDATE sets it to that UPDATE's step number), sometimes
 * `t` and `x`.
 */
export function postRows(seed: number, step: number, n: number, generated = false): Doc[] {
  const r = rng(seed * 100_003 + step);
  const rows: Doc[] = [];
  for (let i = 0; i < n; i++) {
    const rid = rowId(step, i, generated);
    const d: Doc = { _id: rid, rid, g: GROUPS[Math.floor(r() * GROUPS.length)], k: Math.floor(r() * 1000), v: 0 };
    if (r() < 0.5) d.t = NOTES[Math.floor(r() * NOTES.length)];
    if (r() < 0.4) d.x = Math.round((r() - 0.3) * 100_000) / 100;
    rows.push(d);
  }
  return rows;
}

/** What an UPDATE at `step` sets: `v` to the step number (unique to it), and maybe `t`. */
export function updateSet(step: number, setsNote: boolean): Record<string, unknown> {
  return setsNote ? { v: step, t: `u${step}` } : { v: step };
}

type Health = 'up' | 'killed' | 'stopped' | 'wiped' | 'full';

/** The generator's picture of the cluster, so that faults stay within their caps. */
interface Plan {
  workers: Map<string, { health: Health; healAt: number }>;
  retiring: Set<string>;
  nextWorker: number;
  coordinators: ('up' | 'down' | 'none')[];
  coordinatorHealAt: number[];
  posts: { step: number; rows: number; generated: boolean }[];
  nextQuiesce: number;
}

/** Generates the first `steps` steps of seed `seed`'s schedule. */
export function makeSchedule(o: ScheduleOptions): Step[] {
  const r = rng(o.seed);
  const int = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)];
  const allowed = o.faults ?? new Set(FAULT_KINDS);
  const maxImpaired = o.maxImpaired ?? 4;
  const maxWorkers = o.maxWorkers ?? 5;
  const p: Plan = {
    workers: new Map(Array.from({ length: o.workers }, (_, i) => [`w${i + 1}`, { health: 'up' as Health, healAt: 0 }])),
    retiring: new Set(),
    nextWorker: o.workers + 1,
    coordinators: ['up', 'none'],
    coordinatorHealAt: [0, 0],
    posts: [],
    nextQuiesce: int(25, 40),
  };
  const via = () => (p.coordinators[1] === 'none' || r() < 0.6 ? 0 : 1);
  const healthy = () => [...p.workers].filter(([id, w]) => w.health === 'up' && !p.retiring.has(id)).map(([id]) => id);
  const impaired = () => [...p.workers].filter(([, w]) => w.health !== 'up');
  /** `_id`s (or with `any`, `rid`s, generated rows included) of rows some POST sent. */
  const knownIds = (n: number, any = false): string[] => {
    const posts = any ? p.posts : p.posts.filter((x) => !x.generated);
    const ids: string[] = [];
    for (let i = 0; i < n && posts.length > 0; i++) {
      const post = pick(posts);
      ids.push(rowId(post.step, int(0, post.rows), post.generated));
    }
    return ids.length > 0 ? ids : [rowId(0, 0)];
  };
  /** A write filter: only `_id`, `rid`, `g` and `k`, which no update changes. */
  const writeWhere = (): Filter => {
    const x = r();
    if (x < 0.25) return { _id: { $in: knownIds(int(1, 6)) } };
    if (x < 0.37) return { _id: knownIds(1)[0] };
    if (x < 0.5) return { rid: { $in: knownIds(int(1, 6), true) } };
    if (x < 0.7) {
      const lo = int(0, 950);
      return { k: { $gte: lo, $lt: lo + int(10, 80) } };
    }
    if (x < 0.85) return { g: pick(GROUPS), k: { $lt: int(50, 300) } };
    if (x < 0.97) return { g: pick(GROUPS) };
    return {};
  };
  const readWhere = (): Filter => {
    const x = r();
    if (x < 0.45) return {};
    if (x < 0.6) return { g: pick(GROUPS) };
    if (x < 0.75) return { k: { $gte: int(0, 900) } };
    if (x < 0.85) return { v: { $gt: 0 } };
    if (x < 0.95) return { t: { $exists: true } };
    return { g: pick(GROUPS), x: { $lt: 0 } };
  };
  const read = (): ReadShape => {
    const x = r();
    if (x < 0.3) return { kind: 'rows', where: readWhere() };
    if (x < 0.55) {
      const sort: SortKey[] =
        r() < 0.7 ? [{ field: 'k', dir: r() < 0.5 ? 'asc' : 'desc' }] : [{ field: 'v', dir: 'desc' }];
      return { kind: 'sorted', where: readWhere(), sort: [...sort, { field: 'rid', dir: 'asc' }], limit: int(1, 60) };
    }
    if (x < 0.7) return { kind: 'count', where: readWhere() };
    if (x < 0.85) return { kind: 'group', where: readWhere(), by: 'g' };
    const y = r();
    if (y < 0.4) return { kind: 'get', id: knownIds(1)[0] };
    if (y < 0.8) return { kind: 'lookup', where: { _id: { $in: knownIds(int(2, 12)) } } };
    return { kind: 'lookup', where: { rid: { $in: knownIds(int(2, 12), true) } } };
  };

  const faultCandidates = (i: number): (() => Fault)[] => {
    const out: (() => Fault)[] = [];
    const ok = healthy();
    // One healthy worker always remains; the fewer would remain, the likelier the fault is
    // passed over, so that reads are answerable most of the time yet R = 2 is sometimes
    // out of reach (one live worker), where placement must still keep its promise.
    const left = ok.length - 1;
    const canImpair = impaired().length < maxImpaired && left >= 1 && r() < (left >= 3 ? 1 : left === 2 ? 0.8 : 0.6);
    const impair = (op: 'kill' | 'stop' | 'wipe' | 'disk-full', lo: number, hi: number) => () => {
      const worker = pick(ok);
      p.workers.set(worker, {
        health: op === 'kill' ? 'killed' : op === 'stop' ? 'stopped' : op === 'wipe' ? 'wiped' : 'full',
        healAt: i + int(lo, hi),
      });
      return { op, worker } as Fault;
    };
    // Failures cascade: with a worker already down, another is likelier to follow.
    const weight = impaired().length > 0 ? 3 : 2;
    if (allowed.has('kill') && canImpair) for (let k = 0; k < weight; k++) out.push(impair('kill', 2, 20));
    if (allowed.has('stop') && canImpair) out.push(impair('stop', 2, 10));
    // Only on an otherwise healthy cluster: docs/consistency.md allows losing a write whose
    // one acking worker loses its disk while the other replica is down.
    if (allowed.has('wipe') && impaired().length === 0 && ok.length >= 3) out.push(impair('wipe', 2, 15));
    if (allowed.has('disk-full') && canImpair) out.push(impair('disk-full', 3, 20));
    if (allowed.has('add-worker') && p.workers.size - p.retiring.size < maxWorkers) {
      out.push(() => {
        const worker = `w${p.nextWorker++}`;
        p.workers.set(worker, { health: 'up', healAt: 0 });
        return { op: 'add-worker', worker };
      });
    }
    if (allowed.has('drain') && ok.length >= 4) {
      out.push(() => {
        const worker = pick(ok);
        p.retiring.add(worker);
        return { op: 'drain', worker };
      });
    }
    if (allowed.has('rebalance')) out.push(() => ({ op: 'rebalance' }));
    if (allowed.has('kill-coordinator')) {
      for (const which of [0, 1]) {
        if (p.coordinators[which] !== 'up' || p.coordinators[1 - which] === 'down') continue;
        out.push(() => {
          p.coordinators[which] = 'down';
          p.coordinatorHealAt[which] = i + int(1, 4);
          return { op: 'kill-coordinator', which };
        });
      }
    }
    if (allowed.has('second-coordinator') && p.coordinators[1] === 'none') {
      out.push(() => {
        p.coordinators[1] = 'up';
        return { op: 'second-coordinator' };
      });
    }
    if (allowed.has('redis-restart')) out.push(() => ({ op: 'redis-restart' }));
    return out;
  };

  /** The heal due at step i, if any. */
  const dueHeal = (i: number): Fault | undefined => {
    for (const [worker, w] of p.workers) {
      if (w.health === 'up' || w.healAt > i) continue;
      const op = w.health === 'stopped' ? 'cont' : w.health === 'full' ? 'free-disk' : 'restart';
      p.workers.set(worker, { health: 'up', healAt: 0 });
      return { op, worker };
    }
    for (const which of [0, 1]) {
      if (p.coordinators[which] === 'down' && p.coordinatorHealAt[which] <= i) {
        p.coordinators[which] = 'up';
        return { op: 'restart-coordinator', which };
      }
    }
    return undefined;
  };

  const steps: Step[] = [];
  for (let i = 0; i < o.steps; i++) {
    if (i === p.nextQuiesce) {
      for (const [id, w] of p.workers) w.health = p.retiring.has(id) ? w.health : 'up';
      for (const id of p.retiring) p.workers.delete(id);
      p.retiring.clear();
      p.coordinators = p.coordinators.map((c) => (c === 'down' ? 'up' : c));
      p.nextQuiesce = i + int(25, 40);
      steps.push({ kind: 'quiesce' });
      continue;
    }
    const heal = dueHeal(i);
    if (heal) {
      steps.push({ kind: 'fault', fault: heal });
      continue;
    }
    const x = r();
    if (x < 0.18) {
      const rows = r() < 0.15 ? int(60, 200) : int(1, 40);
      const generatedIds = r() < 0.25;
      p.posts.push({ step: i, rows: rows - 1, generated: generatedIds });
      steps.push({ kind: 'post', format: pick(o.formats ?? POST_FORMATS), rows, generatedIds, via: via() });
    } else if (x < 0.28) steps.push({ kind: 'update', where: writeWhere(), setsNote: r() < 0.3, via: via() });
    else if (x < 0.35) steps.push({ kind: 'delete', where: writeWhere(), via: via() });
    else if (x < 0.68) steps.push({ kind: 'read', read: read(), partial: r() < 0.25, via: via() });
    else if (x < 0.9) {
      const c = faultCandidates(i);
      steps.push(
        c.length > 0 ? { kind: 'fault', fault: pick(c)() } : { kind: 'read', read: read(), partial: false, via: via() },
      );
    } else steps.push({ kind: 'pause', ms: int(300, 2500) });
  }
  return steps;
}

/** One line describing a step, e.g. `post pretty 12 rows (s00007-000…011) via c1`. */
export function describeStep(s: Step, index: number): string {
  const via = 'via' in s && s.via > 0 ? ` via c${s.via}` : '';
  const w = (f: Filter) => JSON.stringify(f);
  switch (s.kind) {
    case 'post':
      return `post ${s.format} ${s.rows} rows${s.generatedIds ? ' without _id' : ''} (${rowId(index, 0, s.generatedIds)}…${String(s.rows - 1).padStart(3, '0')})${via}`;
    case 'update':
      return `update where ${w(s.where)} set ${JSON.stringify(updateSet(index, s.setsNote))}${via}`;
    case 'delete':
      return `delete where ${w(s.where)}${via}`;
    case 'read': {
      const q = s.read;
      if (q.kind === 'get') return `read get /records/${q.id}${via}`;
      const what =
        q.kind === 'sorted'
          ? `sorted ${q.sort.map((k) => `${k.field}:${k.dir}`).join(',')} limit ${q.limit}`
          : q.kind === 'group'
            ? `group by ${q.by}`
            : q.kind;
      return `read ${what} where ${w(q.where)}${s.partial ? ' partial' : ''}${via}`;
    }
    case 'fault': {
      const f = s.fault;
      if ('worker' in f) return `${f.op} ${f.worker}`;
      if ('which' in f) return `${f.op} c${f.which}`;
      return f.op;
    }
    case 'pause':
      return `pause ${s.ms} ms`;
    case 'quiesce':
      return 'quiesce: heal everything, settle, check strictly';
  }
}
