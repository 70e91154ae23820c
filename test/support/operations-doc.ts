import * as fs from 'node:fs';
import * as path from 'node:path';
import { projectRoot } from './processes';

/** One row of the key table in docs/operations.md. */
export interface DocumentedKey {
  /** As written, e.g. `<prefix>:worker:<workerId>:ops`. */
  pattern: string;
  /** The `Keys` member it documents, e.g. `workerOps`. */
  member: string;
  type: string;
}

/** The rows of the "Redis key layout" table of docs/operations.md. */
export function documentedKeys(): DocumentedKey[] {
  const text = fs.readFileSync(path.join(projectRoot(), 'docs', 'operations.md'), 'utf8');
  const lines = text.split('\n');
  const head = lines.findIndex((l) => /^\| key \| `Keys` member \|/.test(l));
  if (head < 0) throw new Error('docs/operations.md has no key table (a line starting "| key | `Keys` member |")');
  const rows: DocumentedKey[] = [];
  for (const line of lines.slice(head + 2)) {
    if (!line.startsWith('|')) break;
    const cells = line
      .split('|')
      .slice(1, -1)
      .map((c) => c.trim());
    const code = (c: string) => /^`([^`]+)`$/.exec(c)?.[1];
    const pattern = code(cells[0]);
    const member = code(cells[1]);
    if (!pattern || !member)
      throw new Error(`docs/operations.md key table: row without a \`pattern\` and a \`member\`: ${line}`);
    rows.push({ pattern, member, type: cells[2] });
  }
  return rows;
}

/** The pattern with `<prefix>` → `prefix` and every other `<placeholder>` → `arg`. */
export function renderPattern(pattern: string, prefix: string, arg: string): string {
  return pattern.replace(/<prefix>/g, prefix).replace(/<[A-Za-z]+>/g, arg);
}

/** A regex matching the real keys of `pattern` under `prefix`: a placeholder is one name, a trailing `*` anything. */
export function patternRegex(pattern: string, prefix: string): RegExp {
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const parts = pattern.split(/(<[A-Za-z]+>|\*$)/).filter((p) => p !== '');
  const body = parts
    .map((p) => (p === '<prefix>' ? esc(prefix) : p === '*' ? '.+' : /^<[A-Za-z]+>$/.test(p) ? '[^:]+' : esc(p)))
    .join('');
  return new RegExp(`^${body}$`);
}
