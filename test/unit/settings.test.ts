import { strict as assert } from 'node:assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { loadCommonOptions, loadCoordinatorOptions, loadWorkerOptions } from '../../common/config';
import { ConfigError } from '../../common/errors';
import { parseSetting, readSetting, type Setting } from '../../common/setting-kinds';
import { SETTINGS, settingOf, settingsOf } from '../../common/settings';
import {
  README_BEGIN,
  README_END,
  defaultDoc,
  envDefault,
  renderSettingsTable,
  valuesDoc,
} from '../../common/settings-doc';

const root = path.resolve(__dirname, '..', '..', '..');
const all = SETTINGS as readonly Setting[];

function configError(fn: () => unknown, variable: string, message: string): void {
  assert.throws(
    fn,
    (e: unknown) => e instanceof ConfigError && e.variable === variable && e.message === `${variable}: ${message}`,
    message,
  );
}

describe('settings table', () => {
  it('names each variable once and fills each option once per process', () => {
    assert.equal(new Set(all.map((s) => s.env)).size, all.length);
    for (const use of ['worker', 'coordinator', 'cli'] as const) {
      const keys = all.filter((s) => s.use === use || s.use === 'all').map((s) => s.key);
      assert.equal(new Set(keys).size, keys.length, `${use}: ${keys.join(', ')}`);
    }
  });

  it('holds defaults that its own rules accept, and reads each written-out default back to itself', () => {
    for (const s of all) {
      if (s.kind === 'int')
        assert.ok(s.min <= s.default && s.default <= s.max, `${s.env}: ${s.default} outside ${s.min}..${s.max}`);
      if (s.kind === 'choice' && typeof s.default === 'string') assert.ok(s.choices.includes(s.default), s.env);
      const unsetValue = readSetting({}, s);
      const text = envDefault(s);
      if (text !== undefined) assert.deepEqual(readSetting({ [s.env]: text }, s), unsetValue, s.env);
    }
  });

  it('gives every option of a process its table default when nothing is set', () => {
    const options: Record<string, unknown>[] = [{ ...loadWorkerOptions({}) }, { ...loadCoordinatorOptions({}) }];
    for (const s of all) {
      if (s.kind !== 'int' && s.kind !== 'flag' && !(s.kind === 'choice' && typeof s.default === 'string')) continue;
      for (const o of options.filter((o) => s.key in o)) assert.equal(o[s.key], s.default, `${s.env} → ${s.key}`);
    }
    assert.equal(loadWorkerOptions({}).dataDir, path.resolve('dstore-data'));
    assert.equal(loadCommonOptions({}).redisTlsCa, undefined);
  });

  it('reads each kind with one error text naming the variable', () => {
    configError(
      () => readSetting({ DSTORE_PORT: '70x' }, settingOf('DSTORE_PORT')),
      'DSTORE_PORT',
      'must be a whole number, got "70x"',
    );
    configError(
      () => readSetting({ DSTORE_PORT: '65536' }, settingOf('DSTORE_PORT')),
      'DSTORE_PORT',
      'must be between 0 and 65535, got 65536',
    );
    configError(
      () => readSetting({ LOG_FORMAT: 'xml' }, settingOf('LOG_FORMAT')),
      'LOG_FORMAT',
      'must be one of json, pretty, got "xml"',
    );
    configError(
      () => readSetting({ DSTORE_INSECURE: 'yes' }, settingOf('DSTORE_INSECURE')),
      'DSTORE_INSECURE',
      'must be 0 or 1, got "yes"',
    );
    configError(
      () => readSetting({ DSTORE_PREFIX: 'a b' }, settingOf('DSTORE_PREFIX')),
      'DSTORE_PREFIX',
      'must be 1-64 letters, digits, "_" or "-" (dstore adds the cluster hash tags itself), got "a b"',
    );
    configError(
      () => parseSetting(settingOf('DSTORE_URL'), 'nope', '--url'),
      '--url',
      'is not a URL (expected http://host:port), got "nope"',
    );
    assert.equal(readSetting({ LOG_LEVEL: ' DEBUG ' }, settingOf('LOG_LEVEL')), 'debug');
    assert.equal(readSetting({ DSTORE_INSECURE: 'true' }, settingOf('DSTORE_INSECURE')), true);
    assert.deepEqual(readSetting({ DSTORE_TOKENS: ' a , b,' }, settingOf('DSTORE_TOKENS')), ['a', 'b', '']);
  });

  it('never echoes the value of a secret setting', () => {
    const secret = 'hunter2-hunter2-hunter2';
    for (const [env, raw] of [
      ['REDIS_URL', `::${secret}`],
      ['DSTORE_TOKEN', `x:${secret}:read,y:${secret}:read`],
    ] as const) {
      assert.throws(
        () => readSetting({ [env]: raw }, settingOf(env)),
        (e: unknown) => e instanceof ConfigError && e.variable === env && !e.message.includes(secret),
      );
    }
  });

  it('keeps defaults out of the option interfaces (common/config.ts points to the table)', () => {
    const source = fs.readFileSync(path.join(root, 'common', 'config.ts'), 'utf8');
    assert.ok(
      !/@default/.test(source),
      'common/config.ts has a @default tag: write the default in common/settings.ts only',
    );
  });

  it('renders defaults and bounds readably', () => {
    assert.equal(defaultDoc(settingOf('DSTORE_SCRUB_MS')), '`3600000` (1 h)');
    assert.equal(defaultDoc(settingOf('DSTORE_JSON_BODY_LIMIT_BYTES')), '`16777216` (16 MiB)');
    assert.equal(defaultDoc(settingOf('DSTORE_PORT')), '`7070`');
    assert.equal(defaultDoc(settingOf('DSTORE_INSECURE')), '`0`');
    assert.equal(defaultDoc(settingOf('LOG_FORMAT')), '`pretty` on a TTY, else `json`');
    assert.equal(valuesDoc(settingOf('DSTORE_HEARTBEAT_MS')), '50 ms to 1 min');
    assert.equal(valuesDoc(settingOf('DSTORE_SQLITE_SYNC')), '`full`, `normal`');
  });
});

describe('README settings table', () => {
  it('is the table common/settings.ts renders (else run npm run docs:settings)', () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const begin = readme.indexOf(README_BEGIN);
    const end = readme.indexOf(README_END);
    assert.ok(begin >= 0 && end > begin, `README.md has no ${README_BEGIN} … ${README_END} block`);
    assert.equal(
      readme.slice(begin, end + README_END.length),
      renderSettingsTable(),
      'README.md differs from common/settings.ts: run npm run docs:settings',
    );
  });
});

describe('dstore worker|coordinator --help', () => {
  const main = path.join(__dirname, '..', '..', 'cli', 'main.js');
  for (const [use, other] of [
    ['worker', 'coordinator'],
    ['coordinator', 'worker'],
  ] as const) {
    it(`${use}: lists every setting a ${use} reads, with its default, and none of a ${other}'s`, () => {
      const r = spawnSync(process.execPath, [main, use, '--help'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      const plainDefault = (s: Setting) => defaultDoc(s).replace(/`/g, '');
      for (const s of settingsOf(use))
        assert.ok(
          r.stdout.includes(`  ${s.env}: default ${plainDefault(s)}`),
          `${use} --help lacks ${s.env}:\n${r.stdout}`,
        );
      for (const s of all.filter((s) => s.use === other))
        assert.ok(!r.stdout.includes(`  ${s.env}:`), `${use} --help lists ${s.env}, a ${other} setting`);
    });
  }
});
