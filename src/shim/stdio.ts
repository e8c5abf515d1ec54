// A container process's stdio as the shim wires it. Stdout and stderr go straight to where the
// client asked (its FIFO, opened read-write so that output waits in the pipe when nobody reads
// yet, or a file:// log), with no copy through the shim. Stdin is copied from the client's FIFO
// into a pipe, so that the process sees EOF when the client closes its end. A terminal is the pty
// master runc hands over on the console socket, copied to and from the FIFOs.
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, constants as fsConstants, mkdirSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { Socket } from "node:net";
import { dirname, join } from "node:path";
import { ReadStream } from "node:tty";
import { fileURLToPath } from "node:url";
import { BerthError, invalidArgument } from "../errdefs/errors.js";
import { pipe2 } from "../sys/pipe.js";
import { ConsoleSocket, setWinsize } from "../sys/socket.js";
import type { ProcessIO } from "./runc.js";

export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

export interface ProcessStdio {
  /** The descriptors runc hands the process (without a terminal). */
  readonly io: ProcessIO;
  /** runc's --console-socket, with a terminal. */
  readonly consoleSocket?: string;
  /** After runc create/exec returned: drops the shim's copies the process alone needs; takes the pty. */
  started(): Promise<void>;
  resize(width: number, height: number): void;
  closeStdin(): void;
  /** After the process exited: releases everything, so that readers of the FIFOs see EOF. */
  close(): void;
}

const closeQuietly = (fd: number) => {
  try {
    closeSync(fd);
  } catch {
    // already closed
  }
};

/** Who the process is, for logging binaries; and how the shim wants its own children tracked. */
export interface StdioContext {
  id: string;
  namespace: string;
  /** Called right after spawning a logging binary (the reaper must leave it to libuv). */
  onSpawn?: (child: ChildProcess) => void;
}

/**
 * containerd's binary:// logging protocol: the binary gets the process's stdout and stderr as the
 * read ends of two pipes on fds 3 and 4, and fd 5 to close (or write to) once it is ready; its
 * arguments come from the URI's query, CONTAINER_ID and CONTAINER_NAMESPACE from the environment.
 * Returns the write ends for the process.
 */
async function startLoggingBinary(
  uri: string,
  ctx: StdioContext,
): Promise<{ stdout: number; stderr: number }> {
  const url = new URL(uri);
  const args: string[] = [];
  for (const [k, v] of url.searchParams) {
    args.push(k);
    if (v !== "") args.push(v);
  }
  const [outR, outW] = pipe2();
  const [errR, errW] = pipe2();
  const [readyR, readyW] = pipe2();
  let child: ChildProcess;
  try {
    child = spawn(decodeURIComponent(url.pathname), args, {
      stdio: ["ignore", "ignore", "ignore", outR, errR, readyW],
      // Exactly containerd's environment for a logging binary: these two, nothing inherited.
      env: { CONTAINER_ID: ctx.id, CONTAINER_NAMESPACE: ctx.namespace },
    });
    ctx.onSpawn?.(child);
    child.on("error", () => undefined);
  } finally {
    for (const fd of [outR, errR, readyW]) closeQuietly(fd);
  }
  // Ready once the binary closes (or writes to) its end of the wait pipe; not if it dies first.
  const ready = new Socket({ fd: readyR, readable: true, writable: false });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new BerthError("deadline-exceeded", `logging binary ${url.pathname} is not ready after 10 s`),
          ),
        10_000,
      );
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      ready.once("data", done);
      ready.once("end", done);
      ready.once("close", done);
      child.once("error", (err) => {
        clearTimeout(timer);
        reject(new BerthError("unknown", `failed to start logging binary ${url.pathname}: ${err.message}`));
      });
    });
  } catch (err) {
    closeQuietly(outW);
    closeQuietly(errW);
    throw err;
  } finally {
    ready.destroy();
  }
  return { stdout: outW, stderr: errW };
}

/** Opens an output target: a FIFO path (read-write, never blocks), or a file:// log. */
function openOutput(uri: string): number {
  if (uri.startsWith("file://")) {
    const path = fileURLToPath(uri);
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    return openSync(path, fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT, 0o640);
  }
  if (uri.includes("://")) throw invalidArgument(`unsupported stdio URI ${uri}`);
  return openSync(uri, fsConstants.O_RDWR);
}

/** The client's stdin FIFO as a readable stream (non-blocking; no EOF until a writer has come and gone). */
function openStdinFifo(path: string): Socket {
  const fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  return new Socket({ fd, readable: true, writable: false });
}

export async function openStdio(paths: StdioPaths, ctx: StdioContext): Promise<ProcessStdio> {
  const held: number[] = [];
  const streams: { destroy(): void }[] = [];
  let stdinSource: Socket | undefined;
  let stdinSink: { end(): void } | undefined;

  if (paths.terminal) {
    // A unix socket path is at most 107 bytes, which a bundle path with a long namespace and id
    // can pass: the socket lives in a private (0700) directory under the temp dir, as go-runc's.
    const consoleDir = mkdtempSync(join(tmpdir(), "berth-pty-"));
    const consolePath = join(consoleDir, "pty.sock");
    const console = ConsoleSocket.listen(consolePath);
    const closeConsole = () => {
      console.close();
      rmSync(consoleDir, { recursive: true, force: true });
    };
    const masterP = console.receiveMaster({ timeoutMs: 30_000 });
    masterP.catch(() => undefined);
    let master: ReadStream | undefined;
    let masterFd = -1;
    let stdoutFd = -1;
    return {
      io: { stdin: "ignore", stdout: "ignore", stderr: "ignore" },
      consoleSocket: consolePath,
      async started() {
        try {
          const m = await masterP;
          masterFd = m.fd;
        } finally {
          closeConsole();
        }
        master = new ReadStream(masterFd);
        master.on("error", () => undefined);
        if (paths.stdout !== "") {
          stdoutFd = openOutput(paths.stdout);
          const out = new Socket({ fd: stdoutFd, readable: false, writable: true });
          out.on("error", () => undefined);
          streams.push(out);
          master.pipe(out);
        } else master.resume();
        if (paths.stdin !== "") {
          stdinSource = openStdinFifo(paths.stdin);
          stdinSource.on("error", () => undefined);
          streams.push(stdinSource);
          // EOF on stdin does not close a terminal: the client ends the session by killing it.
          stdinSource.pipe(master, { end: false });
        }
      },
      resize(width, height) {
        if (masterFd < 0) throw new BerthError("failed-precondition", "the terminal is not ready");
        setWinsize(masterFd, height, width);
      },
      closeStdin() {
        stdinSource?.destroy();
      },
      close() {
        closeConsole();
        for (const s of streams) s.destroy();
        master?.destroy();
      },
    };
  }

  const io: ProcessIO = { stdin: "ignore", stdout: "ignore", stderr: "ignore" };
  let processStdin = -1;
  try {
    if (paths.stdin !== "") {
      const [r, w] = pipe2();
      processStdin = r;
      io.stdin = r;
      const sink = new Socket({ fd: w, readable: false, writable: true });
      sink.on("error", () => undefined);
      stdinSink = sink;
      streams.push(sink);
      stdinSource = openStdinFifo(paths.stdin);
      stdinSource.on("error", () => undefined);
      streams.push(stdinSource);
      stdinSource.pipe(sink);
    }
    if (paths.stdout.startsWith("binary://")) {
      // One logging binary takes both streams (ctr passes the same URI for stdout and stderr).
      const fds = await startLoggingBinary(paths.stdout, ctx);
      held.push(fds.stdout, fds.stderr);
      io.stdout = fds.stdout;
      io.stderr = fds.stderr;
    } else if (paths.stdout !== "") {
      const fd = openOutput(paths.stdout);
      held.push(fd);
      io.stdout = fd;
    }
    if (paths.stderr !== "" && !paths.stdout.startsWith("binary://")) {
      if (paths.stderr === paths.stdout) io.stderr = io.stdout;
      else {
        const fd = openOutput(paths.stderr);
        held.push(fd);
        io.stderr = fd;
      }
    }
  } catch (err) {
    for (const fd of held) closeQuietly(fd);
    if (processStdin >= 0) closeQuietly(processStdin);
    for (const s of streams) s.destroy();
    throw err;
  }
  return {
    io,
    async started() {
      // The process has its own copy of the pipe's read end now.
      if (processStdin >= 0) closeQuietly(processStdin);
      processStdin = -1;
    },
    resize() {
      throw new BerthError("failed-precondition", "the process has no terminal");
    },
    closeStdin() {
      stdinSource?.destroy();
      stdinSink?.end();
    },
    close() {
      if (processStdin >= 0) closeQuietly(processStdin);
      processStdin = -1;
      for (const fd of held.splice(0)) closeQuietly(fd);
      for (const s of streams) s.destroy();
    },
  };
}
