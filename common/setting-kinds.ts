import * as path from 'node:path';
import { ConfigError } from './errors';

/**
 * The kinds of setting (integer, choice, flag, text, path, file, URL, list): what an
 * entry of the settings table holds for each, and one reader per kind that turns the
 * raw environment text into a value or a {@link ConfigError} naming the variable.
 */

/** The environment, or any name → text map read the same way (flags). */
export type Env = Record<string, string | undefined>;

/** The processes that read a setting. */
export type SettingUse = 'all' | 'worker' | 'coordinator' | 'cli';

/** A default worked out at start rather than written down; `doc` is how the docs show it. */
export interface ComputedDefault<T> {
  readonly doc: string;
  readonly value: () => T;
}

/** A default computed by `value` at start, documented as `doc` ("`pretty` on a TTY, else `json`"). */
export function computed<T>(doc: string, value: () => T): ComputedDefault<T> {
  return { doc, value };
}

/** No value when unset; `doc` says what that means ("none (system CAs)"). */
export function unset(doc: string): ComputedDefault<undefined> {
  return computed(doc, () => undefined);
}

interface BaseSetting {
  /** The environment variable. */
  readonly env: string;
  /** The option it fills (a key of `CommonOptions`, `WorkerOptions`, …). */
  readonly key: string;
  readonly use: SettingUse;
  /** One line of Markdown for the README and `--help`. */
  readonly doc: string;
  /** Never echoed in an error message (it may hold a password, token or key). */
  readonly secret?: boolean;
}

/** A whole number within `min`..`max`. */
export interface IntSetting extends BaseSetting {
  readonly kind: 'int';
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly unit?: 'ms' | 'bytes';
}

/** One of a few words; read case-insensitively. */
export interface ChoiceSetting extends BaseSetting {
  readonly kind: 'choice';
  readonly choices: readonly string[];
  readonly default: string | ComputedDefault<string>;
}

/** `0`/`1` (or `false`/`true`). */
export interface FlagSetting extends BaseSetting {
  readonly kind: 'flag';
  readonly default: boolean;
}

/** Text, checked by `valid` when given; `rule` says what is valid (docs and errors), `hint` why. */
export interface TextSetting extends BaseSetting {
  readonly kind: 'text';
  readonly default: string | ComputedDefault<undefined>;
  readonly valid?: (value: string) => boolean;
  readonly rule?: string;
  readonly hint?: string;
}

/** A path the process uses later, resolved against the working directory. */
export interface PathSetting extends BaseSetting {
  readonly kind: 'path';
  readonly default: string | ComputedDefault<undefined>;
}

/** A file read once at start (by the function that needs it), named in errors as given. */
export interface FileSetting extends BaseSetting {
  readonly kind: 'file';
  readonly default: ComputedDefault<undefined>;
}

/** A URL of one of `protocols` (without `:`); `example` shows the expected form. */
export interface UrlSetting extends BaseSetting {
  readonly kind: 'url';
  readonly default: string;
  readonly protocols: readonly string[];
  readonly example: string;
}

/** Comma-separated `item`s, handed on as trimmed parts to the function that parses them. */
export interface ListSetting extends BaseSetting {
  readonly kind: 'list';
  readonly default: ComputedDefault<undefined>;
  readonly item: string;
}

/** One entry of the settings table. */
export type Setting =
  IntSetting | ChoiceSetting | FlagSetting | TextSetting | PathSetting | FileSetting | UrlSetting | ListSetting;

/** The type of value a setting entry reads. */
export type SettingValue<S> = S extends { kind: 'int' }
  ? number
  : S extends { kind: 'flag' }
    ? boolean
    : S extends { kind: 'choice'; choices: readonly (infer C)[] }
      ? C
      : S extends { kind: 'list' }
        ? string[] | undefined
        : S extends { default: string }
          ? string
          : string | undefined;

/** The default of `s` as a value (computed ones worked out now). */
export function defaultOf(s: Setting): unknown {
  return typeof s.default === 'object' ? s.default.value() : s.default;
}

/** Reads one setting from `env`. */
export function readSetting(env: Env, s: Setting): unknown {
  return parseSetting(s, env[s.env], s.env);
}

/** Reads `raw` as setting `s` would be read; errors name `name` (the variable, or a flag that stands for it). */
export function parseSetting(s: Setting, raw: string | undefined, name = s.env): unknown {
  switch (s.kind) {
    case 'int':
      return parseInteger(name, raw, s.default, s.min, s.max);
    case 'choice':
      return parseChoice(name, raw, defaultOf(s) as string, s.choices);
    case 'flag':
      return parseFlag(name, raw, s.default);
    case 'list': {
      const t = raw?.trim();
      return t ? t.split(',').map((part) => part.trim()) : undefined;
    }
    default:
      return parseText(s, raw, name);
  }
}

/** Text, path, file and URL settings: trimmed; empty or unset gives the default. */
function parseText(
  s: TextSetting | PathSetting | FileSetting | UrlSetting,
  raw: string | undefined,
  name: string,
): string | undefined {
  const t = raw?.trim() || (defaultOf(s) as string | undefined);
  if (t === undefined) return undefined;
  const echo = s.secret ? '' : `, got ${JSON.stringify(t)}`;
  switch (s.kind) {
    case 'text':
      if (s.valid && !s.valid(t))
        throw new ConfigError(name, `must be ${s.rule}${s.hint ? ` (${s.hint})` : ''}${echo}`);
      return t;
    case 'path':
      return path.resolve(t);
    case 'file':
      return t;
    case 'url':
      return parseUrl(name, t, s.protocols, s.example, echo);
  }
}

/** Reads one whole number within `min`..`max`; empty or unset gives `def`. */
export function parseInteger(name: string, raw: string | undefined, def: number, min: number, max: number): number {
  if (raw === undefined || raw === '') return def;
  if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(name, `must be a whole number, got ${JSON.stringify(raw)}`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

/** Reads and checks one integer from `env` (settings, or flags passed as `{ '--rows': value }`). */
export function readInt(env: Env, name: string, def: number, min: number, max: number): number {
  return parseInteger(name, env[name], def, min, max);
}

function parseChoice(name: string, raw: string | undefined, def: string, choices: readonly string[]): string {
  if (raw === undefined || raw === '') return def;
  const v = raw.trim().toLowerCase();
  if (!choices.includes(v))
    throw new ConfigError(name, `must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
  return v;
}

function parseFlag(name: string, raw: string | undefined, def: boolean): boolean {
  const v = raw?.trim().toLowerCase();
  if (v === undefined || v === '') return def;
  if (v === '0' || v === 'false') return false;
  if (v === '1' || v === 'true') return true;
  throw new ConfigError(name, `must be 0 or 1, got ${JSON.stringify(raw)}`);
}

function parseUrl(name: string, raw: string, protocols: readonly string[], example: string, echo: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(name, `is not a URL (expected ${example})${echo}`);
  }
  if (!protocols.includes(u.protocol.slice(0, -1))) {
    throw new ConfigError(name, `must start with ${protocols.map((p) => `${p}://`).join(' or ')}, got ${u.protocol}//`);
  }
  return raw;
}
