// containerd.services.leases.v1.Leases: leases protect resources from GC; Delete{sync} waits for one.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Leases } from "../gen/containerd/services/leases/v1/leases_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced } from "./call-context.js";
import { randomLeaseId, type LeaseManager, type Lease } from "../core/metadata/leases.js";
import type { GcScheduler } from "../core/metadata/gc-scheduler.js";
import { invalidArgument, isCode } from "../errdefs/errors.js";

export { Leases };

const toProto = (l: Lease) => ({ id: l.id, labels: l.labels, createdAt: timestampFromDate(l.createdAt) });

export function leasesService(deps: {
  leases: LeaseManager;
  gc: GcScheduler;
}): ServiceImpl<(typeof Leases)["method"]> {
  const { leases, gc } = deps;
  return {
    create: async (req, ctx) => ({
      // containerd's service picks a random id when the client gives none.
      lease: toProto(leases.create(namespaced(ctx), { id: req.id || randomLeaseId(), labels: req.labels })),
    }),
    delete: async (req, ctx) => {
      leases.delete(namespaced(ctx), req.id);
      if (req.sync) await gc.runNow();
      return {};
    },
    list: async (req, ctx) => {
      const rc = namespaced(ctx);
      let found: Lease[];
      try {
        found = leases.list(rc, req.filters);
      } catch (err) {
        // containerd's service wraps filter errors once more: "...: invalid argument: invalid argument".
        if (isCode(err, "invalid-argument")) throw invalidArgument((err as Error).message);
        throw err;
      }
      return { leases: found.map(toProto) };
    },
    addResource: async (req, ctx) => {
      if (!req.resource) throw invalidArgument("resource must not be empty");
      leases.addResource(namespaced(ctx), req.id, { id: req.resource.id, type: req.resource.type });
      return {};
    },
    deleteResource: async (req, ctx) => {
      if (!req.resource) throw invalidArgument("resource must not be empty");
      leases.deleteResource(namespaced(ctx), req.id, { id: req.resource.id, type: req.resource.type });
      return {};
    },
    listResources: async (req, ctx) => ({ resources: leases.listResources(namespaced(ctx), req.id) }),
  };
}
