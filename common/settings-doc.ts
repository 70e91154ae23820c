import type { Setting, SettingUse } from './setting-kinds';
import { SETTINGS, settingsOf } from './settings';
import { DAY, GiB, HOUR, KiB, MiB, MINUTE, SECOND } from './units';

/**
 * The settings table rendered for people: the README's Markdown table (between two
 * marker comments, rewritten by `npm run docs:settings`) and the plain-text list that
 * `dstore worker --help` and `dstore coordinator --help` print.
 */

export const README_BEGIN =
  '<!-- settings:begin (generated from common/settings.ts by `npm run docs:settings`; edit there) -->';
export const README_END = '<!-- settings:end -->';

const DURATIONS: [number, string][] = [
  [DAY, 'd'],
  [HOUR, 'h'],
  [MINUTE, 'min'],
  [SECOND, 's'],
];
const SIZES: [number, string][] = [
  [GiB, 'GiB'],
  [MiB, 'MiB'],
  [KiB, 'KiB'],
];

/** `n` in the largest unit that divides it ("5 min", "16 MiB"), or undefined when no unit does. */
function human(n: number, unit: 'ms' | 'bytes' | undefined): string | undefined {
  const units = unit === 'ms' ? DURATIONS : unit === 'bytes' ? SIZES : [];
  const u = units.find(([size]) => n >= size && n % size === 0);
  return u && `${n / u[0]} ${u[1]}`;
}

/** The text to put in the environment to get the default (`1000`, `0`), or undefined for a computed or absent one. */
export function envDefault(s: Setting): string | undefined {
  if (typeof s.default === 'object') return undefined;
  if (typeof s.default === 'boolean') return s.default ? '1' : '0';
  return String(s.default);
}

/** The default as Markdown: `` `1000` (1 s) ``, `` `dstore` ``, or the words of a computed one. */
export function defaultDoc(s: Setting): string {
  if (typeof s.default === 'object') return s.default.doc;
  const h = s.kind === 'int' ? human(s.default, s.unit) : undefined;
  return `\`${envDefault(s)}\`${h ? ` (${h})` : ''}`;
}

/** What values a setting takes, as Markdown: bounds, choices, the rule of a text. */
export function valuesDoc(s: Setting): string {
  switch (s.kind) {
    case 'int': {
      const bound = (n: number) => human(n, s.unit) ?? `${n}${s.unit ? ` ${s.unit === 'ms' ? 'ms' : 'B'}` : ''}`;
      return `${bound(s.min)} to ${bound(s.max)}`;
    }
    case 'choice':
      return s.choices.map((c) => `\`${c}\``).join(', ');
    case 'flag':
      return '`0` or `1`';
    case 'text':
      return s.rule ?? 'text';
    case 'path':
      return 'path';
    case 'file':
      return 'file, read at start';
    case 'url':
      return s.protocols.map((p) => `\`${p}://…\``).join(' or ');
    case 'list':
      return `\`${s.item}\`, comma-separated`;
  }
}

/** The README's settings table, markers included. */
export function renderSettingsTable(): string {
  const rows = (SETTINGS as readonly Setting[]).map(
    (s) => `| \`${s.env}\` | ${defaultDoc(s)} | ${valuesDoc(s)} | ${s.use} | ${s.doc} |`,
  );
  return [
    README_BEGIN,
    '| variable | default | values | used by | meaning |',
    '|---|---|---|---|---|',
    ...rows,
    README_END,
  ].join('\n');
}

/** `readme` with its settings table replaced by `table`; throws when the markers are missing. */
export function replaceSettingsTable(readme: string, table = renderSettingsTable()): string {
  const begin = readme.indexOf(README_BEGIN);
  const end = readme.indexOf(README_END);
  if (begin < 0 || end < begin) throw new Error(`README.md has no ${README_BEGIN} … ${README_END} block`);
  return readme.slice(0, begin) + table + readme.slice(end + README_END.length);
}

/** Markdown made plain for a terminal: no backticks, links as their text. */
function plain(md: string): string {
  return md.replace(/\[([^\]]+)\]\([^)]+\)/g, '$1').replace(/`/g, '');
}

/** `text` cut at spaces into lines of at most `width` characters: the first after `first`, the others after `rest`. */
function wrap(text: string, first: string, rest: string, width: number): string[] {
  const lines: string[] = [];
  let line = first;
  let empty = true;
  for (const word of text.split(' ')) {
    if (!empty && line.length + 1 + word.length > width) {
      lines.push(line);
      line = rest + word;
    } else line = empty ? line + word : `${line} ${word}`;
    empty = false;
  }
  lines.push(line);
  return lines;
}

/** The settings a `use` process reads, as plain text for the end of its `--help`. */
export function renderSettingsHelp(use: Exclude<SettingUse, 'all' | 'cli'>, width = 80): string {
  const out = ['', 'Settings (environment variables; a flag above overrides its variable):'];
  for (const s of settingsOf(use)) {
    out.push(...wrap(`${s.env}: default ${plain(defaultDoc(s))}; ${plain(valuesDoc(s))}`, '  ', '    ', width));
    out.push(...wrap(plain(s.doc), '      ', '      ', width));
  }
  return out.join('\n');
}
