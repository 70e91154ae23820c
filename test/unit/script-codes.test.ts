import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SCRIPT_CODES, ScriptError, scriptResult } from '../../common/script-codes';
import { projectRoot } from '../support/processes';

describe('script codes', () => {
  it('pass results through and turn each negative code into a ScriptError naming the script and the reason', () => {
    assert.equal(scriptResult('x.lua', 0), 0);
    assert.equal(scriptResult('x.lua', 7), 7);
    assert.throws(
      () => scriptResult('begin-commit-1.lua', SCRIPT_CODES.POST_NOT_OPEN),
      (e: unknown) =>
        e instanceof ScriptError &&
        e.code === SCRIPT_CODES.POST_NOT_OPEN &&
        /begin-commit-1\.lua: the POST is not open/.test(e.message),
    );
    assert.throws(() => scriptResult('x.lua', -99), /x\.lua returned an unknown code -99/);
  });

  it('are the codes the Lua scripts return (each negative return in common/lua is one of them)', () => {
    const dir = path.join(projectRoot(), 'common', 'lua');
    const known = new Set<number>(Object.values(SCRIPT_CODES));
    for (const f of fs.readdirSync(dir)) {
      const lua = fs.readFileSync(path.join(dir, f), 'utf8');
      for (const m of lua.matchAll(/return \{?(-\d+)/g))
        assert.ok(known.has(Number(m[1])), `${f} returns ${m[1]}, which common/script-codes.ts does not name`);
    }
  });
});
