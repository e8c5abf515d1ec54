// The storage plugins: the content backend, the SQLite metadata (namespaces, images, containers,
// leases, namespaced content) and the GC scheduler that collects what they leave behind.
import { join } from "node:path";
import type { PluginRegistration } from "./plugin.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";
import { parseDuration } from "./config.js";
import { createLocalContentStore, type LocalContentStore } from "../core/content/local-store.js";
import { closeMetadataDB, openMetadataDB, type MetadataDB } from "../core/metadata/db.js";
import { createNamespaceStore, type NamespaceStore } from "../core/metadata/namespaces.js";
import { createImageStore, type ImageStore } from "../core/metadata/images.js";
import { createContainerStore, type ContainerStore } from "../core/metadata/containers.js";
import { createLeaseManager, type LeaseManager } from "../core/metadata/leases.js";
import { createNamespacedContentStore, type NamespacedContentStore } from "../core/metadata/content-store.js";
import { collectGarbage, type GcSnapshotter } from "../core/metadata/gc.js";
import { createNamespacedSnapshots, type NamespacedSnapshots } from "../core/metadata/snapshots.js";
import type { Snapshotter } from "../core/snapshots/snapshotter.js";
import { createGcScheduler, type GcScheduler } from "../core/metadata/gc-scheduler.js";

export interface Metadata {
  db: MetadataDB;
  namespaces: NamespaceStore;
  images: ImageStore;
  containers: ContainerStore;
  leases: LeaseManager;
  content: NamespacedContentStore;
  snapshots: NamespacedSnapshots;
  backend: LocalContentStore;
  /** Set by the GC plugin: called after any write that may have left garbage. */
  onGarbage: () => void;
  /** Set by the differ plugin: a blob was committed into a namespace that did not have it. */
  onContentCommitted: (namespace: string, digest: string, size: number) => void;
  /** Waits for the snapshot removals still under way, then closes the DB. */
  close(): Promise<void>;
}

function durationSetting(v: unknown, fallback: string): string {
  if (v === undefined) return fallback;
  if (typeof v !== "string")
    throw new Error(`duration setting must be a string like "100ms", not ${JSON.stringify(v)}`);
  return v;
}

export function metadataPlugins(deps: {
  log: Logger;
  metrics: Metrics;
  /** How long the gRPC API has been quiet (ms), for the GC scheduler. */
  apiQuietFor?: () => number;
}): PluginRegistration[] {
  return [
    {
      type: "io.containerd.content.v1",
      id: "content",
      init: async (ic) => {
        ic.exports.root = ic.root;
        return createLocalContentStore(ic.root);
      },
    },
    {
      type: "io.containerd.metadata.v1",
      id: "sqlite",
      requires: ["io.containerd.content.v1", "io.containerd.snapshotter.v1"],
      init: (ic): Metadata => {
        const snapshotters = ic.getAll<Snapshotter>("io.containerd.snapshotter.v1");
        const backend = ic.get<LocalContentStore>("io.containerd.content.v1");
        const path = join(ic.root, "meta.db");
        ic.exports.path = path;
        const db = openMetadataDB(path);
        const policy = ic.config.content_sharing_policy ?? "shared";
        if (policy !== "shared" && policy !== "isolated")
          throw new Error(
            `content_sharing_policy must be "shared" or "isolated", not ${JSON.stringify(policy)}`,
          );
        const md: Metadata = {
          db,
          backend,
          onGarbage: () => undefined,
          onContentCommitted: () => undefined,
          namespaces: undefined as unknown as NamespaceStore,
          images: undefined as unknown as ImageStore,
          containers: undefined as unknown as ContainerStore,
          leases: undefined as unknown as LeaseManager,
          content: undefined as unknown as NamespacedContentStore,
          snapshots: undefined as unknown as NamespacedSnapshots,
          close: async () => {
            await md.snapshots.idle();
            closeMetadataDB(db);
          },
        };
        const onMutation = (e: { deletion: boolean }) => {
          if (e.deletion) md.onGarbage();
        };
        md.namespaces = createNamespaceStore(db, { onMutation });
        md.images = createImageStore(db, { onMutation });
        md.containers = createContainerStore(db, { onMutation });
        md.leases = createLeaseManager(db, { onMutation });
        md.content = createNamespacedContentStore(db, backend, {
          sharingPolicy: policy,
          onDelete: () => md.onGarbage(),
          onCommitted: (ns, digest, size) => md.onContentCommitted(ns, digest, size),
        });
        md.snapshots = createNamespacedSnapshots(db, snapshotters, { lock: md.content.lock, onMutation });
        return md;
      },
    },
    {
      type: "io.containerd.gc.v1",
      id: "scheduler",
      requires: ["io.containerd.metadata.v1"],
      init: (ic): GcScheduler => {
        const md = ic.get<Metadata>("io.containerd.metadata.v1");
        const cfg = ic.config;
        const scheduler = createGcScheduler({
          collect: () =>
            collectGarbage(md.db, {
              contentBackend: md.backend,
              lock: md.content.lock,
              snapshotters: new Map<string, GcSnapshotter>(
                [...md.snapshots.backends].map(([name, sn]) => [
                  name,
                  { remove: (key) => sn.remove(key), walk: (fn) => sn.walk(fn) },
                ]),
              ),
            }),
          startupDelayMs: parseDuration(durationSetting(cfg.startup_delay, "100ms")),
          scheduleDelayMs: parseDuration(durationSetting(cfg.schedule_delay, "0s")),
          pauseThreshold: Number(cfg.pause_threshold ?? 0.02),
          quietFor: deps.apiQuietFor,
          log: (stats) => {
            deps.metrics.gcPauseSeconds.observe(stats.durationMs / 1000);
            deps.log.info({ ...stats }, `garbage collected d=${stats.durationMs.toFixed(3)}ms`);
          },
          onError: (err) => deps.log.error({ err }, "garbage collection failed"),
        });
        md.onGarbage = () => scheduler.markDirty();
        return scheduler;
      },
    },
  ];
}
