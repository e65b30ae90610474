/**
 * The `quantlab` command line: a table of commands, `--help` on each, and one exit-code policy
 * (0 done, 1 unexpected failure, 2 bad input or bad usage) so scripts can branch on it.
 */
import { awqCommand, gptqCommand } from "./calibrated.ts";
import { decodeCommand } from "./decode.ts";
import { encodeCommand } from "./encode.ts";
import { evalCommand, generateCommand } from "./eval.ts";
import { exportCommand } from "./export.ts";
import { formatsCommand } from "./formats.ts";
import { inspectCommand } from "./inspect.ts";
import { memoryCommand } from "./memory.ts";
import { quantizeCommand } from "./quantize.ts";
import { EXIT, type CliIO, type Command } from "./command.ts";

const helpCommand: Command = {
  name: "help",
  summary: "Show how to use quantlab or one of its commands.",
  usage: "quantlab help [COMMAND]",
  details: "With a COMMAND, prints that command's help (the same as `quantlab COMMAND --help`).",
  async run(args, io) {
    const wanted = args.find((a) => !a.startsWith("-"));
    if (!wanted) {
      io.out(overview());
      return EXIT.ok;
    }
    const command = COMMANDS.find((c) => c.name === wanted);
    if (!command) return unknownCommand(wanted, io);
    io.out(commandHelp(command));
    return EXIT.ok;
  },
};

const COMMANDS: readonly Command[] = [
  inspectCommand,
  formatsCommand,
  quantizeCommand,
  encodeCommand,
  decodeCommand,
  memoryCommand,
  exportCommand,
  gptqCommand,
  awqCommand,
  evalCommand,
  generateCommand,
  helpCommand,
];

export function overview(): string {
  return [
    "quantlab: a WebGPU quantization lab's command line (the same readers as the browser lab).",
    "",
    "Usage: quantlab COMMAND [OPTIONS]",
    "",
    "Commands:",
    // Usage lines are long: each command's summary goes on the line below it.
    ...COMMANDS.flatMap((c) => [`  ${c.usage}`, `      ${c.summary}`]),
    "",
    "Every command takes --help. Exit codes: 0 done, 1 unexpected failure, 2 bad input or usage.",
    "",
  ].join("\n");
}

export function commandHelp(command: Command): string {
  return [`Usage: ${command.usage}`, "", command.summary, "", command.details, ""].join("\n");
}

function unknownCommand(name: string, io: CliIO): number {
  io.err(`quantlab: unknown command "${name}"\n\n${overview()}`);
  return EXIT.usage;
}

/** Runs one command line (without `node` and the script) and returns the exit code. */
export async function run(argv: string[], io: CliIO = processIO()): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    io.err(overview());
    return EXIT.usage;
  }
  if (first === "--help" || first === "-h") {
    io.out(overview());
    return EXIT.ok;
  }
  const command = COMMANDS.find((c) => c.name === first);
  if (!command) return unknownCommand(first, io);
  if (rest.includes("--help") || rest.includes("-h")) {
    io.out(commandHelp(command));
    return EXIT.ok;
  }
  return command.run(rest, io);
}

function processIO(): CliIO {
  // `quantlab inspect big | head` closes stdout early: that is not an error worth a stack trace.
  process.stdout.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "EPIPE") process.exit(process.exitCode ?? 0);
    throw e;
  });
  return {
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
  };
}
