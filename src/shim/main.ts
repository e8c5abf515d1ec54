// containerd-shim-berth-v1: the Berth shim. `start` finds or starts the shim serving this task's
// group (by default its namespace; a pod when the CRI sandbox annotation says so) and prints its
// ttrpc address; `delete` cleans up after a dead shim; with no action it serves the Task API on
// -socket. berthd starts serving shims itself (a spare kept ready), so no `ctr run` waits for a
// Node process to boot; the command lines are what a real containerd uses.
import { appendFileSync, closeSync, constants, fstatSync, openSync, writeSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DeleteResponseSchema, Task } from "../gen/containerd/runtime/v2/task/shim_pb.js";
import { unmountAll } from "../core/mount/mount.js";
import { createTtrpcServer } from "../ttrpc/server.js";
import { parseShimFlags, type ShimFlags } from "./flags.js";
import { Container } from "./container.js";
import { createPublisher } from "./publisher.js";
import { Reaper } from "./reaper.js";
import { reaperSpawner } from "./spawner.js";
import { CgroupAttachWarmup } from "../sys/cgroup-attach-warmup.js";
import { Runc, readPidFile } from "./runc.js";
import { createShimService, runcRootFor } from "./task-service.js";
import { canConnect, groupSocket, shimGroup, spawnServer } from "./launch.js";

const version = "0.1.0";

/** Where `start` puts group sockets when berthd does not say (containerd's own shim socket dir). */
const defaultSocketDir = "/run/containerd/s";

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function start(flags: ShimFlags): Promise<void> {
  const bundle = process.cwd();
  await readAll(process.stdin).catch(() => Buffer.alloc(0));
  const group = shimGroup(await Container.annotations(bundle), flags.namespace);
  const dir = process.env.BERTH_SHIM_SOCKET_DIR ?? defaultSocketDir;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const socket = groupSocket(dir, flags.address, flags.namespace, group);
  if (!(await canConnect(socket))) await spawnServer(flags, socket, process.env);
  const address = `unix://${socket}`;
  await writeFile(join(bundle, "address"), address, { mode: 0o600 });
  process.stdout.write(address);
}

/** Cleans up after a shim that died: force-deletes the runc container and unmounts the rootfs. */
async function deleteAction(flags: ShimFlags): Promise<void> {
  const bundle = flags.bundle || process.cwd();
  const runc = new Runc({ root: runcRootFor(bundle, flags.namespace), log: join(bundle, "log.json") });
  await runc.delete(flags.id, { force: true }).catch(() => undefined);
  unmountAll(join(bundle, "rootfs"));
  const pid = await readPidFile(join(bundle, "init.pid")).catch(() => 0);
  const resp = create(DeleteResponseSchema, {
    pid,
    exitStatus: 137,
    exitedAt: timestampFromDate(new Date()),
  });
  process.stdout.write(toBinary(DeleteResponseSchema, resp));
}

/** Linux's PIPE_BUF: writes of at most this many bytes to a pipe are atomic. */
const PIPE_BUF = 4096;

/** Idle spares and emptied shims exit after this long with no container and no connection. */
const idleExitMs = Number(process.env.BERTH_SHIM_IDLE_EXIT_MS ?? "") || 60_000;

async function serve(flags: ShimFlags): Promise<void> {
  if (!flags.socket) throw new Error("-socket is required to serve");
  // -debug logs to stderr; BERTH_SHIM_LOG names a file to append to (a spare has no stderr);
  // BERTH_SHIM_LOG_FIFO is the FIFO berthd's pool reads into its own log (runtime/shim-log.ts).
  const logFile = process.env.BERTH_SHIM_LOG;
  const logFifo = process.env.BERTH_SHIM_LOG_FIFO;
  const fifoFd = logFifo ? openLogFifo(logFifo) : undefined;
  const log = (msg: string) => {
    const line = `${new Date().toISOString()} berth-shim[${process.pid}]: ${msg}\n`;
    if (flags.debug) process.stderr.write(line);
    if (logFile) appendFileSync(logFile, line);
    if (fifoFd !== undefined) {
      try {
        // At most PIPE_BUF bytes, so that each line is one atomic write the reader never splits.
        const bytes = Buffer.from(line);
        writeSync(
          fifoFd,
          bytes.length <= PIPE_BUF
            ? bytes
            : Buffer.concat([bytes.subarray(0, PIPE_BUF - 4), Buffer.from("...\n")]),
        );
      } catch {
        // A full pipe (nobody has read it for 64 KiB): the line is dropped, the shim goes on.
      }
    }
  };
  // Another shim may have raced us to this group's socket: then it serves, and we are not needed.
  if (await canConnect(flags.socket)) {
    signalReady();
    return;
  }
  await rm(flags.socket, { force: true });
  const reaper = new Reaper();
  reaper.on("exit", (e) => log(`exit pid=${e.pid} status=${e.status}`));
  reaper.on("orphan", (e) => log(`orphan pid=${e.pid} status=${e.status}`));
  reaper.on("error", (e) => log(`reaper error: ${e.message}`));
  const ttrpcAddress = process.env.TTRPC_ADDRESS ?? `${flags.address}.ttrpc`;
  const publisher = createPublisher(ttrpcAddress, log);
  let idleTimer: NodeJS.Timeout | undefined;
  const exit = () => {
    void (async () => {
      // Deferred `runc delete`s finish first, unless one hangs (a frozen cgroup, a stuck disk).
      await Promise.race([service.retired(), new Promise((r) => setTimeout(r, 10_000))]);
      await Promise.race([publisher.flush(), new Promise((r) => setTimeout(r, 2000))]);
      await server.close();
      await rm(flags.socket, { force: true });
      if (logFifo) await rm(logFifo, { force: true });
      process.exit(0);
    })();
  };
  const service = createShimService({
    namespace: flags.namespace,
    reaper,
    publisher,
    onSpawn: (child) => reaper.trackSpawned(child),
    spawner: reaperSpawner(reaper),
    cgroupWarmup: new CgroupAttachWarmup(),
    exit,
    log,
  });
  const armIdle = () => {
    clearTimeout(idleTimer);
    idleTimer = setTimeout(() => {
      if (service.size === 0 && server.connections === 0) exit();
    }, idleExitMs);
  };
  const server = createTtrpcServer({
    onError: (err) => log(`connection error: ${(err as Error).message}`),
    onDisconnect: (remaining) => {
      if (remaining === 0 && service.size === 0) armIdle();
    },
  });
  server.register(Task, service.impl);
  await server.listen(flags.socket);
  armIdle();
  process.on("SIGINT", () => undefined);
  process.on("SIGTERM", () => {
    if (service.size === 0) exit();
  });
  // A shim supervises running containers: a bug in one request must not take them all down.
  process.on("uncaughtException", (err) => log(`uncaught: ${err.stack ?? err.message}`));
  process.on("unhandledRejection", (err) => log(`unhandled rejection: ${String(err)}`));
  signalReady();
}

function signalReady(): void {
  try {
    writeSync(3, "ok\n");
    closeSync(3);
  } catch {
    // Not started by spawnServer (no fd 3): nobody is waiting.
  }
}

async function main(): Promise<void> {
  const flags = parseShimFlags(process.argv.slice(2));
  if (flags.version) {
    process.stdout.write(`containerd-shim-berth-v1:\n  Version: ${version}\n`);
    return;
  }
  switch (flags.action) {
    case "start":
      return start(flags);
    case "delete":
      return deleteAction(flags);
    default:
      return serve(flags);
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`containerd-shim-berth-v1: ${(err as Error).message}\n`);
  process.exit(1);
});

/** The log FIFO, opened read-write and non-blocking: writes never wait, even with no reader. */
function openLogFifo(path: string): number | undefined {
  try {
    const fd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    if (fstatSync(fd).isFIFO()) return fd;
    closeSync(fd);
  } catch {
    // no FIFO: no log there
  }
  return undefined;
}
