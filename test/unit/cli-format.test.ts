import { strict as assert } from 'node:assert';
import {
  cellText,
  columnsOf,
  csvField,
  csvLine,
  csvRow,
  formatBytes,
  formatCount,
  formatDuration,
  pendingNote,
  renderObjects,
  renderTable,
  truncate,
} from '../../cli/format';
import { formatUploadProgress } from '../../cli/progress';
import { postSummary } from '../../cli/commands/post';
import { dropWhat, schemaText, tablesTable, type TableInfo } from '../../cli/commands/table';
import { CsvWriter, lateColumnsNote, tableColumns } from '../../cli/columns';
import { workersTable } from '../../cli/commands/workers';

describe('cli format: tables', () => {
  it('aligns columns under their headers, two spaces apart, without trailing spaces', () => {
    const { lines, hidden } = renderTable(
      ['name', 'city'],
      [
        ['al', 'Oslo'],
        ['barbara', 'Rome'],
      ],
    );
    assert.deepEqual(lines, ['name     city', 'al       Oslo', 'barbara  Rome']);
    assert.deepEqual(hidden, []);
  });

  it('right-aligns numeric columns and leaves missing cells empty', () => {
    const { lines } = renderTable(
      ['id', 'n'],
      [
        ['a', 5],
        ['b', 1234],
        ['c', null],
      ],
    );
    assert.deepEqual(lines, ['id     n', 'a      5', 'b   1234', 'c']);
  });

  it('shows nested objects and arrays as JSON and flattens line breaks', () => {
    assert.equal(cellText({ a: [1, 'x'] }), '{"a":[1,"x"]}');
    assert.equal(cellText(true), 'true');
    assert.equal(cellText(undefined), '');
    const { lines } = renderTable(['v'], [['two\nlines']]);
    assert.equal(lines[1], 'two lines');
  });

  it('truncates with … to fit the width, cutting the widest columns first', () => {
    const long = 'x'.repeat(50);
    const { lines } = renderTable(['id', 'text'], [['a1', long]], { maxWidth: 20 });
    for (const l of lines) assert.ok([...l].length <= 20, `too wide: ${JSON.stringify(l)}`);
    assert.equal(lines[1], 'a1  ' + 'x'.repeat(15) + '…');
    assert.equal(lines[0], 'id  text');
  });

  it('drops columns from the right when even narrowed they do not fit, and names them', () => {
    const { lines, hidden } = renderTable(['a', 'b', 'c', 'd'], [['1111', '2222', '3333', '4444']], { maxWidth: 13 });
    assert.deepEqual(hidden, ['c', 'd']);
    assert.deepEqual(lines, ['a     b', '1111  2222']);
  });

  it('truncates by code point, never splitting a character', () => {
    assert.equal(truncate('日本語のテキスト', 4), '日本語…');
    assert.equal(truncate('😀😀😀', 2), '😀…');
    assert.equal(truncate('abc', 3), 'abc');
  });

  it('takes the columns of objects in first-seen order', () => {
    const rows = [{ a: 1 }, { b: 2, a: 3 }];
    assert.deepEqual(columnsOf(rows), ['a', 'b']);
    assert.deepEqual(renderObjects(rows).lines, ['a  b', '1', '3  2']);
  });
});

describe('cli format: csv', () => {
  it('quotes fields with commas, quotes, line breaks and edge spaces', () => {
    assert.equal(csvField('plain'), 'plain');
    assert.equal(csvField('a,b'), '"a,b"');
    assert.equal(csvField('say "hi"'), '"say ""hi"""');
    assert.equal(csvField('two\nlines'), '"two\nlines"');
    assert.equal(csvField('cr\rx'), '"cr\rx"');
    assert.equal(csvField(' pad'), '" pad"');
  });

  it('writes nested values as quoted JSON and nulls as empty', () => {
    assert.equal(csvLine([{ a: 1, b: 'x' }, null, 3, false]), '"{""a"":1,""b"":""x""}",,3,false');
  });

  it('writes rows by the header columns: extra keys dropped, missing ones empty', () => {
    assert.equal(csvRow(['a', 'b'], { b: 2, c: 3 }), ',2');
  });
});

describe('cli format: csv columns (never one dropped unsaid)', () => {
  it('uses the known columns (schema, --fields, aggregates) from the first row, with empty cells for missing keys', () => {
    const w = new CsvWriter(['_id', 'a', 'b']);
    assert.deepEqual(w.push([{ _id: '1', a: 1 }]), ['_id,a,b', '1,1,']);
    assert.deepEqual(w.push([{ _id: '2', b: 'x' }]), ['2,,x']);
    assert.deepEqual(w.end(), []);
    assert.deepEqual(w.lateColumns(), []);
  });

  it('writes the header of known columns even when there is no row', () => {
    const w = new CsvWriter(['city', 'count']);
    assert.deepEqual(w.end(), ['city,count']);
  });

  it('holds back a schemaless answer and takes the union of its keys, in order first seen', () => {
    const w = new CsvWriter(undefined, 3);
    assert.deepEqual(
      w.push([
        { Name: 'a', Horsepower: 130 },
        { Name: 'b', Miles_per_Gallon: 18 },
      ]),
      [],
    );
    assert.deepEqual(w.end(), ['Name,Horsepower,Miles_per_Gallon', 'a,130,', 'b,,18']);
    assert.deepEqual(new CsvWriter(undefined).end(), [], 'no rows, no columns: nothing');
  });

  it('names the keys first seen after the rows that set the header, with their first row', () => {
    const w = new CsvWriter(undefined, 2);
    assert.deepEqual(w.push([{ a: 1 }, { b: 2 }, { a: 3, c: 4 }]), ['a,b', '1,', ',2', '3,']);
    assert.deepEqual(w.push([{ c: 5, d: 6 }]), [',']);
    assert.deepEqual(w.end(), []);
    assert.deepEqual(w.lateColumns(), [
      { name: 'c', row: 3 },
      { name: 'd', row: 4 },
    ]);
    assert.equal(
      lateColumnsNote(w.lateColumns(), 2),
      'warning: 2 column(s) first seen after the 2 rows that set the CSV header are not in it: c (first in row 3), d (first in row 4); name every column with --fields, or use --format json or ndjson',
    );
    assert.equal(lateColumnsNote([]), undefined);
  });

  it('shows every column in a table: the known ones, then any other key seen', () => {
    assert.deepEqual(tableColumns(['_id', 'a', 'b'], [{ _id: '1', b: 2 }]), ['_id', 'a', 'b']);
    assert.deepEqual(tableColumns(undefined, [{ a: 1 }, { b: 2, a: 3 }]), ['a', 'b']);
  });
});

describe('cli format: table ls and drop', () => {
  const t = (name: string, stats?: TableInfo['stats'], schema?: Record<string, string>): TableInfo => ({
    name,
    version: 1,
    createdAt: new Date(2024, 4, 1, 13, 4, 5).getTime(),
    schema,
    stats,
  });

  it('lists rows, chunks and an estimated size beside the columns, numbers right-aligned', () => {
    const lines = tablesTable([
      t('cars', { rows: 200_000, rowsExact: true, chunks: 200, bytes: 48_300_000 }, { hp: 'integer' }),
      t('empty', { rows: 0, rowsExact: true, chunks: 0, bytes: 0 }),
    ]);
    assert.deepEqual(lines, [
      'name      rows  chunks      size  columns     created',
      'cars   200,000     200  ~48.3 MB  hp:integer  2024-05-01 13:04:05',
      'empty        0       0       0 B  -           2024-05-01 13:04:05',
    ]);
  });

  it('marks rows counted only in part (≥) or not at all (?), and says what the marks mean', () => {
    const lines = tablesTable([
      t('a', { rows: 900, rowsExact: false, chunks: 2, bytes: 10 }),
      t('b', { rows: null, rowsExact: false, chunks: 1, bytes: 0 }),
    ]);
    assert.match(lines[1], /^a +≥900 +2 +~10 B /);
    assert.match(lines[2], /^b +\? +1 +0 B /);
    assert.match(lines[3], /^\(≥: some chunks have no live replica/);
  });

  it('says what a drop deletes', () => {
    assert.equal(
      dropWhat(t('cars', { rows: 200_000, rowsExact: true, chunks: 200, bytes: 1 })),
      'table cars and its 200,000 rows in 200 chunk(s)',
    );
    assert.equal(
      dropWhat(t('one', { rows: 1, rowsExact: true, chunks: 1, bytes: 1 })),
      'table one and its 1 row in 1 chunk(s)',
    );
    assert.equal(
      dropWhat(t('p', { rows: 5, rowsExact: false, chunks: 2, bytes: 1 })),
      'table p and its at least 5 rows in 2 chunk(s)',
    );
  });
});

describe('cli format: units and summaries', () => {
  it('prints sizes, durations and counts for people', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1500), '1.50 kB');
    assert.equal(formatBytes(12_345_678), '12.3 MB');
    assert.equal(formatBytes(4e9), '4.00 GB');
    assert.equal(formatDuration(450), '450ms');
    assert.equal(formatDuration(3200), '3.2s');
    assert.equal(formatDuration(245_000), '4m 05s');
    assert.equal(formatDuration(7_380_000), '2h 03m');
    assert.equal(formatCount(1234567), '1,234,567');
  });

  it('summarises a post on one line, naming under-replicated chunks only when there are some', () => {
    assert.equal(
      postSummary('t', { post: 'p1', inserted: 1000, chunks: 2, underReplicated: 0 }, 2_000_000, 500),
      'inserted 1000 rows in 2 chunks into t (2000 rows/s, 4.00 MB/s, 0.50 s)',
    );
    assert.match(
      postSummary('t', { post: 'p1', inserted: 10, chunks: 3, underReplicated: 2 }, 100, 1000),
      /\(10 rows\/s, 0\.00 MB\/s, 1\.00 s\), 2 chunks under-replicated$/,
    );
    assert.match(
      postSummary('t', { post: 'p1', inserted: 1, chunks: 1, underReplicated: 1 }, 100, 1000),
      /^inserted 1 row in 1 chunk into t .*, 1 chunk under-replicated$/,
    );
  });

  it('shows upload progress with total, rows, rates and ETA', () => {
    const line = formatUploadProgress({ sent: 25e6, total: 100e6, rows: 250_000, elapsedMs: 5000, done: false });
    assert.equal(line, '25.0 MB / 100 MB (25%)  250,000 rows  50,000 rows/s  5.00 MB/s  ETA 15s');
    assert.equal(
      formatUploadProgress({ sent: 2e6, elapsedMs: 1000, done: true }),
      '2.00 MB sent  2.00 MB/s  all sent, waiting for acks',
    );
  });

  it('lists schemas and workers', () => {
    assert.equal(schemaText({ age: 'integer', name: 'string' }), 'age:integer, name:string');
    assert.equal(schemaText(undefined), '-');
    assert.equal(schemaText({ age: 'integer', ssn: 'string' }, ['ssn']), 'age:integer, ssn:string:encrypted');
    const lines = workersTable([
      {
        id: 'w1',
        live: true,
        age: 400,
        lastSeen: 0,
        status: {
          id: 'w1',
          state: 'ready',
          ready: true,
          rows: 1200,
          chunks: 3,
          tables: 1,
          shardBytes: 2_500_000,
          appliedId: '0-0',
          pid: 1,
          host: 'h',
          startedAt: 0,
        },
      },
      { id: 'w2', live: false, age: 65_000, lastSeen: 0 },
    ]);
    assert.deepEqual(lines, [
      'id  live  state  rows  chunks  shard    heartbeat',
      'w1  yes   ready  1200       3  2.50 MB  400ms ago',
      'w2  no    -                    -        1m 05s ago',
    ]);
  });
});

describe('cli format: UPDATE/DELETE answers', () => {
  it('adds nothing when every worker applied the change, and names the workers that have it queued otherwise', () => {
    assert.equal(pendingNote(undefined), '');
    assert.equal(pendingNote([]), '');
    assert.equal(
      pendingNote(['w2', 'w5']),
      ' (queued for w2, w5, not live now: applied before they answer reads again; rows only they hold are not counted)',
    );
  });
});
