// containerd.services.diff.v1.Diff over the walking differ: Apply unpacks a layer onto mounts,
// Diff writes the changes between two mount sets into the content store.
import { Diff } from "../gen/containerd/services/diff/v1/diff_pb.js";
import type { Mount as MountProto } from "../gen/containerd/types/mount_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced } from "./call-context.js";
import type { Differ } from "../core/diff/walking-differ.js";
import type { Mount } from "../core/mount/mount-types.js";
import { descriptorFromProto, descriptorToProto } from "./descriptor.js";

export { Diff };

const mountsFromProto = (mounts: MountProto[]): Mount[] =>
  mounts.map((m) => ({ type: m.type, source: m.source, target: m.target, options: [...m.options] }));

export function diffService(deps: { differ: Differ }): ServiceImpl<(typeof Diff)["method"]> {
  return {
    apply: async (req, ctx) => {
      const rc = namespaced(ctx);
      const applied = await deps.differ.apply(rc, descriptorFromProto(req.diff), mountsFromProto(req.mounts));
      return { applied: descriptorToProto({ annotations: {}, ...applied }) };
    },
    diff: async (req, ctx) => {
      const rc = namespaced(ctx);
      const desc = await deps.differ.compare(rc, mountsFromProto(req.left), mountsFromProto(req.right), {
        mediaType: req.mediaType,
        ref: req.ref,
        labels: req.labels,
      });
      return { diff: descriptorToProto({ annotations: {}, ...desc }) };
    },
  };
}
