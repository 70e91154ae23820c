import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parse } from 'yaml';
import { SETTINGS, settingOf } from '../../common/settings';
import { envDefault } from '../../common/settings-doc';

/**
 * No Docker engine runs on the dev machines or in CI, so compose.yaml, the Dockerfile and
 * the README's Docker section are checked here as text against the settings table.
 */

const root = path.resolve(__dirname, '../../..');

type Obj = Record<string, unknown>;
interface Service extends Obj {
  environment?: Obj | string[];
  ports?: unknown[];
  volumes?: unknown[];
  healthcheck?: { test?: string | string[] };
  command?: string | string[];
}

const KNOWN = new Set([...SETTINGS.map((s) => s.env), 'NODE_ENV']);
/** `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `${VAR:+alt}` … */
const INTERPOLATION = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}/g;

function loadCompose(): { services: Record<string, Service> } {
  const text = fs.readFileSync(path.join(root, 'compose.yaml'), 'utf8');
  // Compose resolves YAML merge keys (`<<: *anchor`); the yaml package does so only when asked.
  const doc = parse(text, { merge: true }) as Obj | null;
  assert.ok(doc && typeof doc === 'object', 'compose.yaml is empty or not a mapping');
  assert.ok(!('version' in doc), 'compose.yaml has a top-level "version:" key; the Compose spec has none');
  assert.ok(doc.services && typeof doc.services === 'object', 'compose.yaml has no "services:" mapping');
  return doc as { services: Record<string, Service> };
}

/** A service's environment as name → raw value, for both the map and the list form. */
function envOf(service: Service): Record<string, string> {
  const env = service.environment;
  const out: Record<string, string> = {};
  if (Array.isArray(env)) {
    for (const item of env) {
      const s = String(item);
      const eq = s.indexOf('=');
      out[eq < 0 ? s : s.slice(0, eq)] = eq < 0 ? '' : s.slice(eq + 1);
    }
  } else if (env) {
    for (const [k, v] of Object.entries(env)) out[k] = v === null || v === undefined ? '' : String(v);
  }
  return out;
}

/** The value Compose gives when no variable is set in the shell or .env. */
function resolveDefault(raw: string): string {
  return raw.replace(INTERPOLATION, (_m, _name: string, op: string | undefined, def: string | undefined) =>
    op === ':-' || op === '-' ? (def ?? '') : '',
  );
}

function commandWords(cmd: string | string[] | undefined): string[] {
  if (cmd === undefined) return [];
  return Array.isArray(cmd) ? cmd.map(String) : cmd.split(/\s+/).filter(Boolean);
}

/** `[host_ip:]published:target[/proto]` or the long form, as { published, target }. */
function parsePort(p: unknown): { published?: string; target: string } {
  if (p && typeof p === 'object') {
    const o = p as Obj;
    return { published: o.published === undefined ? undefined : String(o.published), target: String(o.target) };
  }
  const parts = String(p)
    .replace(/\/(tcp|udp)$/, '')
    .split(':');
  const target = parts[parts.length - 1];
  return { published: parts.length >= 2 ? parts[parts.length - 2] : undefined, target };
}

/** A volume entry as { source, target } (source undefined for an anonymous volume). */
function parseVolume(v: unknown): { source?: string; target: string } {
  if (v && typeof v === 'object') {
    const o = v as Obj;
    return { source: o.source === undefined ? undefined : String(o.source), target: String(o.target) };
  }
  const parts = String(v).split(':');
  if (parts.length === 1) return { target: parts[0] };
  return { source: parts[0], target: parts[1] };
}

describe('compose.yaml', () => {
  const { services } = loadCompose();

  it('defines the redis, coordinator and worker services', () => {
    for (const name of ['redis', 'coordinator', 'worker']) {
      assert.ok(services[name], `compose.yaml has no "${name}" service (has: ${Object.keys(services).join(', ')})`);
    }
  });

  for (const name of ['coordinator', 'worker']) {
    it(`${name}: sets only variables that common/settings.ts knows`, () => {
      const env = envOf(services[name]);
      assert.ok(Object.keys(env).length > 0, `${name} has no environment`);
      for (const [k, raw] of Object.entries(env)) {
        assert.ok(KNOWN.has(k), `${name} sets ${k}, which is not in SETTINGS (common/settings.ts) nor NODE_ENV`);
        for (const m of raw.matchAll(INTERPOLATION)) {
          assert.ok(KNOWN.has(m[1]), `${name}: ${k} interpolates \${${m[1]}}, which is not in SETTINGS`);
        }
      }
    });

    it(`${name}: every \${VAR:-default} defaults to the config default`, () => {
      const env = envOf(services[name]);
      for (const [k, raw] of Object.entries(env)) {
        for (const m of raw.matchAll(INTERPOLATION)) {
          const [expr, v, op, def] = m;
          if (op !== ':-' && op !== '-') continue;
          const setting = SETTINGS.find((s) => s.env === v);
          // Defaults such as "generated at each start" are descriptions, not values.
          const want = setting && envDefault(setting);
          if (want === undefined) continue;
          assert.equal(
            def,
            want,
            `${name}: ${k}=${expr} defaults to ${JSON.stringify(def)} but common/settings.ts defaults ${v} to ${JSON.stringify(want)}`,
          );
        }
      }
    });
  }

  it('coordinator: listens on all interfaces, publishes DSTORE_PORT and checks /healthz on it', () => {
    const c = services.coordinator;
    const env = envOf(c);
    assert.equal(
      resolveDefault(env.DSTORE_HOST ?? ''),
      '0.0.0.0',
      'coordinator must set DSTORE_HOST=0.0.0.0 (127.0.0.1 is unreachable from outside its container)',
    );
    const port = resolveDefault(env.DSTORE_PORT ?? '') || envDefault(settingOf('DSTORE_PORT'))!;
    const ports = (c.ports ?? []).map(parsePort);
    assert.ok(ports.length > 0, 'coordinator publishes no port');
    const mapped = ports.find((p) => resolveDefault(p.target) === port);
    assert.ok(mapped, `coordinator publishes ${JSON.stringify(c.ports)} but none targets its DSTORE_PORT ${port}`);
    assert.equal(
      resolveDefault(mapped.published ?? ''),
      port,
      `coordinator publishes container port ${port} on host port ${mapped.published}; expected ${port} (README points DSTORE_URL at it)`,
    );
    const test = c.healthcheck?.test;
    assert.ok(test, 'coordinator has no healthcheck');
    const testText = Array.isArray(test) ? test.join(' ') : test;
    assert.match(testText, /\/healthz\b/, `coordinator healthcheck does not call /healthz: ${testText}`);
    assert.ok(
      testText.includes(`:${port}/`),
      `coordinator healthcheck does not use its DSTORE_PORT ${port}: ${testText}`,
    );
  });

  it('worker: scalable (no host port, no container_name, no fixed id) with an own volume at DSTORE_DATA_DIR', () => {
    const w = services.worker;
    assert.ok(
      !w.ports || w.ports.length === 0,
      `worker publishes ports ${JSON.stringify(w.ports)}; --scale worker=N would collide on them`,
    );
    assert.ok(
      !('container_name' in w),
      `worker has container_name ${JSON.stringify(w.container_name)}; --scale worker=N needs none`,
    );
    const env = envOf(w);
    assert.ok(!('DSTORE_WORKER_ID' in env), 'worker sets DSTORE_WORKER_ID: every replica would claim the same id');
    const dataDir = resolveDefault(env.DSTORE_DATA_DIR ?? '');
    assert.ok(
      dataDir.startsWith('/'),
      `worker must set DSTORE_DATA_DIR to an absolute path, got ${JSON.stringify(env.DSTORE_DATA_DIR)}`,
    );
    const vols = (w.volumes ?? []).map(parseVolume);
    const vol = vols.find((v) => v.target.replace(/\/+$/, '') === dataDir.replace(/\/+$/, ''));
    assert.ok(vol, `worker has no volume at its DSTORE_DATA_DIR ${dataDir} (volumes: ${JSON.stringify(w.volumes)})`);
    assert.equal(
      vol.source,
      undefined,
      `worker volume at ${dataDir} has source ${JSON.stringify(vol.source)}: a named volume or bind mount is shared by every replica (same shard file, same id)`,
    );
  });

  it('redis: append-only file on, no eviction', () => {
    const words = commandWords(services.redis.command);
    const after = (flag: string) => {
      const i = words.indexOf(flag);
      return i < 0 ? undefined : words[i + 1];
    };
    assert.equal(after('--appendonly'), 'yes', `redis command must include "--appendonly yes": ${words.join(' ')}`);
    assert.equal(
      after('--maxmemory-policy'),
      'noeviction',
      `redis command must include "--maxmemory-policy noeviction": ${words.join(' ')}`,
    );
  });
});

describe('Dockerfile', () => {
  const text = fs.readFileSync(path.join(root, 'Dockerfile'), 'utf8');
  // One instruction a line: continuation lines joined, comments and blank lines dropped.
  const instructions = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const stages: string[][] = [];
  for (const ins of instructions) {
    if (/^FROM\s/i.test(ins)) stages.push([]);
    stages[stages.length - 1]?.push(ins);
  }
  const last = stages[stages.length - 1] ?? [];
  const lastOf = (keyword: string) => last.filter((l) => new RegExp(`^${keyword}\\s`, 'i').test(l));

  it('is multi-stage', () => {
    assert.ok(
      stages.length >= 2,
      `Dockerfile has ${stages.length} FROM line(s); expected a build stage and a runtime stage`,
    );
  });

  it('runs the last stage as a non-root user', () => {
    const users = lastOf('USER');
    assert.ok(users.length > 0, 'the last stage has no USER instruction: the processes would run as root');
    const user = users[users.length - 1].replace(/^USER\s+/i, '').trim();
    assert.ok(!/^(root|0)(:.*)?$/.test(user), `the last stage runs as ${user}`);
  });

  it('installs only production dependencies in the last stage', () => {
    assert.ok(
      lastOf('RUN').some((l) => /\bnpm\s+ci\b[^;&|]*--omit=dev\b/.test(l)),
      'the last stage has no "RUN npm ci --omit=dev"',
    );
  });

  it('copies dist/ and common/lua into the last stage', () => {
    const copies = [...lastOf('COPY'), ...lastOf('ADD')];
    assert.ok(
      copies.some((l) => /\bcommon\/lua\b/.test(l)),
      'the last stage does not copy common/lua (the Redis scripts are read at run time)',
    );
    assert.ok(
      copies.some((l) => /\bdist\b/.test(l)),
      'the last stage does not copy dist/',
    );
  });
});

describe('README: Docker Compose', () => {
  it('shows how to start and scale the stack', () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    assert.ok(readme.includes('docker compose up -d'), 'README.md does not show "docker compose up -d"');
    assert.ok(readme.includes('--scale worker='), 'README.md does not show "--scale worker="');
  });
});
