/**
 * The coordinator's errors speak HTTP: they name query keys (`limit`, `sort[0].field`) and
 * say `partial`. A command speaks flags. Each command gives its {@link CliTerms}, and
 * {@link inCliTerms} rewrites an error's one line from the structured fields of the error
 * body (`field`, `missingChunks`, `missingWorkers`), never from its wording.
 */

/**
 * How a command names the API's query keys: `{limit: '--limit', aggregate: '--agg'}` for
 * fetch; `partial` is how to ask for a partial answer (`--partial`, or in the shell
 * `"partial": true`). A key left out keeps the API's name.
 */
export type CliTerms = Readonly<Record<string, string>>;

/** The terms of `dstore fetch` (and of update and delete, which share `--where`). */
export const FETCH_TERMS: CliTerms = {
  where: '--where',
  fields: '--fields',
  sort: '--sort',
  limit: '--limit',
  cursor: '--cursor',
  aggregate: '--agg',
  groupBy: '--group-by',
  partial: '--partial',
  set: '--set',
};

/**
 * The one line of an API error in `terms`:
 * - a read that could not reach every chunk (`missingChunks`) says which replicas, what to
 *   do, and how to ask for a partial answer in this command's terms, if it has one;
 * - an error pointing at a query key (`field: "limit"`, `"sort[1].field"`) names the flag
 *   instead: `--limit 5000 is over …`, `--sort item 2: unknown field …`;
 * - anything else is the coordinator's message as it is.
 */
export function inCliTerms(message: string, details: Record<string, unknown>, terms: CliTerms): string {
  if (typeof details.missingChunks === 'number')
    return noReplicaLine(details.missingChunks, details.missingWorkers, terms);
  const field = typeof details.field === 'string' ? details.field : undefined;
  const top = field === undefined ? undefined : /^[A-Za-z_]+/.exec(field)?.[0];
  const flag = top === undefined ? undefined : terms[top];
  if (field === undefined || top === undefined || flag === undefined) return message;
  const item = /^\[(\d+)\]/.exec(field.slice(top.length));
  const ref = item ? `${flag} item ${Number(item[1]) + 1}` : flag;
  // The coordinator's messages start with the place at fault: `sort[1].field: …`, `limit 5 is …`.
  if (message.startsWith(`${field}: `)) return `${ref}: ${message.slice(field.length + 2)}`;
  if (field === top && (message.startsWith(`${top} `) || message.startsWith(`${top}:`)))
    return flag + message.slice(top.length);
  return `${ref}: ${message}`;
}

/** The line for a read some chunks of which have no replica that answers. */
function noReplicaLine(chunks: number, workers: unknown, terms: CliTerms): string {
  const ws = Array.isArray(workers) ? workers.map(String) : [];
  const who = ws.length > 0 ? ` (their replicas: ${ws.join(', ')})` : '';
  const partial = terms.partial ? `, or ask for the rows that can be read with ${terms.partial}` : '';
  return `${chunks} chunk(s) have no live replica that answers${who}; restart those workers or wait for repair${partial}`;
}
