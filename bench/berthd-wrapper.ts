// A stand-in for bin/berthd that runs the same build with its output appended to a file, and
// optionally under `node --cpu-prof` (Node refuses --cpu-prof in NODE_OPTIONS, so the flag goes on
// bin/berthd's own node command line, copied into the wrapper). The file is where a service manager would send the output; the
// harness would otherwise keep the last 4 MiB in a string in the bench process, and trimming it
// costs that process a CPU-second per few thousand lines once it is full, all of it taken from the
// 2 CPUs the daemons are measured on.
import { chmod, readFile, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { BERTHD_PATH, startBerthd, type BerthdHandle } from "../test/harness/berthd.js";
import { errorText } from "./rounds.js";
import { shellQuote } from "./shell-quote.js";

export interface BerthdWrapperOptions {
  /** stdout and stderr are appended there (not passed to the harness) when given. */
  logFile?: string;
  /** V8 CPU profiles land there on exit when given (this slows berthd down; for diagnosis only). */
  cpuProfileDir?: string;
  /** The wrapper's file name in dir; "berthd-wrapper" by default. */
  name?: string;
  /** The bin/berthd to run (another checkout's build, to compare); this checkout's by default. */
  berthdPath?: string;
}

/** Writes an executable `<dir>/<name>` and returns its path. */
export async function writeBerthdWrapper(dir: string, opts: BerthdWrapperOptions): Promise<string> {
  const path = join(dir, opts.name ?? "berthd-wrapper");
  const lines = ["#!/bin/sh"];
  if (opts.logFile !== undefined) lines.push(`exec >>${shellQuote(resolve(opts.logFile))} 2>&1`);
  const berthd = opts.berthdPath ?? BERTHD_PATH;
  if (opts.cpuProfileDir === undefined) {
    // bin/berthd itself, so that the bench runs berthd with the node flags it ships with.
    lines.push(`exec ${shellQuote(berthd)} "$@"`, "");
  } else {
    // Node refuses --cpu-prof in NODE_OPTIONS: bin/berthd's own node command, with the flag added.
    const exec = (await readFile(berthd, "utf8")).split("\n").find((l) => l.startsWith("exec node "));
    if (exec === undefined) throw new Error(`${berthd} has no "exec node ..." line to profile`);
    const flags = `--cpu-prof --cpu-prof-dir=${shellQuote(resolve(opts.cpuProfileDir))}`;
    lines.push(`here=${shellQuote(dirname(berthd))}`, exec.replace(/^exec node /, `exec node ${flags} `), "");
  }
  await writeFile(path, lines.join("\n"));
  await chmod(path, 0o755);
  return path;
}

export interface LogSummary {
  lines: number;
  /** Node process warnings ("(node:PID) Warning: ..."), by message with numbers masked, most first. */
  warnings: { message: string; count: number }[];
}

/** Counts a daemon log's lines and its Node warnings, grouped by kind. */
export function summarizeLog(text: string): LogSummary {
  const lines = text.split("\n").filter((l) => l !== "");
  const counts = new Map<string, number>();
  for (const line of lines) {
    const m = /^\(node:\d+\) (?:\[\w+\] )?(\w*Warning): (.*)$/.exec(line);
    if (m === null) continue;
    const message = `${m[1]}: ${(m[2] ?? "").replace(/\d+/g, "N")}`;
    counts.set(message, (counts.get(message) ?? 0) + 1);
  }
  return {
    lines: lines.length,
    warnings: [...counts]
      .map(([message, count]) => ({ message, count }))
      .sort((a, b) => b.count - a.count || a.message.localeCompare(b.message)),
  };
}

/** summarizeLog of a file; an absent file is an empty log. */
export async function summarizeLogFile(path: string): Promise<LogSummary> {
  try {
    return summarizeLog(await readFile(path, "utf8"));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return summarizeLog("");
    throw err;
  }
}

/**
 * Starts berthd through a wrapper (writeBerthdWrapper) logging to opts.logFile at logLevel ("info":
 * the harness's default, debug, would cost a log line per call). A berthd that does not come up
 * fails with the tail of its log.
 */
export async function startWrappedBerthd(
  dir: string,
  opts: BerthdWrapperOptions & { logFile: string; logLevel?: string; state?: string },
): Promise<BerthdHandle> {
  const binary = await writeBerthdWrapper(dir, opts);
  const extraArgs = ["--log-level", opts.logLevel ?? "info"];
  return startBerthd({ extraArgs, binary, ...(opts.state ? { state: opts.state } : {}) }).catch(
    async (err: unknown) => {
      const tail = (await readFile(opts.logFile, "utf8").catch(() => "")).split("\n").slice(-20).join("\n");
      throw new Error(`${errorText(err)}\n--- ${opts.logFile} tail ---\n${tail}`);
    },
  );
}
