// Runs the stock ctr 1.6 binary against a daemon socket, capturing its output for comparison.
import { spawn, type ChildProcess } from "node:child_process";

export const CTR_PATH = "/usr/bin/ctr";

export interface CtrOptions {
  /** Defaults to "default", as ctr's own default. */
  namespace?: string;
  /** Bytes for ctr's stdin (e.g. `content ingest`); stdin is closed empty otherwise. */
  input?: Buffer | string;
  /** Kills ctr and rejects after this long; default 60 s. */
  timeoutMs?: number;
  env?: Record<string, string>;
}

export interface CtrResult {
  /** Exit code; -1 when ctr died from a signal. */
  code: number;
  stdout: string;
  stderr: string;
}

export function ctrArgv(address: string, args: readonly string[], namespace: string | undefined): string[] {
  return ["--address", address, "--namespace", namespace ?? "default", ...args];
}

export function ctrEnv(extra: Record<string, string> | undefined): NodeJS.ProcessEnv {
  // Drop inherited CONTAINERD_* settings so that only the flags decide where ctr goes.
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CONTAINERD_")));
  return { ...env, ...extra };
}

/** Runs ctr to completion. Resolves whatever the exit code; rejects only on timeout or spawn failure. */
export function runCtr(address: string, args: readonly string[], opts: CtrOptions = {}): Promise<CtrResult> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolvePromise, reject) => {
    const child = spawn(CTR_PATH, ctrArgv(address, args, opts.namespace), {
      env: ctrEnv(opts.env),
      stdio: ["pipe", "pipe", "pipe"],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (c: Buffer) => out.push(c));
    child.stderr.on("data", (c: Buffer) => err.push(c));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `ctr ${args.join(" ")} timed out after ${timeoutMs} ms\nstdout: ${Buffer.concat(out).toString()}\n` +
            `stderr: ${Buffer.concat(err).toString()}`,
        ),
      );
    }, timeoutMs);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolvePromise({
        code: code ?? -1,
        stdout: Buffer.concat(out).toString(),
        stderr: Buffer.concat(err).toString(),
      });
    });
    // ctr may exit before reading its stdin; EPIPE then is not our failure.
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

/** Runs ctr and throws (with stderr) unless it exits 0. Resolves with stdout. */
export async function ctrOk(
  address: string,
  args: readonly string[],
  opts: CtrOptions = {},
): Promise<string> {
  const result = await runCtr(address, args, opts);
  if (result.code !== 0) {
    throw new Error(
      `ctr ${args.join(" ")} exited ${result.code}\nstderr: ${result.stderr}\nstdout: ${result.stdout}`,
    );
  }
  return result.stdout;
}

/**
 * A long-running ctr (e.g. `ctr events`, or `ctr content ingest` fed piece by piece) whose output
 * accumulates until it exits or is stopped.
 */
export interface CtrProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves once stdout contains the text (or rejects after timeoutMs). */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  /** Feeds more to ctr's stdin (only with keepStdinOpen). */
  write(data: Buffer | string): void;
  /** Closes stdin and resolves with the result once ctr has exited (SIGKILL after timeoutMs). */
  finish(timeoutMs?: number): Promise<CtrResult>;
  /** Sends SIGTERM (default) and resolves with the result once ctr has exited. */
  stop(signal?: NodeJS.Signals): Promise<CtrResult>;
}

export interface SpawnCtrOptions extends Omit<CtrOptions, "timeoutMs"> {
  /** Leaves stdin open after `input`, for write() and finish(); it is closed at once otherwise. */
  keepStdinOpen?: boolean;
}

export function spawnCtr(address: string, args: readonly string[], opts: SpawnCtrOptions = {}): CtrProcess {
  const child = spawn(CTR_PATH, ctrArgv(address, args, opts.namespace), {
    env: ctrEnv(opts.env),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (err += c.toString()));
  child.stdin.on("error", () => undefined);
  if (opts.keepStdinOpen) {
    if (opts.input !== undefined) child.stdin.write(opts.input);
  } else {
    child.stdin.end(opts.input ?? "");
  }
  const exited = new Promise<number>((resolvePromise) => {
    child.on("close", (code) => resolvePromise(code ?? -1));
    child.on("error", () => resolvePromise(-1));
  });
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    async waitFor(text, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      const seen = (): boolean => (typeof text === "string" ? out.includes(text) : text.test(out));
      while (!seen()) {
        if (Date.now() > deadline) {
          throw new Error(`ctr ${args.join(" ")}: no ${String(text)} within ${timeoutMs} ms\n${out}\n${err}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    write(data) {
      child.stdin.write(data);
    },
    async finish(timeoutMs = 30_000) {
      child.stdin.end();
      const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
      const code = await exited;
      clearTimeout(timer);
      return { code, stdout: out, stderr: err };
    },
    async stop(signal = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await exited;
      return { code, stdout: out, stderr: err };
    },
  };
}
