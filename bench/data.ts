/**
 * The bench data set: `n` rows of about 150 bytes (strings, numbers, an ISO timestamp and one
 * nested object), generated from a fixed seed and written once as an NDJSON file, with the
 * byte offset of every `postRows`-th row so POSTs can stream slices of it.
 */
import * as fs from 'node:fs';
import * as readline from 'node:readline';
import { rng } from '../test/support/data';

/** The generated file and where its POST slices start. */
export interface DataSet {
  file: string;
  rows: number;
  bytes: number;
  /** Byte ranges `[start, end)` of consecutive slices of `postRows` rows. */
  slices: { start: number; end: number; rows: number }[];
}

const CITIES = ['Lyon', 'Oslo', 'Kyoto', 'Lima', 'Accra', 'Perth', 'Quito', 'Hanoi', 'Cork', 'Turin'];
const T0 = Date.UTC(2024, 0, 1);

/** The `_id` of row `i`: sortable, fixed width. */
export function rowId(i: number): string {
  return `r${String(i).padStart(8, '0')}`;
}

/**
 * One row. `cat` has 100 values (a filter on one is ~1 %), `city` 10 (the group-by key),
 * `amount` a real (the sort key).
 */
function makeRow(i: number, r: () => number): Record<string, unknown> {
  return {
    _id: rowId(i),
    user: `u${Math.floor(r() * 100_000)}`,
    city: CITIES[Math.floor(r() * CITIES.length)],
    cat: `c${String(Math.floor(r() * 100)).padStart(2, '0')}`,
    amount: Math.round(r() * 1_000_000) / 100,
    qty: 1 + Math.floor(r() * 20),
    ts: new Date(T0 + Math.floor(r() * 365 * 86_400_000)).toISOString(),
    geo: { lat: Math.round((r() * 180 - 90) * 1e4) / 1e4, lon: Math.round((r() * 360 - 180) * 1e4) / 1e4 },
  };
}

/**
 * Writes `rows` rows (seed fixed) to `file`, recording slice offsets every `postRows` rows;
 * with `only`, each row keeps `_id` and those fields (the body of a merge).
 */
export function generate(file: string, rows: number, postRows: number, seed = 42, only?: readonly string[]): DataSet {
  const r = rng(seed);
  const fd = fs.openSync(file, 'w');
  const slices: DataSet['slices'] = [];
  let offset = 0;
  let sliceStart = 0;
  let sliceRows = 0;
  let buf: string[] = [];
  let bufBytes = 0;
  const flush = () => {
    if (buf.length === 0) return;
    fs.writeSync(fd, buf.join(''));
    buf = [];
    bufBytes = 0;
  };
  try {
    for (let i = 0; i < rows; i++) {
      const full = makeRow(i, r);
      const row = only ? Object.fromEntries(['_id', ...only].map((k) => [k, full[k]])) : full;
      const line = JSON.stringify(row) + '\n';
      const len = Buffer.byteLength(line);
      buf.push(line);
      bufBytes += len;
      offset += len;
      sliceRows++;
      if (sliceRows === postRows || i === rows - 1) {
        slices.push({ start: sliceStart, end: offset, rows: sliceRows });
        sliceStart = offset;
        sliceRows = 0;
      }
      if (bufBytes > 1 << 20) flush();
    }
    flush();
  } finally {
    fs.closeSync(fd);
  }
  return { file, rows, bytes: offset, slices };
}

/** The lines of the data file, in order. */
export async function* lines(file: string): AsyncGenerator<string> {
  const rl = readline.createInterface({
    input: fs.createReadStream(file, { highWaterMark: 1 << 20 }),
    crlfDelay: Infinity,
  });
  for await (const line of rl) if (line) yield line;
}

/** The `_id` of an NDJSON line written by {@link generate} (it is always the first field). */
export function idOfLine(line: string): string {
  // `{"_id":"` is 8 characters; ids contain no quote.
  return line.slice(8, line.indexOf('"', 8));
}
