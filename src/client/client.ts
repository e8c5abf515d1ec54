// createClient: one gRPC channel to a containerd-API daemon (berthd or containerd) and typed
// per-service clients over it, with the namespace and lease applied as containerd's headers.
import * as grpc from "@grpc/grpc-js";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { ClientDefaults } from "./call-options.js";
import { makeServiceClient, type ServiceClient } from "./service-client.js";

/** containerd's client and server both allow 16 MiB messages (ctr sends 1 MiB chunks). */
export const maxMessageBytes = 16 << 20;

export interface ClientOptions extends ClientDefaults {
  /** Extra grpc-js channel options (they win over the defaults above). */
  channelOptions?: Partial<grpc.ChannelOptions>;
}

export interface BerthClient {
  /** The grpc-js target the client dials (`unix:///run/berth/berthd.sock`, `host:port`). */
  readonly target: string;
  readonly namespace: string | undefined;
  readonly lease: string | undefined;
  /** The typed client of a service, e.g. `client.service(Content).info({ digest })`. */
  service<T extends GenServiceMethods>(service: GenService<T>): ServiceClient<T>;
  /** A client on the same connection with other defaults (e.g. another namespace). */
  with(defaults: ClientDefaults): BerthClient;
  /** Closes the connection; calls in flight fail with "unavailable" or "canceled". */
  close(): void;
}

/**
 * The grpc-js target for an address as containerd's clients accept it: a socket path
 * (`/run/containerd/containerd.sock`), `unix://<path>`, or a `host:port`.
 */
export function grpcTarget(address: string): string {
  // As containerd's dialer: "unix://" is stripped, what remains is a socket path.
  const path = address.startsWith("unix://") ? address.slice("unix://".length) : address;
  if (path.startsWith("/")) return `unix://${path}`;
  if (path !== address || path.startsWith(".")) return `unix:${path}`;
  return address;
}

function boundClient(grpcClient: grpc.Client, target: string, defaults: ClientDefaults): BerthClient {
  // Service clients are cached per descriptor: building one walks the descriptor's methods.
  const services = new WeakMap<object, unknown>();
  return {
    target,
    namespace: defaults.namespace,
    lease: defaults.lease,
    service<T extends GenServiceMethods>(service: GenService<T>): ServiceClient<T> {
      let client = services.get(service) as ServiceClient<T> | undefined;
      if (client === undefined) {
        client = makeServiceClient(grpcClient, service, defaults);
        services.set(service, client);
      }
      return client;
    },
    with(more: ClientDefaults): BerthClient {
      return boundClient(grpcClient, target, { ...defaults, ...more });
    },
    close(): void {
      grpcClient.close();
    },
  };
}

/** Connects (lazily, on the first call) to the daemon at `address`. */
export function createClient(address: string, opts: ClientOptions = {}): BerthClient {
  const target = grpcTarget(address);
  const grpcClient = new grpc.Client(target, grpc.credentials.createInsecure(), {
    "grpc.max_receive_message_length": maxMessageBytes,
    "grpc.max_send_message_length": maxMessageBytes,
    ...opts.channelOptions,
  });
  return boundClient(grpcClient, target, { namespace: opts.namespace, lease: opts.lease });
}
