// The snapshotter backends (overlayfs, native), the walking differ and their gRPC services. The
// metadata plugin picks the snapshotters up by type, as containerd's does.
import { availableParallelism } from "node:os";
import type { PluginRegistration } from "./plugin.js";
import { PluginSkipped } from "./plugin.js";
import type { Exchange } from "../core/events/exchange.js";
import type { Metadata } from "./metadata-plugins.js";
import { createOverlaySnapshotter, overlaySupported } from "../core/snapshots/overlayfs.js";
import { createNativeSnapshotter } from "../core/snapshots/native.js";
import type { Snapshotter } from "../core/snapshots/snapshotter.js";
import { createWorkerPool } from "../core/diff/worker-pool.js";
import { releaseFreeMemory } from "../sys/malloc.js";
import { createWalkingDiffer, type Differ } from "../core/diff/walking-differ.js";
import { registerService } from "../services/grpc-adapter.js";
import { Snapshots, snapshotsService } from "../services/snapshots-service.js";
import { Diff, diffService } from "../services/diff-service.js";

/** Bounds on one layer apply (decompression bombs, inode floods); configurable on the differ. */
export const defaultLimits = { maxLayerBytes: 64 * 2 ** 30, maxLayerEntries: 4_000_000 };

const workerScript = new URL(
  `../core/diff/diff-worker${import.meta.url.endsWith(".ts") ? ".ts" : ".js"}`,
  import.meta.url,
);

function positiveInteger(v: unknown, fallback: number, what: string): number {
  if (v === undefined) return fallback;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0)
    throw new Error(`${what} must be a positive integer, not ${JSON.stringify(v)}`);
  return v;
}

export function snapshotPlugins(): PluginRegistration[] {
  return [
    {
      type: "io.containerd.snapshotter.v1",
      id: "overlayfs",
      init: async (ic): Promise<Snapshotter> => {
        ic.exports.root = ic.root;
        if (!(await overlaySupported(ic.root)))
          throw new PluginSkipped(`overlay is not supported on ${ic.root}`);
        return createOverlaySnapshotter({ root: ic.root });
      },
    },
    {
      type: "io.containerd.snapshotter.v1",
      id: "native",
      init: async (ic): Promise<Snapshotter> => {
        ic.exports.root = ic.root;
        return createNativeSnapshotter({ root: ic.root });
      },
    },
    {
      type: "io.containerd.differ.v1",
      id: "walking",
      requires: ["io.containerd.metadata.v1"],
      init: (ic): Differ & { close(): Promise<void> } => {
        const md = ic.get<Metadata>("io.containerd.metadata.v1");
        const pool = createWorkerPool({
          script: workerScript,
          size: Math.max(2, availableParallelism()),
          // Applies leave glibc holding what their threads freed (worker isolates, zlib, rings).
          onAllRetired: () => void releaseFreeMemory(),
        });
        const differ = createWalkingDiffer({
          contentFor: (ctx) => md.content.forContext(ctx),
          blobPath: (d) => md.backend.blobPath(d),
          workDir: ic.state,
          pool,
          maxLayerBytes: positiveInteger(
            ic.config.max_layer_bytes,
            defaultLimits.maxLayerBytes,
            "max_layer_bytes",
          ),
          maxLayerEntries: positiveInteger(
            ic.config.max_layer_entries,
            defaultLimits.maxLayerEntries,
            "max_layer_entries",
          ),
        });
        return { ...differ, close: () => pool.close() };
      },
    },
    {
      type: "io.containerd.grpc.v1",
      id: "snapshots",
      requires: ["io.containerd.metadata.v1", "io.containerd.event.v1"],
      init: (ic) => {
        const md = ic.get<Metadata>("io.containerd.metadata.v1");
        const events = ic.get<Exchange>("io.containerd.event.v1");
        return {
          register: (s: Parameters<typeof registerService>[0], o: Parameters<typeof registerService>[3]) =>
            registerService(s, Snapshots, snapshotsService({ snapshots: md.snapshots, events }), o),
        };
      },
    },
    {
      type: "io.containerd.grpc.v1",
      id: "diff",
      requires: ["io.containerd.differ.v1"],
      init: (ic) => {
        const differ = ic.get<Differ>("io.containerd.differ.v1");
        return {
          register: (s: Parameters<typeof registerService>[0], o: Parameters<typeof registerService>[3]) =>
            registerService(s, Diff, diffService({ differ }), o),
        };
      },
    },
  ];
}
