// containerd.services.snapshots.v1.Snapshots over the namespaced snapshotters; emits /snapshot/*.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Snapshots, Kind } from "../gen/containerd/services/snapshots/v1/snapshots_pb.js";
import {
  SnapshotPrepareSchema,
  SnapshotCommitSchema,
  SnapshotRemoveSchema,
} from "../gen/containerd/events/snapshot_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced } from "./call-context.js";
import type { NamespacedSnapshots } from "../core/metadata/snapshots.js";
import type { SnapshotInfo, Snapshotter } from "../core/snapshots/snapshotter.js";
import type { Mount } from "../core/mount/mount-types.js";
import type { Exchange } from "../core/events/exchange.js";
import type { RequestContext } from "../core/context.js";
import { packEvent } from "./event-payloads.js";
import { BerthError, invalidArgument } from "../errdefs/errors.js";

export { Snapshots };

const kindOf = { view: Kind.VIEW, active: Kind.ACTIVE, committed: Kind.COMMITTED } as const;
const listBatch = 100;

const toProto = (i: SnapshotInfo) => ({
  name: i.name,
  parent: i.parent,
  kind: kindOf[i.kind],
  labels: i.labels,
  createdAt: timestampFromDate(i.createdAt),
  updatedAt: timestampFromDate(i.updatedAt),
});

const mountsToProto = (mounts: Mount[]) =>
  mounts.map((m) => ({ type: m.type, source: m.source, target: m.target ?? "", options: m.options }));

export function snapshotsService(deps: {
  snapshots: NamespacedSnapshots;
  events: Exchange;
}): ServiceImpl<(typeof Snapshots)["method"]> {
  const { events } = deps;
  const loaded = (name: string): string => {
    if (name === "") throw invalidArgument("snapshotter argument missing");
    if (!deps.snapshots.names.has(name)) throw invalidArgument(`snapshotter not loaded: ${name}`);
    return name;
  };
  const open = (name: string, ctx: Parameters<typeof namespaced>[0]): [Snapshotter, RequestContext] => {
    loaded(name);
    const rc = namespaced(ctx);
    return [deps.snapshots.forContext(rc, name), rc];
  };
  return {
    prepare: async (req, ctx) => {
      const [sn, rc] = open(req.snapshotter, ctx);
      const mounts = await sn.prepare(req.key, req.parent, { labels: req.labels });
      events.publish(
        rc.namespace,
        "/snapshot/prepare",
        packEvent(SnapshotPrepareSchema, { key: req.key, parent: req.parent }),
      );
      return { mounts: mountsToProto(mounts) };
    },
    view: async (req, ctx) => {
      const [sn] = open(req.snapshotter, ctx);
      // containerd 1.6 publishes no event for a view.
      return { mounts: mountsToProto(await sn.view(req.key, req.parent, { labels: req.labels })) };
    },
    mounts: async (req, ctx) => {
      const [sn] = open(req.snapshotter, ctx);
      return { mounts: mountsToProto(await sn.mounts(req.key)) };
    },
    commit: async (req, ctx) => {
      const [sn, rc] = open(req.snapshotter, ctx);
      await sn.commit(req.name, req.key, { labels: req.labels });
      events.publish(
        rc.namespace,
        "/snapshot/commit",
        packEvent(SnapshotCommitSchema, { key: req.key, name: req.name }),
      );
      return {};
    },
    remove: async (req, ctx) => {
      const [sn, rc] = open(req.snapshotter, ctx);
      await sn.remove(req.key);
      events.publish(rc.namespace, "/snapshot/remove", packEvent(SnapshotRemoveSchema, { key: req.key }));
      return {};
    },
    stat: async (req, ctx) => {
      const [sn] = open(req.snapshotter, ctx);
      return { info: toProto(await sn.stat(req.key)) };
    },
    update: async (req, ctx) => {
      const [sn] = open(req.snapshotter, ctx);
      const info = { name: req.info?.name ?? "", labels: req.info?.labels ?? {} };
      return { info: toProto(await sn.update(info, req.updateMask?.paths ?? [])) };
    },
    list: async function* (req, ctx) {
      loaded(req.snapshotter);
      const infos: SnapshotInfo[] = [];
      try {
        // The namespace is checked inside the walk, as containerd's metadata store does.
        const [sn] = open(req.snapshotter, ctx);
        await sn.walk((i) => void infos.push(i), req.filters);
      } catch (err) {
        // containerd's Snapshots.List returns the walk error unconverted, so clients see Unknown.
        throw new BerthError("unknown", BerthError.from(err).message, { cause: err });
      }
      for (let i = 0; i < infos.length; i += listBatch)
        yield { info: infos.slice(i, i + listBatch).map(toProto) };
    },
    usage: async (req, ctx) => {
      const [sn] = open(req.snapshotter, ctx);
      const u = await sn.usage(req.key);
      return { size: BigInt(u.size), inodes: BigInt(u.inodes) };
    },
    cleanup: async (req, ctx) => {
      open(req.snapshotter, ctx);
      const backend = deps.snapshots.backends.get(req.snapshotter);
      if (backend?.cleanup === undefined)
        throw new BerthError("not-implemented", "snapshotter does not implement cleanup");
      await backend.cleanup();
      return {};
    },
  };
}
