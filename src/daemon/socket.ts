// Unix socket housekeeping: refuse to start over a live daemon, clear a stale socket, set modes.
import { connect } from "node:net";
import { lstat, unlink, chmod, chown, mkdir } from "node:fs/promises";
import { dirname } from "node:path";

/** True when something accepts connections on path. */
export function socketIsLive(path: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ path });
    const done = (live: boolean) => {
      sock.destroy();
      resolve(live);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("connect", () => done(true));
    sock.once("error", () => done(false));
  });
}

export class SocketInUseError extends Error {}

/** Prepares path for listening: its directory exists (0711), and a stale socket is removed. */
export async function prepareSocketPath(path: string): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o711 });
  let st;
  try {
    st = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  if (!st.isSocket()) throw new SocketInUseError(`${path} exists and is not a socket`);
  if (await socketIsLive(path)) throw new SocketInUseError(`another daemon is serving on ${path}`);
  await unlink(path);
}

export async function secureSocket(path: string, uid: number, gid: number): Promise<void> {
  await chown(path, uid, gid);
  await chmod(path, 0o660);
}
