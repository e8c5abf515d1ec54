// berthd's pool of Berth shims: one serving shim per group (a namespace, or a pod), and one started
// spare, so that a task of a new group never waits for a Node process to boot. A spare is a shim
// listening on its own socket in a 0700 directory under berthd's state; acquiring assigns it to a
// group. A group's shim whose last task is deleted becomes the spare again when the pool has none,
// so a run of short-lived containers reuses one process instead of booting one per container; the
// next spare is started only if none came back within a moment. The pool holds a connection to
// each spare: a shim with no container and no connection exits on its own after a minute, so a
// spare lives as long as berthd and no longer.
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { spawnServer, type ServerFlags } from "../shim/launch.js";
import { readShimLog, shimLogFifo, type ShimLogReader } from "./shim-log.js";

export interface BerthShimPool {
  /** The address of the shim serving group, assigning the spare when the group has none. */
  acquire(group: string): Promise<string>;
  /**
   * The group's shim served its last task. Returns true when the pool keeps it as the spare (do
   * not shut it down), false when it is not needed (shut it down).
   */
  release(group: string, address: string): boolean;
  /** The group's shim is gone (it died): forget it. */
  forget(group: string, address: string): void;
  /** A shim found serving group after a restart. */
  adopt(group: string, address: string): void;
  /** Starts the first spare (in the background; failures are logged, and acquire retries). */
  warm(): void;
  close(): void;
}

export interface BerthShimPoolOptions {
  socketDir: string;
  flags: ServerFlags;
  env: NodeJS.ProcessEnv;
  spares?: number;
  /** How long after a spare is taken the next one is started, unless one came back (ms). */
  refillDelayMs?: number;
  log: {
    info(obj: object, msg: string): void;
    warn(obj: object, msg: string): void;
    debug(obj: object, msg: string): void;
  };
}

interface Spare {
  address: string;
  keepAlive: Socket;
}

const socketPath = (address: string) => address.replace(/^unix:\/\//, "");

/** How many refill delays in a row a churning group may put the next spare off by. */
const MAX_REFILL_DEFERRALS = 10;

export function createBerthShimPool(opts: BerthShimPoolOptions): BerthShimPool {
  const groups = new Map<string, { address: Promise<string>; resolved?: string }>();
  const spares: Promise<Spare>[] = [];
  /** Pids of the shims this pool started (for stopping unused spares with berthd). */
  const pids = new Map<string, number>();
  const wanted = opts.spares ?? 1;
  let refillTimer: NodeJS.Timeout | undefined;
  /** A shim came back (release kept it) since the refill timer was set. */
  let returned = false;
  /** Refills put off in a row because shims kept coming back. */
  let deferrals = 0;
  let closed = false;
  /** The log FIFO readers of the shims this pool knows, by address. */
  const logs = new Map<string, ShimLogReader>();

  function readLog(address: string, create: boolean): void {
    if (logs.has(address)) return;
    try {
      const reader = readShimLog(shimLogFifo(socketPath(address)), opts.log, { shim: address }, create);
      if (reader) logs.set(address, reader);
    } catch (err) {
      opts.log.warn({ err, address }, "cannot read the log of a berth shim");
    }
  }

  /** Stops reading a shim's log once it has had time to say its last words. */
  function dropLog(address: string): void {
    const reader = logs.get(address);
    if (!reader) return;
    logs.delete(address);
    setTimeout(() => reader.close(), 2000).unref();
  }

  /** Holds a connection to a spare; drops the spare from the list if it goes away. */
  function holdSpare(address: string): Promise<Spare> {
    const entry: Promise<Spare> = new Promise((resolve, reject) => {
      const keepAlive = connect(socketPath(address));
      keepAlive.once("connect", () => resolve({ address, keepAlive }));
      keepAlive.once("error", reject);
      keepAlive.once("close", () => {
        const i = spares.indexOf(entry);
        if (i >= 0) {
          // A spare went away (not handed to a group, which also ends this connection).
          void spares.splice(i, 1);
          dropLog(address);
        }
      });
    });
    entry.catch((err: unknown) => {
      opts.log.warn({ err, address }, "a spare berth shim is not reachable");
      const i = spares.indexOf(entry);
      if (i >= 0) void spares.splice(i, 1);
    });
    return entry;
  }

  async function launch(): Promise<string> {
    await mkdir(opts.socketDir, { recursive: true, mode: 0o700 });
    const socket = join(opts.socketDir, randomBytes(12).toString("hex"));
    const started = Date.now();
    const address = `unix://${socket}`;
    readLog(address, true);
    let pid: number;
    try {
      pid = await spawnServer(opts.flags, socket, { ...opts.env, BERTH_SHIM_LOG_FIFO: shimLogFifo(socket) });
    } catch (err) {
      dropLog(address);
      throw err;
    }
    opts.log.debug({ pid, socket, ms: Date.now() - started }, "berth shim started");
    pids.set(address, pid);
    return address;
  }

  function refill(): void {
    while (!closed && spares.length < wanted) spares.push(launch().then(holdSpare));
  }

  function scheduleRefill(): void {
    if (refillTimer !== undefined || closed) return;
    returned = false;
    refillTimer = setTimeout(() => {
      refillTimer = undefined;
      // A shim came back while we waited: its group is churning (run --rm after run --rm), taking
      // the spare and giving it back each time. A new spare started now would only be shut down
      // at the next return (a Node boot, ~150 ms of CPU, for nothing): wait again instead.
      // Only a few times in a row: other groups may be taking spares meanwhile, and each of them
      // without one waits for a Node boot.
      if (returned && spares.length < wanted && deferrals < MAX_REFILL_DEFERRALS) {
        deferrals++;
        scheduleRefill();
      } else {
        deferrals = 0;
        refill();
      }
    }, opts.refillDelayMs ?? 1000);
    refillTimer.unref();
  }

  return {
    acquire(group) {
      const known = groups.get(group);
      if (known) return known.address;
      const spare = spares.shift();
      const address = spare
        ? spare.then((s) => {
            s.keepAlive.destroy();
            return s.address;
          })
        : launch();
      const entry: { address: Promise<string>; resolved?: string } = { address };
      groups.set(group, entry);
      address.then(
        (a) => (entry.resolved = a),
        () => {
          if (groups.get(group) === entry) groups.delete(group);
        },
      );
      scheduleRefill();
      return address;
    },
    release(group, address) {
      const entry = groups.get(group);
      if (entry && (entry.resolved === address || entry.resolved === undefined)) groups.delete(group);
      if (closed || spares.length >= wanted) {
        dropLog(address);
        return false;
      }
      spares.push(holdSpare(address));
      returned = true;
      return true;
    },
    forget(group, address) {
      const entry = groups.get(group);
      if (entry && (entry.resolved === address || entry.resolved === undefined)) groups.delete(group);
      pids.delete(address);
      dropLog(address);
    },
    adopt(group, address) {
      if (!groups.has(group)) groups.set(group, { address: Promise.resolve(address), resolved: address });
      readLog(address, false);
    },
    warm: refill,
    close() {
      closed = true;
      clearTimeout(refillTimer);
      for (const reader of logs.values()) reader.close();
      logs.clear();
      // Spares serve nothing: stop them with the daemon (a shim with containers is never a spare).
      for (const p of spares.splice(0))
        void p.then(
          (s) => {
            s.keepAlive.destroy();
            const pid = pids.get(s.address);
            try {
              if (pid) process.kill(pid, "SIGTERM");
            } catch {
              // already gone
            }
          },
          () => undefined,
        );
    },
  };
}
