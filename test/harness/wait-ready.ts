// Waits until a daemon answers `ctr version`, failing fast (with the daemon's log) if it dies.
import { createConnection } from "node:net";
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

/** Whether something accepts connections on the unix socket. */
export function socketAccepts(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = createConnection(path);
    conn.once("connect", () => {
      conn.destroy();
      resolve(true);
    });
    conn.once("error", () => resolve(false));
  });
}

/**
 * Polls the socket, then `ctr version`. ctr blocks for seconds on a socket that does not exist
 * yet, so it only runs once the socket accepts connections.
 */
export async function waitReady(opts: WaitReadyOptions): Promise<void> {
  const deadlineMs = opts.deadlineMs ?? 20_000;
  const deadline = Date.now() + deadlineMs;
  let last = "socket not accepting connections";
  for (;;) {
    const gone = opts.exited();
    if (gone !== undefined) {
      throw new Error(
        `${opts.what} exited before it was ready (${gone})\n--- log tail ---\n${logTail(opts.logs())}`,
      );
    }
    if (await socketAccepts(opts.address)) {
      const result = await runCtr(opts.address, ["version"], { timeoutMs: 5000 }).catch((e: unknown) => ({
        code: -1,
        stdout: "",
        stderr: String(e),
      }));
      if (result.code === 0) return;
      last = `ctr version: ${result.stderr.trim()}`;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${opts.what} not ready at ${opts.address} after ${deadlineMs} ms (${last})\n` +
          `--- log tail ---\n${logTail(opts.logs())}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}
