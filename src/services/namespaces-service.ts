// containerd.services.namespaces.v1.Namespaces: global (no namespace header), emits /namespaces/*.
import { Namespaces } from "../gen/containerd/services/namespaces/v1/namespaces_pb.js";
import {
  NamespaceCreateSchema,
  NamespaceUpdateSchema,
  NamespaceDeleteSchema,
} from "../gen/containerd/events/namespace_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import type { NamespaceStore } from "../core/metadata/namespaces.js";
import type { Exchange } from "../core/events/exchange.js";
import { packEvent } from "./event-payloads.js";
import { invalidArgument } from "../errdefs/errors.js";

export { Namespaces };

export function namespacesService(deps: {
  store: NamespaceStore;
  events: Exchange;
}): ServiceImpl<(typeof Namespaces)["method"]> {
  const { store, events } = deps;
  return {
    get: async (req) => ({ namespace: store.get(req.name) }),
    list: async () => ({ namespaces: store.list().map((name) => store.get(name)) }),
    create: async (req, ctx) => {
      if (!req.namespace) throw invalidArgument("namespace must not be empty");
      const { name, labels } = req.namespace;
      store.create(name, labels);
      // containerd answers with, and publishes, the request's namespace rather than the stored one
      // (a label set to "" shows as such); create and update go out in the caller's namespace,
      // delete in the deleted one.
      const created = { name, labels };
      events.publish(ctx.namespace || name, "/namespaces/create", packEvent(NamespaceCreateSchema, created));
      return { namespace: created };
    },
    update: async (req, ctx) => {
      if (!req.namespace) throw invalidArgument("namespace must not be empty");
      const { name, labels } = req.namespace;
      store.update(name, labels, req.updateMask?.paths ?? []);
      const updated = { name, labels };
      events.publish(ctx.namespace || name, "/namespaces/update", packEvent(NamespaceUpdateSchema, updated));
      return { namespace: updated };
    },
    delete: async (req) => {
      store.delete(req.name);
      events.publish(req.name, "/namespaces/delete", packEvent(NamespaceDeleteSchema, { name: req.name }));
      return {};
    },
  };
}
