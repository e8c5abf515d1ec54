// Many ctr processes started at once, for the concurrent-start rounds. Starting them one by one
// from the bench process (child_process.spawn) forks that whole Node process for each: 20 launches
// took it 100-190 ms on this 2-CPU VM, time during which the last ctr processes had not even been
// started, counted in both daemons' rounds alike. Here one small shell, started before the clock,
// waits for a go on its stdin, then starts them all (a dash fork costs a fraction of a millisecond)
// and reports each exit on its stdout as it happens.
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { CTR_PATH, ctrArgv, ctrEnv } from "../test/harness/ctr.js";
import { shellQuote } from "./shell-quote.js";

export interface BurstExit {
  /** Exit code (128 + n when ctr died from signal n, as the shell reports it). */
  code: number;
  /** ctr's stderr. */
  stderr: string;
  /** From the go until this ctr exited, ms. */
  exitedMs: number;
}

export interface BurstResult {
  /** performance.now() when the go was given: the start of the clock. */
  startedAt: number;
  /** From the go until the shell had started every ctr, ms. */
  launchedMs: number;
  /** In the order of argsList. */
  exits: BurstExit[];
}

/** The shell script: each ctr in a background subshell that reports `exit <i> <code>`. */
export function burstScript(
  address: string,
  namespace: string,
  argsList: readonly string[][],
  dir: string,
): string {
  const lines = [
    "echo ready",
    "read go || exit 1",
    'run() { i=$1; shift; "$@" </dev/null >/dev/null 2>' +
      shellQuote(dir) +
      '/"$i".err; echo "exit $i $?"; }',
  ];
  argsList.forEach((args, i) => {
    lines.push(`run ${i} ${[CTR_PATH, ...ctrArgv(address, args, namespace)].map(shellQuote).join(" ")} &`);
  });
  lines.push("echo launched", "wait", "");
  return lines.join("\n");
}

/**
 * Runs `ctr <args>` for every entry of argsList at once against address, stderr kept in files in
 * dir (which must exist). The clock starts once the shell is up. Resolves when all have exited,
 * whatever their codes; rejects after timeoutMs (killing them all) or when the shell fails.
 */
export function ctrBurst(
  address: string,
  namespace: string,
  argsList: readonly string[][],
  dir: string,
  timeoutMs: number,
): Promise<BurstResult> {
  let start = NaN;
  const child = spawn("/bin/sh", ["-c", burstScript(address, namespace, argsList, dir)], {
    env: ctrEnv(undefined),
    stdio: ["pipe", "pipe", "pipe"],
    detached: true, // its own process group, so that a timeout can kill every ctr
  });
  let launchedMs: number | undefined;
  const exitedAt = new Map<number, { code: number; ms: number }>();
  let pending = "";
  let shellErr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    const now = performance.now() - start; // NaN before the go: nothing but "ready" comes then
    pending += chunk.toString();
    const lines = pending.split("\n");
    pending = lines.pop() ?? "";
    for (const line of lines) {
      const m = /^exit (\d+) (\d+)$/.exec(line);
      if (m !== null) exitedAt.set(Number(m[1]), { code: Number(m[2]), ms: now });
      else if (line === "launched") launchedMs = now;
      else if (line === "ready") {
        start = performance.now();
        child.stdin.end("go\n");
      }
    }
  });
  child.stderr.on("data", (chunk: Buffer) => (shellErr += chunk.toString()));
  child.stdin.on("error", () => undefined); // the shell gone early: its exit code says why
  return new Promise<BurstResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      // The shell's process group (never -0: that would be the bench's own group).
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      reject(new Error(`${argsList.length} ctr processes did not all exit within ${timeoutMs} ms`));
    }, timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      if (code !== 0 || launchedMs === undefined || exitedAt.size !== argsList.length) {
        reject(new Error(`the ctr launcher shell exited ${code} after ${exitedAt.size} exits: ${shellErr}`));
        return;
      }
      const launched = launchedMs;
      Promise.all(
        argsList.map(async (_args, i): Promise<BurstExit> => {
          const exit = exitedAt.get(i) ?? { code: -1, ms: NaN };
          const stderr = await readFile(join(dir, `${i}.err`), "utf8").catch(() => "");
          return { code: exit.code, stderr, exitedMs: exit.ms };
        }),
      ).then((exits) => resolve({ startedAt: start, launchedMs: launched, exits }), reject);
    });
  });
}
