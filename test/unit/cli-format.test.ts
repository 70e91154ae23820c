import { strict as assert } from 'node:assert';
import { cellText, columnsOf, csvField, csvLine, csvRow, formatBytes, formatCount, formatDuration, pendingNote, renderObjects, renderTable, truncate } from '../../cli/format';
import { formatUploadProgress } from '../../cli/progress';
import { postSummary } from '../../cli/commands/post';
import { schemaText } from '../../cli/commands/table';
import { workersTable } from '../../cli/commands/workers';

describe('cli format: tables', () => {
  it('aligns columns under their headers, two spaces apart, without trailing spaces', () => {
    const { lines, hidden } = renderTable(['name', 'city'], [['al', 'Oslo'], ['barbara', 'Rome']]);
    assert.deepEqual(lines, ['name     city', 'al       Oslo', 'barbara  Rome']);
    assert.deepEqual(hidden, []);
  });

  it('right-aligns numeric columns and leaves missing cells empty', () => {
    const { lines } = renderTable(['id', 'n'], [['a', 5], ['b', 1234], ['c', null]]);
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
    assert.equal(postSummary('t', { inserted: 1000, chunks: 2, underReplicated: 0 }, 2_000_000, 500), 'inserted 1000 rows in 2 chunks into t (2000 rows/s, 4.00 MB/s, 0.50 s)');
    assert.match(postSummary('t', { inserted: 10, chunks: 3, underReplicated: 2 }, 100, 1000), /\(10 rows\/s, 0\.00 MB\/s, 1\.00 s\), 2 chunks under-replicated$/);
  });

  it('shows upload progress with total, rows, rates and ETA', () => {
    const line = formatUploadProgress({ sent: 25e6, total: 100e6, rows: 250_000, elapsedMs: 5000, done: false });
    assert.equal(line, '25.0 MB / 100 MB (25%)  250,000 rows  50,000 rows/s  5.00 MB/s  ETA 15s');
    assert.equal(formatUploadProgress({ sent: 2e6, elapsedMs: 1000, done: true }), '2.00 MB sent  2.00 MB/s  all sent, waiting for acks');
  });

  it('lists schemas and workers', () => {
    assert.equal(schemaText({ age: 'integer', name: 'string' }), 'age:integer, name:string');
    assert.equal(schemaText(undefined), '-');
    assert.equal(schemaText({ age: 'integer', ssn: 'string' }, ['ssn']), 'age:integer, ssn:string:encrypted');
    const lines = workersTable([
      { id: 'w1', live: true, age: 400, lastSeen: 0, status: { id: 'w1', state: 'ready', ready: true, rows: 1200, chunks: 3, tables: 1, shardBytes: 2_500_000, appliedId: '0-0', pid: 1, host: 'h', startedAt: 0 } },
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
    assert.equal(pendingNote(['w2', 'w5']), ' (queued for w2, w5, not live now: applied before they answer reads again; rows only they hold are not counted)');
  });
});
