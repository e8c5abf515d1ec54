// A spawned daemon process: bounded log capture, exit tracking, SIGTERM-then-SIGKILL stopping.
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";

const MAX_LOG_BYTES = 4 * 1024 * 1024;

export interface DaemonProcess {
  child: ChildProcess;
  pid: number;
  /** stdout and stderr interleaved, the last 4 MiB. */
  logs(): string;
  /** undefined while running, else "code N" / "signal S". */
  exitDescription(): string | undefined;
  /** Resolves with the exit code (null when killed by a signal) once the process has exited. */
  exited: Promise<number | null>;
  /** Sends signal, waits up to graceMs, then SIGKILLs; resolves with the exit code. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
}

export function spawnDaemon(
  command: string,
  args: readonly string[],
  opts: SpawnOptions = {},
): DaemonProcess {
  const child = spawn(command, args, { ...opts, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const append = (chunk: Buffer): void => {
    log += chunk.toString();
    if (log.length > MAX_LOG_BYTES) log = log.slice(log.length - MAX_LOG_BYTES);
  };
  child.stdout?.on("data", append);
  child.stderr?.on("data", append);
  let description: string | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.on("exit", (code, signal) => {
      description = code !== null ? `code ${code}` : `signal ${signal}`;
      resolve(code);
    });
    child.on("error", (err) => {
      description = `spawn error: ${err.message}`;
      append(Buffer.from(`spawn error: ${err.message}\n`));
      resolve(null);
    });
  });
  return {
    child,
    pid: child.pid ?? -1,
    logs: () => log,
    exitDescription: () => description,
    exited,
    async stop(signal = "SIGTERM", graceMs = 10_000) {
      if (description !== undefined) return exited;
      child.kill(signal);
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}
