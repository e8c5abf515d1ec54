// containerd.services.snapshots.v1.Snapshots. Until the snapshotter backends land, the service
// answers the read calls from the metadata records (so `ctr images check` can tell that nothing is
// unpacked) and refuses every call that would create or change a snapshot with Unimplemented.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Snapshots, Kind } from "../gen/containerd/services/snapshots/v1/snapshots_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced } from "./call-context.js";
import type { SnapshotInfo, SnapshotRecords } from "../core/metadata/snapshots.js";
import { BerthError, invalidArgument, notImplemented } from "../errdefs/errors.js";

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

export function snapshotsService(deps: {
  records: SnapshotRecords;
  /** Snapshotter names clients may address (containerd's defaults). */
  snapshotters: ReadonlySet<string>;
}): ServiceImpl<(typeof Snapshots)["method"]> {
  const checked = (name: string) => {
    if (name === "") throw invalidArgument("snapshotter argument missing");
    if (!deps.snapshotters.has(name)) throw invalidArgument(`snapshotter not loaded: ${name}`);
    return name;
  };
  const cannot = (what: string) => async (req: { snapshotter: string }) => {
    throw notImplemented(`${what} on snapshotter ${checked(req.snapshotter)}`);
  };
  return {
    stat: async (req, ctx) => ({
      info: toProto(deps.records.stat(namespaced(ctx), checked(req.snapshotter), req.key)),
    }),
    list: async function* (req, ctx) {
      const snapshotter = checked(req.snapshotter);
      let infos: SnapshotInfo[];
      try {
        infos = deps.records.list(namespaced(ctx), snapshotter, req.filters);
      } catch (err) {
        // containerd's Snapshots.List returns the walk error unconverted, so clients see Unknown.
        throw new BerthError("unknown", BerthError.from(err).message, { cause: err });
      }
      for (let i = 0; i < infos.length; i += listBatch)
        yield { info: infos.slice(i, i + listBatch).map(toProto) };
    },
    prepare: cannot("prepare"),
    view: cannot("view"),
    mounts: cannot("mounts"),
    commit: cannot("commit"),
    remove: cannot("remove"),
    update: cannot("update"),
    usage: cannot("usage"),
    cleanup: cannot("cleanup"),
  };
}
