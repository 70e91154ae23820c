// Lint: typescript-eslint's recommended rules plus the type-aware ones that catch
// what hurts a distributed store most (a promise nobody awaits loses its error).
// Formatting is prettier's job (`npm run format`), so no style rules live here.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '**/*.js', '**/*.cjs', '**/*.mjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      'max-len': [
        'error',
        { code: 120, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true },
      ],
      'no-constant-condition': ['error', { checkLoops: false }],
      // Validation matches control characters on purpose; aligned CLI output is matched space for space.
      'no-control-regex': 'off',
      'no-regex-spaces': 'off',
      // Optional packages (pg for a baseline, testcontainers for container tests) load lazily, where used.
      '@typescript-eslint/no-require-imports': [
        'error',
        { allow: ['^pg$', '^pg-copy-streams$', '^testcontainers$', 'package\\.json$'] },
      ],
    },
  },
);
