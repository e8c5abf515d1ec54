// A container process's stdio as the shim wires it. Stdout and stderr go straight to where the
// client asked (its FIFO, opened read-write so that output waits in the pipe when nobody reads
// yet, or a file:// log), with no copy through the shim. Stdin is copied from the client's FIFO
// into a pipe, so that the process sees EOF when the client closes its end. A terminal is the pty
// master runc hands over on the console socket, copied to and from the FIFOs.
import { closeSync, constants as fsConstants, mkdirSync, openSync } from "node:fs";
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

/** Opens an output target: a FIFO path (read-write, never blocks), or a file:// log. */
function openOutput(uri: string): number {
  if (uri.startsWith("binary://"))
    throw new BerthError("not-implemented", `binary:// log URIs are not supported yet: ${uri}`);
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

export async function openStdio(paths: StdioPaths, scratchDir: string, name: string): Promise<ProcessStdio> {
  const held: number[] = [];
  const streams: { destroy(): void }[] = [];
  let stdinSource: Socket | undefined;
  let stdinSink: { end(): void } | undefined;

  if (paths.terminal) {
    const consolePath = join(scratchDir, `${name}.console.sock`);
    const console = ConsoleSocket.listen(consolePath);
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
          console.close();
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
        console.close();
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
    if (paths.stdout !== "") {
      const fd = openOutput(paths.stdout);
      held.push(fd);
      io.stdout = fd;
    }
    if (paths.stderr !== "") {
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
