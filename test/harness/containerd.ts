// A private, real containerd 1.6 for side-by-side tests: own root, state, sockets and mount namespace.
import { writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { spawnDaemon } from "./daemon-process.js";
import { descendantsOf, killPids, pidsWithArgs, waitGone } from "./process-tree.js";
import { makeTempDir, removeTempDir } from "./temp-dir.js";
import { waitReady } from "./wait-ready.js";

export const CONTAINERD_PATH = "/usr/bin/containerd";

/**
 * Plugins off by default: CRI (slow, needs CNI) and the snapshotters that only ever report
 * "skip"/"error" here (aufs probes modprobe; btrfs, zfs and devmapper need special filesystems).
 */
export const DEFAULT_DISABLED_PLUGINS = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
];

export interface ContainerdOptions {
  /** Replaces DEFAULT_DISABLED_PLUGINS (pass ["io.containerd.grpc.v1.cri"] for a stock plugin list). */
  disabledPlugins?: readonly string[];
  /** "info" by default; "debug" is very chatty. */
  logLevel?: "debug" | "info" | "warn" | "error";
  /** Extra TOML appended to the generated config. */
  extraConfig?: string;
  /** Environment for containerd (and so for the shims it starts), e.g. a PATH with our shim. */
  env?: Record<string, string>;
  /** The state dir (bundles); `<temp dir>/state` by default. Whoever gives one removes it. */
  state?: string;
}

export interface ContainerdHandle {
  /** The gRPC socket (outside /run, reachable from the test process). */
  address: string;
  root: string;
  state: string;
  /** The temp dir holding everything; removed by stop(). */
  dir: string;
  /** A directory for `ctr run --fifo-dir` (ctr's default, /run/containerd/fifo, is invisible to it). */
  fifoDir: string;
  pid: number;
  logs(): string;
  stop(): Promise<void>;
}

function tomlString(s: string): string {
  return JSON.stringify(s); // paths here never need TOML-only escapes
}

export function containerdConfig(dir: string, opts: ContainerdOptions = {}): string {
  const disabled = opts.disabledPlugins ?? DEFAULT_DISABLED_PLUGINS;
  return [
    "version = 2",
    `root = ${tomlString(join(dir, "root"))}`,
    `state = ${tomlString(opts.state ?? join(dir, "state"))}`,
    `disabled_plugins = [${disabled.map(tomlString).join(", ")}]`,
    "",
    "[grpc]",
    `  address = ${tomlString(join(dir, "containerd.sock"))}`,
    "",
    "[ttrpc]",
    `  address = ${tomlString(join(dir, "containerd.sock.ttrpc"))}`,
    "",
    "[debug]",
    `  address = ${tomlString(join(dir, "debug.sock"))}`,
    `  level = ${tomlString(opts.logLevel ?? "info")}`,
    "",
    "[metrics]",
    '  address = ""',
    "",
    // The opt plugin would otherwise create /opt/containerd on the host.
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${tomlString(join(dir, "opt"))}`,
    "",
    opts.extraConfig ?? "",
  ].join("\n");
}

/**
 * Starts containerd inside `unshare --mount --propagation private` with a tmpfs over /run:
 * containerd 1.6 puts shim sockets, runc state and FIFOs under /run/containerd whatever its
 * state dir says, so a private /run keeps it off the host's (and off berthd's) paths.
 */
export async function startContainerd(opts: ContainerdOptions = {}): Promise<ContainerdHandle> {
  const dir = await makeTempDir("containerd");
  const address = join(dir, "containerd.sock");
  const root = join(dir, "root");
  const state = opts.state ?? join(dir, "state");
  const fifoDir = join(dir, "fifo");
  await mkdir(fifoDir, { recursive: true });
  const configPath = join(dir, "config.toml");
  await writeFile(configPath, containerdConfig(dir, opts));

  const daemon = spawnDaemon(
    "unshare",
    [
      "--mount",
      "--propagation",
      "private",
      "--",
      "sh",
      "-c",
      `mount -t tmpfs tmpfs /run && exec ${CONTAINERD_PATH} --config "$0"`,
      configPath,
    ],
    opts.env ? { env: { ...process.env, ...opts.env } } : undefined,
  );

  const stop = async (): Promise<void> => {
    await daemon.stop("SIGTERM", 10_000);
    // Shims outlive containerd by design; end ours (found by our socket path) and their children.
    const shims = await pidsWithArgs("-address", address);
    const victims = [...shims, ...(await descendantsOf(shims))];
    killPids(victims);
    await waitGone(victims);
    await removeTempDir(dir);
  };

  try {
    await waitReady({
      address,
      what: "containerd",
      exited: () => daemon.exitDescription(),
      logs: () => daemon.logs(),
    });
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return { address, root, state, dir, fifoDir, pid: daemon.pid, logs: () => daemon.logs(), stop };
}
