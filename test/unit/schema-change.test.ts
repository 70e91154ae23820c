/** The plan of a schema change (coordinator/schema-change.ts) and the CLI's `table alter` flags. */
import { strict as assert } from 'node:assert';
import { alterBody } from '../../cli/commands/table';
import { CliError } from '../../cli/http-client';
import { ApiError } from '../../coordinator/errors';
import { planAlter, sameRowRules } from '../../coordinator/schema-change';
import type { TableDef } from '../../coordinator/table-def';

const T: TableDef = {
  name: 't',
  version: 3,
  createdAt: 1,
  schema: { city: 'string', n: 'integer', ssn: 'string' },
  encrypted: ['ssn'],
  keyCheck: 'k',
  indexes: { version: 1, indexes: { by_city: { fields: ['city'] } } },
};

describe('planAlter', () => {
  it('adds with and without defaults and drops, bumping the version', () => {
    const p = planAlter(T, {
      addColumns: { score: { type: 'number', default: 0.5 }, tag: 'string' },
      dropColumns: ['n'],
    });
    assert.deepEqual(p.table.schema, { city: 'string', ssn: 'string', score: 'number', tag: 'string' });
    assert.deepEqual([p.added, p.dropped, p.fill, p.unset], [['score', 'tag'], ['n'], { score: 0.5 }, ['n']]);
    assert.deepEqual([p.table.version, p.table.defaults], [4, { score: 0.5 }]);
    assert.equal(sameRowRules(T, p.table), false);
    assert.equal(
      sameRowRules(T, { ...T, version: 9, indexes: undefined }),
      true,
      'indexes and version do not change the rows',
    );
  });

  it('drops an encrypted column, and the key check with the last one', () => {
    const p = planAlter(T, { dropColumns: ['ssn'] });
    assert.equal(p.table.encrypted, undefined);
    assert.equal(p.table.keyCheck, undefined);
    const d = planAlter({ ...T, defaults: { n: 1 } }, { dropColumns: ['n'] });
    assert.equal(d.table.defaults, undefined, "a dropped column's default goes with it");
  });

  it('refuses what it cannot do, naming the field', () => {
    const refused = (body: unknown, def: TableDef = T) => {
      try {
        planAlter(def, body);
      } catch (e) {
        assert.ok(e instanceof ApiError);
        return [e.status, e.details.field];
      }
      return undefined;
    };
    assert.deepEqual(refused({ addColumns: { a: 'string' } }, { ...T, schema: undefined }), [400, 'addColumns']);
    assert.deepEqual(refused({ dropColumns: ['city'] }), [409, 'dropColumns.city']);
    assert.deepEqual(refused({ dropColumns: 'n' }), [400, 'dropColumns']);
    assert.deepEqual(refused({ addColumns: { n: 'integer' } }), [409, 'addColumns.n']);
    assert.deepEqual(refused({ addColumns: { n: 'integer' }, dropColumns: ['n'] }), [409, 'addColumns.n']);
    assert.deepEqual(refused({ addColumns: { 'a.b': 'integer' } }), [400, 'addColumns.a.b']);
    assert.deepEqual(refused({ addColumns: { x: { type: 'string', encrypted: true } } }), [400, 'addColumns.x']);
    assert.deepEqual(refused({ addColumns: { x: { type: 'boolean', default: 1 } } }), [400, 'addColumns.x.default']);
    assert.deepEqual(refused([]), [400, undefined]);
  });
});

describe('dstore table alter flags', () => {
  it('reads --add column:type[=default] and --drop', () => {
    assert.deepEqual(alterBody(['a:integer=0', 'b:string=hello', 'c:json={"k":[1]}', 'd:boolean'], ['x']), {
      addColumns: {
        a: { type: 'integer', default: 0 },
        b: { type: 'string', default: 'hello' },
        c: { type: 'json', default: { k: [1] } },
        d: 'boolean',
      },
      dropColumns: ['x'],
    });
    assert.throws(
      () => alterBody(['a']),
      (e: unknown) => e instanceof CliError && /--add "a"/.test(e.message),
    );
    assert.throws(
      () => alterBody(),
      (e: unknown) => e instanceof CliError && /--add column:type or --drop/.test(e.message),
    );
  });
});
