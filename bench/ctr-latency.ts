// Wall-clock time of one stock `ctr` invocation against a daemon: process start to exit.
import { runCtr } from "../test/harness/ctr.js";

/** Runs `ctr <args>` once; resolves with its duration in ms, throws if it does not exit 0. */
export async function timeCtr(address: string, args: readonly string[]): Promise<number> {
  const start = performance.now();
  const result = await runCtr(address, args, { timeoutMs: 30_000 });
  const ms = performance.now() - start;
  if (result.code !== 0)
    throw new Error(`ctr ${args.join(" ")} exited ${result.code}: ${result.stderr.trim()}`);
  return ms;
}
