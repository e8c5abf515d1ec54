// Between timed rounds: flush dirty pages, so that one round's writeback is not paid by the next.
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Runs sync(1): writes every dirty page back before the next round starts. */
export async function settleDisks(): Promise<void> {
  await execFileAsync("sync", [], { timeout: 120_000 });
}
