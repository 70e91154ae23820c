import { getMetadataStorage } from 'class-validator';

type Storage = ReturnType<typeof getMetadataStorage>;
type ValidationMetadata = ReturnType<Storage['getTargetValidationMetadatas']>[number];
/** A decorated class, as class-validator takes it (`object.constructor`). */
type Target = Parameters<Storage['getTargetValidationMetadatas']>[0];

type Lookup = (
  target: Target,
  schema: string,
  always: boolean,
  strictGroups: boolean,
  groups?: string[],
) => ValidationMetadata[];

type Grouping = (metadata: ValidationMetadata[]) => Record<string, ValidationMetadata[]>;

let installed = false;

/**
 * Makes class-validator resolve a class's rules once instead of on every `validateSync`.
 *
 * Unpatched, each call scans every decorated class (to find inherited rules) and regroups the
 * result by property (typestack/class-validator#2686). That was most of the cost of checking a
 * small message, and every FETCH, FETCH_RESP and read credit is checked where it is built and
 * where it is decoded. A class's rules are all registered when its module loads, before any
 * instance can be validated, and a class loaded later only adds rules of its own, so the
 * result for a class never changes once asked for. Calls with validation groups (dstore uses
 * none) are passed through uncached. Idempotent.
 */
export function cacheValidationMetadata(): void {
  if (installed) return;
  installed = true;
  const storage: { getTargetValidationMetadatas: Lookup; groupByPropertyName: Grouping } = getMetadataStorage();
  const lookup = storage.getTargetValidationMetadatas.bind(storage);
  const group = storage.groupByPropertyName.bind(storage);
  const byTarget = new WeakMap<Target, Map<string, ValidationMetadata[]>>();
  const grouped = new WeakMap<ValidationMetadata[], Record<string, ValidationMetadata[]>>();
  storage.getTargetValidationMetadatas = (target, schema, always, strictGroups, groups) => {
    if (groups !== undefined && groups.length > 0) return lookup(target, schema, always, strictGroups, groups);
    let forTarget = byTarget.get(target);
    if (forTarget === undefined) byTarget.set(target, (forTarget = new Map()));
    const key = `${String(schema)}\0${always}\0${strictGroups}`;
    let found = forTarget.get(key);
    if (found === undefined) forTarget.set(key, (found = lookup(target, schema, always, strictGroups, groups)));
    return found;
  };
  // The validator only reads the grouping (it filters each property's list into new arrays).
  storage.groupByPropertyName = (metadata) => {
    let found = grouped.get(metadata);
    if (found === undefined) grouped.set(metadata, (found = group(metadata)));
    return found;
  };
}
