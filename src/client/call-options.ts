// Per-call options of berth/client and how they become gRPC metadata (containerd's namespace and
// lease headers) and grpc-js call options.
import * as grpc from "@grpc/grpc-js";

/** The metadata keys containerd reads the namespace and the lease from. */
export const namespaceHeader = "containerd-namespace";
export const leaseHeader = "containerd-lease";

/** Defaults a client applies to every call; each call may override them. */
export interface ClientDefaults {
  /** Sent as `containerd-namespace`; "" or absent sends no header (global calls). */
  namespace?: string;
  /** Sent as `containerd-lease`; "" or absent sends no header. */
  lease?: string;
}

export interface CallOptions extends ClientDefaults {
  /** Cancels the call (the error is then a BerthError with code "canceled"). */
  signal?: AbortSignal;
  /** Absolute deadline: a Date or milliseconds since the epoch ("deadline-exceeded" after it). */
  deadline?: Date | number;
}

/** The headers of one call: the call's own values win over the client's defaults. */
export function callMetadata(defaults: ClientDefaults, opts: CallOptions = {}): grpc.Metadata {
  const md = new grpc.Metadata();
  const namespace = opts.namespace ?? defaults.namespace;
  const lease = opts.lease ?? defaults.lease;
  if (namespace !== undefined && namespace !== "") md.set(namespaceHeader, namespace);
  if (lease !== undefined && lease !== "") md.set(leaseHeader, lease);
  return md;
}

export function grpcCallOptions(opts: CallOptions = {}): grpc.CallOptions {
  return opts.deadline === undefined ? {} : { deadline: opts.deadline };
}

/**
 * Cancels `call` when `signal` aborts (at once if it already has). Returns the function that
 * detaches the listener, to run when the call is over.
 */
export function bindSignal(signal: AbortSignal | undefined, call: { cancel(): void }): () => void {
  if (signal === undefined) return () => undefined;
  if (signal.aborted) {
    call.cancel();
    return () => undefined;
  }
  const onAbort = (): void => call.cancel();
  signal.addEventListener("abort", onAbort, { once: true });
  return () => signal.removeEventListener("abort", onAbort);
}
