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
import { createUnpackAhead, type UnpackAhead } from "../core/diff/unpack-ahead.js";
import type { Logger } from "./logger.js";
import { differDefaults } from "./config.js";
import type { Metrics } from "./metrics.js";
import { dirname, join } from "node:path";
import { registerService } from "../services/grpc-adapter.js";
import { Snapshots, snapshotsService } from "../services/snapshots-service.js";
import { Diff, diffService } from "../services/diff-service.js";

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

function booleanSetting(v: unknown, fallback: boolean, what: string): boolean {
  if (v === undefined) return fallback;
  if (typeof v !== "boolean") throw new Error(`${what} must be true or false, not ${JSON.stringify(v)}`);
  return v;
}

export function snapshotPlugins(deps: { log: Logger; metrics: Metrics }): PluginRegistration[] {
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
        const limits = {
          maxLayerBytes: positiveInteger(
            ic.config.max_layer_bytes,
            differDefaults.max_layer_bytes,
            "max_layer_bytes",
          ),
          maxLayerEntries: positiveInteger(
            ic.config.max_layer_entries,
            differDefaults.max_layer_entries,
            "max_layer_entries",
          ),
        };
        const blobPath = (d: string): string => md.backend.blobPath(d);
        let unpackAhead: UnpackAhead | undefined;
        const overlay = ic.getAll<Snapshotter>("io.containerd.snapshotter.v1").has("overlayfs");
        // Staged trees are only ever claimed by overlayfs snapshots.
        if (booleanSetting(ic.config.unpack_ahead, differDefaults.unpack_ahead, "unpack_ahead") && overlay) {
          // Bad settings fail the plugin, as any; staging that cannot work leaves the differ without it.
          const maxBytes = positiveInteger(
            ic.config.unpack_ahead_max_bytes,
            differDefaults.unpack_ahead_max_bytes,
            "unpack_ahead_max_bytes",
          );
          try {
            unpackAhead = createUnpackAhead({
              dir: join(ic.root, "unpack-ahead"),
              // The overlayfs snapshotter's: plugin roots are <daemon root>/<type>.<id>.
              snapshotDirs: [join(dirname(ic.root), "io.containerd.snapshotter.v1.overlayfs", "snapshots")],
              pool,
              blobPath,
              has: (ns, digest) => md.content.has(ns, digest),
              ...limits,
              maxBytes,
              onOutcome: (outcome) => deps.metrics.unpackAheadLayers.inc({ outcome }),
              onError: (err, what) => deps.log.warn({ err }, `unpack-ahead: ${what}`),
            });
          } catch (err) {
            deps.log.warn({ err }, "unpack-ahead: cannot stage layers, it is off");
          }
          const ahead = unpackAhead;
          if (ahead !== undefined)
            md.onContentCommitted = (ns, digest, size) => ahead.committed(ns, digest, size);
        }
        const differ = createWalkingDiffer({
          contentFor: (ctx) => md.content.forContext(ctx),
          blobPath,
          workDir: ic.state,
          pool,
          ...limits,
          ...(unpackAhead !== undefined ? { unpackAhead } : {}),
        });
        return {
          ...differ,
          close: async () => {
            md.onContentCommitted = () => undefined;
            await unpackAhead?.close();
            await pool.close();
          },
        };
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
