// containerd.services.containers.v1.Containers: container records (spec and extensions kept byte
// for byte); emits /containers/*. Deleting a record touches neither its task nor its snapshot.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  Containers,
  type Container as ContainerProto,
} from "../gen/containerd/services/containers/v1/containers_pb.js";
import {
  ContainerCreateSchema,
  ContainerUpdateSchema,
  ContainerDeleteSchema,
} from "../gen/containerd/events/container_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced, type CallContext } from "./call-context.js";
import type { ContainerStore, Container } from "../core/metadata/containers.js";
import type { Exchange } from "../core/events/exchange.js";
import type { AnyValue } from "../core/any-value.js";
import { packEvent } from "./event-payloads.js";
import { invalidArgument, isCode } from "../errdefs/errors.js";

export { Containers };

const anyToProto = (a: AnyValue | undefined) => (a ? { typeUrl: a.typeUrl, value: a.value } : undefined);
const anyFromProto = (a: { typeUrl: string; value: Uint8Array } | undefined): AnyValue | undefined =>
  a ? { typeUrl: a.typeUrl, value: a.value } : undefined;

function toProto(c: Container) {
  return {
    id: c.id,
    labels: c.labels,
    image: c.image,
    runtime: { name: c.runtime.name, options: anyToProto(c.runtime.options) },
    spec: anyToProto(c.spec),
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshotKey,
    createdAt: timestampFromDate(c.createdAt),
    updatedAt: timestampFromDate(c.updatedAt),
    extensions: Object.fromEntries(
      Object.entries(c.extensions).map(([k, v]) => [k, { typeUrl: v.typeUrl, value: v.value }]),
    ),
    sandbox: c.sandbox,
  };
}

function fromProto(c: ContainerProto | undefined): Omit<Container, "createdAt" | "updatedAt"> {
  if (!c) throw invalidArgument("container must not be empty");
  return {
    id: c.id,
    labels: c.labels,
    image: c.image,
    runtime: { name: c.runtime?.name ?? "", options: anyFromProto(c.runtime?.options) },
    spec: anyFromProto(c.spec),
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshotKey,
    extensions: Object.fromEntries(
      Object.entries(c.extensions).map(([k, v]) => [k, { typeUrl: v.typeUrl, value: v.value }]),
    ),
    sandbox: c.sandbox,
  };
}

function listContainers(containers: ContainerStore, ctx: CallContext, filters: string[]): Container[] {
  const rc = namespaced(ctx);
  try {
    return containers.list(rc, filters);
  } catch (err) {
    // containerd's service wraps filter errors once more: "...: invalid argument: invalid argument".
    if (isCode(err, "invalid-argument")) throw invalidArgument((err as Error).message);
    throw err;
  }
}

export function containersService(deps: {
  containers: ContainerStore;
  events: Exchange;
}): ServiceImpl<(typeof Containers)["method"]> {
  const { containers, events } = deps;
  return {
    get: async (req, ctx) => ({ container: toProto(containers.get(namespaced(ctx), req.id)) }),
    list: async (req, ctx) => ({ containers: listContainers(containers, ctx, req.filters).map(toProto) }),
    listStream: async function* (req, ctx) {
      for (const c of listContainers(containers, ctx, req.filters)) yield { container: toProto(c) };
    },
    create: async (req, ctx) => {
      const rc = namespaced(ctx);
      const created = containers.create(rc, fromProto(req.container));
      events.publish(
        rc.namespace,
        "/containers/create",
        packEvent(ContainerCreateSchema, {
          id: created.id,
          image: created.image,
          runtime: { name: created.runtime.name, options: anyToProto(created.runtime.options) },
        }),
      );
      return { container: toProto(created) };
    },
    update: async (req, ctx) => {
      const rc = namespaced(ctx);
      const updated = containers.update(rc, fromProto(req.container), req.updateMask?.paths ?? []);
      events.publish(
        rc.namespace,
        "/containers/update",
        packEvent(ContainerUpdateSchema, {
          id: updated.id,
          image: updated.image,
          labels: updated.labels,
          snapshotKey: updated.snapshotKey,
        }),
      );
      return { container: toProto(updated) };
    },
    delete: async (req, ctx) => {
      const rc = namespaced(ctx);
      containers.delete(rc, req.id);
      events.publish(rc.namespace, "/containers/delete", packEvent(ContainerDeleteSchema, { id: req.id }));
      return {};
    },
  };
}
