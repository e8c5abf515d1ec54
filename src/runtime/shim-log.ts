// The log of a pooled Berth shim, in berthd's own log, as containerd copies each shim's log FIFO
// into its log. A pooled shim is started before any task (so no bundle `log` FIFO exists for it),
// and serves many: its FIFO is `<socket>.log` beside its socket. berthd opens it read-write and
// non-blocking (so it never sees EOF, and never blocks), the shim opens it the same way (so its
// writes never block and never fail for want of a reader: a full pipe drops lines), and berthd
// opens it again for the shims it finds after a restart.
import { closeSync, constants, fstatSync, openSync } from "node:fs";
import { Socket } from "node:net";
import { AT, S, mknodat } from "../sys/fs-at.js";
import { hasCode } from "../sys/errno.js";

export interface ShimLogSink {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ShimLogReader {
  close(): void;
}

/** The FIFO path of the pooled shim listening on socketPath. */
export const shimLogFifo = (socketPath: string): string => `${socketPath}.log`;

/**
 * Opens (creating it when create is set) the FIFO at path and logs each line the shim writes to it
 * as an info line of sink with the shim's socket. Undefined when there is no FIFO to read.
 */
export function readShimLog(
  path: string,
  sink: ShimLogSink,
  fields: object,
  create: boolean,
): ShimLogReader | undefined {
  if (create) {
    try {
      mknodat(AT.FDCWD, path, S.IFIFO | 0o600);
    } catch (err) {
      if (!hasCode(err, "EEXIST")) throw err;
    }
  }
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (err) {
    if (hasCode(err, "ENOENT") || hasCode(err, "ELOOP")) return undefined;
    throw err;
  }
  if (!fstatSync(fd).isFIFO()) {
    closeSync(fd);
    return undefined;
  }
  const fifo = new Socket({ fd, readable: true, writable: false });
  fifo.unref();
  let partial = "";
  fifo.setEncoding("utf8");
  fifo.on("data", (chunk: string) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop() ?? "";
    // A runaway line is cut rather than held.
    if (partial.length > 16384) partial = "";
    for (const line of lines) if (line.trim() !== "") sink.info(fields, line);
  });
  fifo.on("error", (err) => sink.warn({ ...fields, err }, "reading a shim log failed"));
  return { close: () => fifo.destroy() };
}
