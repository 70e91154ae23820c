/** package.json as built into dist/ (two levels up from dist/common). */
const pkg = require('../../package.json') as { version: string; description: string };

/** dstore's version (package.json). */
export const VERSION: string = pkg.version;
/** dstore's one-line description (package.json). */
export const DESCRIPTION: string = pkg.description;
