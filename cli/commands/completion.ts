import type { Command, Option } from 'commander';

/** One command path of the program (`''`, `table`, `table create`, …) and what may follow it. */
interface Node {
  path: string;
  words: string[];
  /** Long and short flags that take one of a fixed set of values → those values. */
  choices: Map<string, string[]>;
  /** Flags whose value is a file (`--file`), or the command takes file arguments. */
  files: boolean;
}

function nodes(cmd: Command, path = ''): Node[] {
  const opts = (cmd.options as readonly Option[]).filter((o) => !o.hidden);
  const words = [
    ...cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden).map((c) => c.name()),
    ...opts.flatMap((o) => [o.long, o.short].filter((f): f is string => !!f)),
    '--help',
  ];
  const choices = new Map<string, string[]>();
  for (const o of opts) {
    if (o.argChoices && o.argChoices.length > 0) for (const f of [o.long, o.short]) if (f) choices.set(f, o.argChoices);
  }
  const files = cmd.registeredArguments.some((a) => /file|path/i.test(a.name()));
  return [
    { path, words: [...new Set(words)], choices, files },
    ...cmd.commands.flatMap((c) => nodes(c, path ? `${path} ${c.name()}` : c.name())),
  ];
}

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * A bash completion script for `program`, generated from its commands and options, so
 * it never falls behind the CLI. `source <(dstore completion bash)`, or save it under
 * /etc/bash_completion.d/dstore.
 */
export function bashCompletion(program: Command): string {
  const all = nodes(program);
  const name = program.name();
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const wordCases = all.map((n) => `    ${q(n.path)}) echo ${q(n.words.join(' '))} ;;`).join('\n');
  const choiceCases = all
    .flatMap((n) =>
      [...n.choices].map(([flag, values]) => `    ${q(`${n.path}|${flag}`)}) echo ${q(values.join(' '))} ;;`),
    )
    .join('\n');
  const fileCases = all.filter((n) => n.files).map((n) => q(n.path));
  return `# bash completion for ${name}; load it with: source <(${name} completion bash)
${fn}_words() {
  case "$1" in
${wordCases}
    *) return 1 ;;
  esac
}
${fn}_choices() {
  case "$1" in
${choiceCases || "    '') ;;"}
    *) return 1 ;;
  esac
}
${fn}() {
  local cur prev key w i values
  COMPREPLY=()
  cur="\${COMP_WORDS[COMP_CWORD]}"
  prev="\${COMP_WORDS[COMP_CWORD-1]}"
  key=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    [[ "$w" == -* ]] && continue
    if ${fn}_words "\${key:+$key }$w" >/dev/null; then key="\${key:+$key }$w"; fi
  done
  if values=$(${fn}_choices "$key|$prev"); then
    COMPREPLY=($(compgen -W "$values" -- "$cur"))
    return 0
  fi
  if [[ "$cur" != -* ]]; then
    case "$key" in
      ${fileCases.length > 0 ? fileCases.join('|') : "''"}) COMPREPLY=($(compgen -f -- "$cur")) ;;
    esac
  fi
  COMPREPLY+=($(compgen -W "$(${fn}_words "$key")" -- "$cur"))
  return 0
}
complete -o default -F ${fn} ${name}
`;
}

/** `dstore completion bash`. */
export function registerCompletionCommand(program: Command): void {
  program
    .command('completion')
    .summary('print a shell completion script')
    .description(
      'print a completion script for the shell; for bash: source <(dstore completion bash), or save it in /etc/bash_completion.d/dstore',
    )
    .argument('<shell>', 'the shell (bash)')
    .action((shell: string) => {
      if (shell !== 'bash') throw new Error(`no completion for shell ${JSON.stringify(shell)}; supported: bash`);
      process.stdout.write(bashCompletion(program));
    });
}
