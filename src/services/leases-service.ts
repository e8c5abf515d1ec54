// containerd.services.leases.v1.Leases: leases protect resources from GC; Delete{sync} waits for one.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Leases } from "../gen/containerd/services/leases/v1/leases_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced } from "./call-context.js";
import type { LeaseManager, Lease } from "../core/metadata/leases.js";
import type { GcScheduler } from "../core/metadata/gc-scheduler.js";
import { invalidArgument } from "../errdefs/errors.js";

export { Leases };

const toProto = (l: Lease) => ({ id: l.id, labels: l.labels, createdAt: timestampFromDate(l.createdAt) });

export function leasesService(deps: {
  leases: LeaseManager;
  gc: GcScheduler;
}): ServiceImpl<(typeof Leases)["method"]> {
  const { leases, gc } = deps;
  return {
    create: async (req, ctx) => ({
      lease: toProto(leases.create(namespaced(ctx), { id: req.id, labels: req.labels })),
    }),
    delete: async (req, ctx) => {
      leases.delete(namespaced(ctx), req.id);
      if (req.sync) await gc.runNow();
      return {};
    },
    list: async (req, ctx) => ({ leases: leases.list(namespaced(ctx), req.filters).map(toProto) }),
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
