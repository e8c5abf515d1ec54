// The plugins berthd registers, in containerd's types and ids where the role is the same.
import type { GrpcServer } from "../grpc/server.js";
import { arch } from "node:os";
import type { PluginRegistration } from "./plugin.js";
import type { Config } from "./config.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";
import { registerService, type AdapterOptions } from "../services/grpc-adapter.js";
import { createExchange, type Exchange } from "../core/events/exchange.js";
import { decodeEvent } from "../services/event-payloads.js";
import { Version, versionService } from "../services/version-service.js";
import { Introspection, introspectionService } from "../services/introspection-service.js";
import { Health, healthService } from "../services/health-service.js";
import { Events, eventsService } from "../services/events-service.js";
import { Namespaces, namespacesService } from "../services/namespaces-service.js";
import { Content, contentService } from "../services/content-service.js";
import { Images, imagesService } from "../services/images-service.js";
import { Containers, containersService } from "../services/containers-service.js";
import { Leases, leasesService } from "../services/leases-service.js";
import type { GcScheduler } from "../core/metadata/gc-scheduler.js";
import { loadOrCreateServerUUID } from "./uuid.js";
import { metadataPlugins, type Metadata } from "./metadata-plugins.js";
import { snapshotPlugins } from "./snapshot-plugins.js";
import { runtimePlugins } from "./runtime-plugins.js";

export interface GrpcServicePlugin {
  register(server: GrpcServer, opts: AdapterOptions): void;
}

export interface Closable {
  close(): Promise<void> | void;
}

export interface BuiltinDeps {
  log: Logger;
  metrics: Metrics;
  cfg: Config;
  serving: () => boolean;
  /** How long the gRPC API has been quiet (ms; 0 while calls are in flight). */
  apiQuietFor: () => number;
}

const goArch: Record<string, string> = {
  x64: "amd64",
  arm64: "arm64",
  arm: "arm",
  ia32: "386",
  s390x: "s390x",
  ppc64: "ppc64le",
};

function grpcPlugin(
  id: string,
  register: (server: GrpcServer, opts: AdapterOptions) => void,
): GrpcServicePlugin {
  void id;
  return { register };
}

/** A gRPC service over the metadata stores, the GC scheduler and the event exchange. */
function storageService(
  id: string,
  make: (md: Metadata, gc: GcScheduler, events: Exchange) => GrpcServicePlugin["register"],
): PluginRegistration {
  return {
    type: "io.containerd.grpc.v1",
    id,
    requires: [...storage],
    init: (ic) =>
      grpcPlugin(
        id,
        make(
          ic.get<Metadata>("io.containerd.metadata.v1"),
          ic.get<GcScheduler>("io.containerd.gc.v1"),
          ic.get<Exchange>("io.containerd.event.v1"),
        ),
      ),
  };
}

const storage = ["io.containerd.metadata.v1", "io.containerd.gc.v1", "io.containerd.event.v1"] as const;

export function builtinPlugins(deps: BuiltinDeps): PluginRegistration[] {
  return [
    ...snapshotPlugins(deps),
    ...metadataPlugins(deps),
    ...runtimePlugins(deps),
    {
      type: "io.containerd.event.v1",
      id: "exchange",
      init: () => createExchange({ decode: decodeEvent }),
    },
    {
      type: "io.containerd.grpc.v1",
      id: "version",
      init: () => grpcPlugin("version", (s, o) => registerService(s, Version, versionService(), o)),
    },
    {
      type: "io.containerd.grpc.v1",
      id: "introspection",
      requires: ["*"],
      init: (ic) => {
        const uuid = loadOrCreateServerUUID(ic.root);
        const platform = { os: "linux", architecture: goArch[arch()] ?? arch(), variant: "" };
        return grpcPlugin("introspection", (s, o) =>
          registerService(
            s,
            Introspection,
            introspectionService({ plugins: () => ic.plugins(), uuid, platform }),
            o,
          ),
        );
      },
    },
    {
      type: "io.containerd.grpc.v1",
      id: "healthcheck",
      init: () =>
        grpcPlugin("healthcheck", (s, o) =>
          registerService(
            s,
            Health,
            healthService({
              serving: deps.serving,
              knownService: () => true,
              changed: (signal) =>
                new Promise((resolve) => {
                  const t = setTimeout(resolve, 1000);
                  signal.addEventListener("abort", () => {
                    clearTimeout(t);
                    resolve();
                  });
                }),
            }),
            o,
          ),
        ),
    },
    {
      type: "io.containerd.grpc.v1",
      id: "events",
      requires: ["io.containerd.event.v1"],
      init: (ic) => {
        const exchange = ic.get<Exchange>("io.containerd.event.v1");
        return grpcPlugin("events", (s, o) => registerService(s, Events, eventsService(exchange), o));
      },
    },
    storageService(
      "namespaces",
      (md, _gc, events) => (s, o) =>
        registerService(s, Namespaces, namespacesService({ store: md.namespaces, events }), o),
    ),
    storageService(
      "content",
      (md, _gc, events) => (s, o) =>
        registerService(
          s,
          Content,
          contentService({ storeFor: (ctx) => md.content.forContext(ctx), events }),
          o,
        ),
    ),
    storageService(
      "images",
      (md, gc, events) => (s, o) =>
        registerService(s, Images, imagesService({ images: md.images, events, gc }), o),
    ),
    storageService(
      "containers",
      (md, _gc, events) => (s, o) =>
        registerService(s, Containers, containersService({ containers: md.containers, events }), o),
    ),
    storageService(
      "leases",
      (md, gc) => (s, o) => registerService(s, Leases, leasesService({ leases: md.leases, gc }), o),
    ),
  ];
}
