// berthd's pool of Berth shims: one serving shim per group (a namespace, or a pod), and one started
// spare, so that a task of a new group never waits for a Node process to boot. A spare is a shim
// listening on its own socket in a 0700 directory under berthd's state; acquiring assigns it to a
// group and starts the next spare in the background.
import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { spawnServer, type ServerFlags } from "../shim/launch.js";

export interface BerthShimPool {
  /** The address of the shim serving group, assigning the spare when the group has none. */
  acquire(group: string): Promise<string>;
  /** The group's shim goes away (it served its last task): later tasks get another. */
  release(group: string, address: string): void;
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
  log: { warn(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}

export function createBerthShimPool(opts: BerthShimPoolOptions): BerthShimPool {
  const groups = new Map<string, { address: Promise<string>; resolved?: string }>();
  const spares: Promise<string>[] = [];
  /** Pids of started spares, until they are assigned to a group. */
  const sparePids = new Map<string, number>();
  const wanted = opts.spares ?? 1;
  let closed = false;

  async function launch(): Promise<string> {
    await mkdir(opts.socketDir, { recursive: true, mode: 0o700 });
    const socket = join(opts.socketDir, randomBytes(12).toString("hex"));
    const started = Date.now();
    const pid = await spawnServer(opts.flags, socket, opts.env);
    opts.log.debug({ pid, socket, ms: Date.now() - started }, "berth shim started");
    const address = `unix://${socket}`;
    sparePids.set(address, pid);
    return address;
  }

  function refill(): void {
    while (!closed && spares.length < wanted) {
      const p = launch();
      p.catch((err: unknown) => {
        opts.log.warn({ err }, "failed to start a spare berth shim");
        const i = spares.indexOf(p);
        if (i >= 0) void spares.splice(i, 1);
      });
      spares.push(p);
    }
  }

  return {
    acquire(group) {
      const known = groups.get(group);
      if (known) return known.address;
      const entry: { address: Promise<string>; resolved?: string } = { address: spares.shift() ?? launch() };
      groups.set(group, entry);
      entry.address.then(
        (a) => {
          entry.resolved = a;
          sparePids.delete(a);
        },
        () => {
          if (groups.get(group) === entry) groups.delete(group);
        },
      );
      refill();
      return entry.address;
    },
    release(group, address) {
      const entry = groups.get(group);
      if (entry && (entry.resolved === address || entry.resolved === undefined)) groups.delete(group);
    },
    adopt(group, address) {
      if (!groups.has(group)) groups.set(group, { address: Promise.resolve(address), resolved: address });
    },
    warm: refill,
    close() {
      closed = true;
      // Spares serve nothing yet: stop them with the daemon (a shim with containers is never one).
      for (const p of spares)
        void p.then(
          (address) => {
            const pid = sparePids.get(address);
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
