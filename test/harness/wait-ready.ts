// Polls `ctr version` until a daemon answers, with a deadline and the daemon's log in the error.
import { runCtr } from "./ctr.js";

export interface WaitReadyOptions {
  address: string;
  /** Name for error messages ("containerd", "berthd"). */
  what: string;
  deadlineMs?: number;
  /** Returns an exit description if the daemon already died (so we fail fast). */
  exited(): string | undefined;
  /** The daemon's log so far. */
  logs(): string;
}

export function logTail(text: string, lines = 40): string {
  return text.split("\n").slice(-lines).join("\n");
}

export async function waitReady(opts: WaitReadyOptions): Promise<void> {
  const deadline = Date.now() + (opts.deadlineMs ?? 20_000);
  let last = "";
  for (;;) {
    const gone = opts.exited();
    if (gone !== undefined) {
      throw new Error(`${opts.what} exited before it was ready (${gone})\n--- log tail ---\n${logTail(opts.logs())}`);
    }
    const result = await runCtr(opts.address, ["version"], { timeoutMs: 5000 }).catch((e: unknown) => ({
      code: -1,
      stdout: "",
      stderr: String(e),
    }));
    if (result.code === 0) return;
    last = result.stderr.trim();
    if (Date.now() > deadline) {
      throw new Error(
        `${opts.what} not ready at ${opts.address} after ${opts.deadlineMs ?? 20_000} ms ` +
          `(last ctr version: ${last})\n--- log tail ---\n${logTail(opts.logs())}`,
      );
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
