/** What every CLI command provides, and the exit codes they share. */
import { parseArgs, type ParseArgsConfig } from "node:util";

type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig["options"]>;

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

/** Prints a usage error for `command` (one line, then its usage) and gives the exit code. */
export function usageError(command: Pick<Command, "name" | "usage">, io: CliIO, message: string): number {
  io.err(`quantlab ${command.name}: ${message.replace(/\s*\n\s*/g, " ")}\nUsage: ${command.usage}\n`);
  return EXIT.usage;
}

/**
 * The command line of `command` parsed strictly (node:util parseArgs); on a usage error prints it (usageError)
 * and gives undefined.
 */
export function parseCommandArgs<const O extends ParseArgsOptionsConfig>(
  command: Pick<Command, "name" | "usage">,
  args: string[],
  options: O,
  io: CliIO,
  allowPositionals = true,
) {
  try {
    return parseArgs({ args, options, allowPositionals, strict: true });
  } catch (e) {
    usageError(command, io, (e as Error).message);
    return undefined;
  }
}
