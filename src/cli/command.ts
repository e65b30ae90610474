/** What every CLI command provides, and the exit codes they share. */

export const EXIT = {
  ok: 0,
  /** A bug or an environment failure: not the user's input. */
  failure: 1,
  /** Bad input (a corrupt file, a missing path, a server without Range) or bad usage. */
  usage: 2,
} as const;

/** Where a command writes; the process's stdout/stderr in the real CLI. */
export interface CliIO {
  out(text: string): void;
  err(text: string): void;
}

export interface Command {
  name: string;
  /** One line for the overview. */
  summary: string;
  /** e.g. "quantlab inspect PATH|URL [--json]" */
  usage: string;
  /** The rest of `--help`: arguments, options, output, an example. */
  details: string;
  /** `args` are the words after the command name; `--help` never reaches here. */
  run(args: string[], io: CliIO): Promise<number>;
}
