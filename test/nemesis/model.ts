/**
 * The nemesis' model of acknowledged writes: for each `_id`, every state the row may be in
 * given what the store answered. Pure (no I/O), so test/unit/nemesis-model.test.ts can
 * drive it by hand.
 *
 * A write is registered when it is sent ({@link Model.begin}) and may take effect from
 * then on; an answer then settles it: 200 = it took effect, at the latest now
 * ({@link Model.ack}); a refusal that guarantees nothing was stored = it never will
 * ({@link Model.reject}); anything else (5xx, a cut connection, a timeout) leaves it
 * pending, free to take effect at any later moment, until the cluster is quiesced and a
 * complete read shows what happened ({@link Model.settle}).
 *
 * Each row keeps a set of worlds: a value (a document, or null when the row is absent) and
 * the pending writes already applied in that world. Starting a write forks every world
 * into "applied" and "not yet"; an ack forces it into the worlds that had not applied it;
 * a rejection drops the worlds that had. That covers every order of concurrent and
 * pending writes, so a read may be checked against "some order of the writes in flight".
 * A row whose worlds pass {@link ModelOptions.maxWorlds} is kept as a plain set of values
 * instead (still a superset of the truth: checks stay sound, only less sharp) until the
 * next settle.
 */
import { canonical } from '../support/data';
import { matches, type Filter } from './filter';

/** A row as stored: `_id` plus its fields. */
export type Doc = { _id: string } & Record<string, unknown>;

/** A row's content in one possible world: the document, or null when absent. */
export type Value = Doc | null;

/** A write as the model applies it to one row. */
export type Write =
  | { kind: 'insert'; docs: Doc[] }
  | { kind: 'update'; where: Filter; set: Record<string, unknown> }
  | { kind: 'delete'; where: Filter };

/**
 * The values a row may have shown during an observation window, keyed by their
 * {@link canonical} text (`"null"` for absent).
 */
export type Possible = ReadonlyMap<string, ReadonlyMap<string, Value>>;

/** Options of {@link Model}. */
export interface ModelOptions {
  /**
   * Worlds one row may have before it is kept as a set of values instead.
   * @defaultValue 96
   */
  maxWorlds?: number;
}

interface World {
  value: Value;
  /** Ids of pending writes already applied in this world, ascending. */
  applied: number[];
}

interface Row {
  id: string;
  worlds: World[];
  /** Pending writes that may still change this row. */
  pending: number[];
  /** True once the worlds were folded into plain values (see the module comment). */
  approx: boolean;
}

interface Op {
  id: number;
  write: Write;
  rows: Set<string>;
  /** Answered with something that settles nothing: stays pending until the next settle. */
  indeterminate: boolean;
}

/** Counts for the report. */
export interface ModelStats {
  rows: number;
  /** Rows that are present in every world. */
  present: number;
  /** Rows whose worlds disagree. */
  uncertain: number;
  pending: number;
  approxRows: number;
}

const ABSENT = 'null';

/** The canonical text of a value: key order does not matter, absent is `"null"`. */
export function valueKey(v: Value): string {
  return v === null ? ABSENT : canonical(v);
}

/** The fields a filter names. */
function filterFields(where: Filter): string[] {
  return Object.keys(where);
}

function applyWrite(w: Write, rowId: string, v: Value): Value {
  switch (w.kind) {
    case 'insert':
      return v ?? w.docs.find((d) => d._id === rowId) ?? null;
    case 'update':
      return v !== null && matches(w.where, v) ? { ...v, ...w.set } : v;
    case 'delete':
      return v !== null && matches(w.where, v) ? null : v;
  }
}

function worldKey(w: World): string {
  return `${valueKey(w.value)}#${w.applied.join(',')}`;
}

function withOp(applied: number[], op: number): number[] {
  return [...applied, op].sort((a, b) => a - b);
}

/** An open observation: what each row may have shown since it began. */
export class Observation {
  /** Row id → value key → value. */
  readonly seen = new Map<string, Map<string, Value>>();
  constructor(readonly without?: number) {}

  add(id: string, values: Iterable<Value>): void {
    let m = this.seen.get(id);
    if (!m) this.seen.set(id, (m = new Map()));
    for (const v of values) m.set(valueKey(v), v);
  }
}

/**
 * The model of one table. Writes must keep to two rules, checked here: every `_id` is
 * inserted by one write only, and no update sets a field that some write's filter names
 * (so which rows a write may touch is decided by fields that never change).
 */
export class Model {
  private readonly rows = new Map<string, Row>();
  private readonly ops = new Map<number, Op>();
  private readonly open = new Set<Observation>();
  private readonly filtered = new Set<string>();
  private readonly setFields = new Set<string>();
  /** Rows some DELETE may have removed: a POST's all-or-nothing cannot be judged on them. */
  private readonly deletable = new Set<string>();
  private nextOp = 1;
  private readonly maxWorlds: number;

  constructor(opts: ModelOptions = {}) {
    this.maxWorlds = opts.maxWorlds ?? 96;
  }

  /**
   * Registers a write that is being sent; it may take effect from now on. Returns its id
   * for {@link ack}, {@link reject} and {@link indeterminate}.
   *
   * @throws Error when the write breaks a rule of the model (see the class comment)
   */
  begin(write: Write): number {
    if (write.kind !== 'insert') {
      for (const f of filterFields(write.where)) {
        if (this.setFields.has(f)) throw new Error(`nemesis model: a write filters on "${f}", which an update sets`);
        this.filtered.add(f);
      }
    }
    if (write.kind === 'update') {
      for (const f of Object.keys(write.set)) {
        if (this.filtered.has(f) || f === '_id')
          throw new Error(`nemesis model: an update sets "${f}", which a write filters on`);
        this.setFields.add(f);
      }
    }
    const op: Op = { id: this.nextOp++, write, rows: new Set(), indeterminate: false };
    this.ops.set(op.id, op);
    for (const row of this.targets(write)) {
      row.pending.push(op.id);
      op.rows.add(row.id);
      if (write.kind === 'delete') this.deletable.add(row.id);
      this.expand(row);
      this.notify(row);
    }
    return op.id;
  }

  /** The write answered 200: it has taken effect, at the latest now. */
  ack(opId: number): void {
    const op = this.take(opId);
    for (const id of op.rows) {
      const row = this.rows.get(id)!;
      row.pending = row.pending.filter((p) => p !== opId);
      if (row.approx) {
        // Folded worlds do not say whether the write already ran: keep both.
        row.worlds = [
          ...row.worlds,
          ...row.worlds.map((w) => ({ value: applyWrite(op.write, id, w.value), applied: [] })),
        ];
      } else {
        row.worlds = row.worlds.map((w) =>
          w.applied.includes(opId)
            ? { value: w.value, applied: w.applied.filter((a) => a !== opId) }
            : { value: applyWrite(op.write, id, w.value), applied: w.applied },
        );
      }
      this.expand(row);
      this.notify(row);
    }
  }

  /** The write was refused in a way that guarantees nothing of it was stored, now or later. */
  reject(opId: number): void {
    const op = this.take(opId);
    for (const id of op.rows) {
      const row = this.rows.get(id)!;
      row.pending = row.pending.filter((p) => p !== opId);
      if (!row.approx) row.worlds = dedupe(row.worlds.filter((w) => !w.applied.includes(opId)));
      this.notify(row);
    }
  }

  /** The write's answer settles nothing (5xx, cut connection, timeout): it stays pending until {@link settle}. */
  indeterminate(opId: number): void {
    const op = this.ops.get(opId);
    if (!op) throw new Error(`nemesis model: no pending write ${opId}`);
    op.indeterminate = true;
  }

  /**
   * Starts an observation (a read, or the count of an update): until {@link close}, every
   * value any row may take is recorded. With `without`, the worlds in which that write
   * already took effect are left out (the count of a write is taken before it applies).
   */
  observe(without?: number): Observation {
    const obs = new Observation(without);
    for (const row of this.rows.values()) obs.add(row.id, this.values(row, without));
    this.open.add(obs);
    return obs;
  }

  /** Ends an observation; returns, per row, every value it may have shown. */
  close(obs: Observation): Possible {
    this.open.delete(obs);
    return obs.seen;
  }

  /** Every value each row may have now (an observation of no time at all). */
  now(): Possible {
    return this.close(this.observe());
  }

  /**
   * Makes the model exact again after the cluster was quiesced (every write answered,
   * every queued or abandoned write applied or aborted): each row takes the value a
   * complete read showed (`observed`; absent when not in it) and nothing is pending.
   * Check the read against {@link now} first: this trusts it. Returns the POSTs it shows
   * torn: of an insert whose answer was lost, some rows stored and others not (rows a
   * DELETE may have removed aside), which breaks "stored whole or not at all".
   *
   * Rows in `doubtful` (ones the read got wrong) keep every value they had as well as the
   * one read, so that a row a faulty read lost may come back without a second report.
   *
   * @throws Error while a write is still unanswered, or for a row the model never saw
   */
  settle(observed: ReadonlyMap<string, Doc>, doubtful: ReadonlySet<string> = new Set()): string[] {
    const unanswered = [...this.ops.values()].filter((o) => !o.indeterminate);
    if (unanswered.length > 0)
      throw new Error(`nemesis model: settle with ${unanswered.length} write(s) still unanswered`);
    for (const id of observed.keys())
      if (!this.rows.has(id)) throw new Error(`nemesis model: settle with unknown row ${id}`);
    const torn: string[] = [];
    for (const op of this.ops.values()) {
      if (op.write.kind !== 'insert') continue;
      const ids = op.write.docs.map((d) => d._id).filter((id) => !this.deletable.has(id));
      const stored = ids.filter((id) => observed.has(id));
      if (stored.length > 0 && stored.length < ids.length) {
        torn.push(
          `a POST of ${op.write.docs.length} rows whose answer was lost is stored in part: ${stored.length} of its ${ids.length} undeleted rows (e.g. ${stored[0]} stored, ${ids.find((id) => !observed.has(id))} not)`,
        );
      }
    }
    for (const row of this.rows.values()) {
      const read: World = { value: observed.get(row.id) ?? null, applied: [] };
      row.worlds = doubtful.has(row.id)
        ? dedupe([read, ...row.worlds.map((w) => ({ value: w.value, applied: [] }))])
        : [read];
      row.pending = [];
      row.approx = false;
      this.notify(row);
    }
    this.ops.clear();
    return torn;
  }

  /** Whether a write ever named row `id`. */
  has(id: string): boolean {
    return this.rows.has(id);
  }

  /** Writes sent and not yet acked or rejected (indeterminate ones included). */
  pendingWrites(): number {
    return this.ops.size;
  }

  stats(): ModelStats {
    let present = 0;
    let uncertain = 0;
    let approxRows = 0;
    for (const row of this.rows.values()) {
      const keys = new Set(row.worlds.map((w) => valueKey(w.value)));
      if (row.worlds.every((w) => w.value !== null)) present++;
      if (keys.size > 1) uncertain++;
      if (row.approx) approxRows++;
    }
    return { rows: this.rows.size, present, uncertain, pending: this.ops.size, approxRows };
  }

  private take(opId: number): Op {
    const op = this.ops.get(opId);
    if (!op) throw new Error(`nemesis model: no pending write ${opId}`);
    this.ops.delete(opId);
    return op;
  }

  /** Rows a write may change: its own rows for an insert; else those some world or pending insert lets it match. */
  private targets(w: Write): Row[] {
    if (w.kind === 'insert') {
      return w.docs.map((d) => {
        if (this.rows.has(d._id)) throw new Error(`nemesis model: _id ${d._id} is inserted twice`);
        const row: Row = { id: d._id, worlds: [{ value: null, applied: [] }], pending: [], approx: false };
        this.rows.set(d._id, row);
        // A pending update or delete may still be queued behind this insert's commit.
        for (const op of this.ops.values()) {
          if (op.write.kind !== 'insert' && matches(op.write.where, d)) {
            row.pending.push(op.id);
            op.rows.add(row.id);
            if (op.write.kind === 'delete') this.deletable.add(row.id);
          }
        }
        return row;
      });
    }
    const out: Row[] = [];
    for (const row of this.rows.values()) {
      const docs = row.worlds.map((x) => x.value).filter((v): v is Doc => v !== null);
      for (const p of row.pending) {
        const pw = this.ops.get(p)!.write;
        if (pw.kind === 'insert') docs.push(...pw.docs.filter((d) => d._id === row.id));
      }
      if (docs.some((d) => matches(w.where, d))) out.push(row);
    }
    return out;
  }

  /** Closes a row's worlds under its pending writes (each applied at most once per world). */
  private expand(row: Row): void {
    if (row.approx) return this.expandValues(row);
    const seen = new Map(row.worlds.map((w) => [worldKey(w), w]));
    const queue = [...seen.values()];
    while (queue.length > 0) {
      const w = queue.pop()!;
      for (const p of row.pending) {
        if (w.applied.includes(p)) continue;
        const next: World = {
          value: applyWrite(this.ops.get(p)!.write, row.id, w.value),
          applied: withOp(w.applied, p),
        };
        const k = worldKey(next);
        if (seen.has(k)) continue;
        seen.set(k, next);
        queue.push(next);
        if (seen.size > this.maxWorlds) {
          row.worlds = [...seen.values()];
          row.approx = true;
          return this.expandValues(row);
        }
      }
    }
    row.worlds = [...seen.values()];
  }

  /** The folded form: values only, closed under any pending write applied any number of times. */
  private expandValues(row: Row): void {
    const seen = new Map<string, World>();
    for (const w of row.worlds) seen.set(valueKey(w.value), { value: w.value, applied: [] });
    const queue = [...seen.values()];
    while (queue.length > 0) {
      const w = queue.pop()!;
      for (const p of row.pending) {
        const value = applyWrite(this.ops.get(p)!.write, row.id, w.value);
        const k = valueKey(value);
        if (seen.has(k)) continue;
        const next = { value, applied: [] };
        seen.set(k, next);
        queue.push(next);
      }
    }
    row.worlds = [...seen.values()];
  }

  private values(row: Row, without?: number): Value[] {
    const ws =
      without === undefined || row.approx ? row.worlds : row.worlds.filter((w) => !w.applied.includes(without));
    return ws.map((w) => w.value);
  }

  private notify(row: Row): void {
    for (const obs of this.open) obs.add(row.id, this.values(row, obs.without));
  }
}

function dedupe(worlds: World[]): World[] {
  return [...new Map(worlds.map((w) => [worldKey(w), w])).values()];
}
