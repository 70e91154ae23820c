/**
 * The part of the `where` language (docs/filter.md) the nemesis uses, evaluated in plain
 * JavaScript. Written here rather than borrowed from common/filter.ts so that the checker
 * does not share the code it checks.
 */

/** A `where` filter: top-level fields, each a scalar or an object of the operators {@link matches} knows. */
export type Filter = Record<string, unknown>;

type Scalar = string | number | boolean | null;

function sameScalar(a: unknown, b: unknown): boolean {
  return typeof a === typeof b && a === b;
}

/** Orders two values of one family (numbers, strings by UTF-8 bytes); undefined when they cannot be compared. */
function order(a: unknown, b: unknown): number | undefined {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  if (typeof a === 'string' && typeof b === 'string') return Buffer.compare(Buffer.from(a), Buffer.from(b));
  return undefined;
}

/**
 * Whether a row matches a filter: top-level fields compared with a scalar (equality) or
 * with `$in`, `$gt`, `$gte`, `$lt`, `$lte`, `$exists`, ANDed. Values compare only within
 * their type, as docs/filter.md says; a missing field matches nothing but `$exists: false`.
 *
 * @throws Error on an operator outside that subset
 */
export function matches(where: Filter, doc: Record<string, unknown>): boolean {
  for (const [field, cond] of Object.entries(where)) {
    const has = Object.hasOwn(doc, field);
    const v = doc[field];
    if (cond === null || typeof cond !== 'object' || Array.isArray(cond)) {
      if (!has || !sameScalar(cond, v)) return false;
      continue;
    }
    for (const [op, arg] of Object.entries(cond as Record<string, unknown>)) {
      let ok: boolean;
      switch (op) {
        case '$in':
          ok = has && (arg as Scalar[]).some((a) => sameScalar(a, v));
          break;
        case '$exists':
          ok = has === arg;
          break;
        case '$gt':
        case '$gte':
        case '$lt':
        case '$lte': {
          const c = has ? order(v, arg) : undefined;
          ok = c !== undefined && (op === '$gt' ? c > 0 : op === '$gte' ? c >= 0 : op === '$lt' ? c < 0 : c <= 0);
          break;
        }
        default:
          throw new Error(`nemesis filter: operator ${op} is not modelled`);
      }
      if (!ok) return false;
    }
  }
  return true;
}
