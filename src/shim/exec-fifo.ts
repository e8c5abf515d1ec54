// runc's exec fifo, read by the shim itself. `runc create` leaves runc init blocked opening
// `<runc root>/<id>/exec.fifo` for writing; all `runc start` does for a created container
// (libcontainer's exec()) is open that fifo for reading, read the byte init writes, and remove the
// fifo, after which init execs the user process and `runc state` says "running". Doing the same
// here saves starting a runc process (a Go binary, ~5 ms) on every container start. Whenever
// anything is not as expected, the caller falls back to `runc start`.
import { closeSync, constants, fstatSync, openSync, unlinkSync } from "node:fs";
import { Socket } from "node:net";

/**
 * Reads the exec fifo at path, releasing runc init, and removes it. Resolves true when init was
 * released; false when the fifo is not there (or is not a fifo), when init went away without
 * writing (initExited settled and no byte came), or when the fifo ended with no byte: the caller then runs
 * `runc start`, which reports the matching error.
 */
export async function releaseExecFifo(path: string, initExited: Promise<unknown>): Promise<boolean> {
  let fd: number;
  try {
    // O_NONBLOCK: opening for reading never waits; init's blocked open for writing completes
    // (libuv adds O_CLOEXEC).
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch {
    return false;
  }
  try {
    if (!fstatSync(fd).isFIFO()) {
      closeSync(fd);
      return false;
    }
  } catch {
    closeSync(fd);
    return false;
  }
  const fifo = new Socket({ fd, readable: true, writable: false });
  const released = await new Promise<boolean>((resolve) => {
    fifo.once("data", () => resolve(true));
    fifo.once("end", () => resolve(false));
    fifo.once("error", () => resolve(false));
    // init may write and exit at once (a short process): its byte, already in the fifo, arrives
    // right after. Only an init that died without writing leaves nothing to read.
    const gone = (): void => void setTimeout(() => resolve(false), 20).unref();
    initExited.then(gone, gone);
  });
  fifo.destroy();
  if (released) {
    try {
      unlinkSync(path);
    } catch {
      // gone already
    }
  }
  return released;
}
