// Per-call context for service handlers: the namespace and lease headers, and a cancellation signal.
import type * as grpc from "@grpc/grpc-js";
import { BerthError, failedPrecondition } from "../errdefs/errors.js";
import type { RequestContext } from "../core/context.js";
import { validateIdentifier } from "../core/identifiers/identifiers.js";

export const namespaceHeader = "containerd-namespace";
export const leaseHeader = "containerd-lease";

export interface CallContext {
  /** The namespace header, if the client sent one (not yet validated). */
  readonly namespace: string | undefined;
  readonly lease: string | undefined;
  readonly signal: AbortSignal;
  readonly metadata: grpc.Metadata;
  dispose(): void;
}

type AnyCall =
  | grpc.ServerUnaryCall<unknown, unknown>
  | grpc.ServerWritableStream<unknown, unknown>
  | grpc.ServerReadableStream<unknown, unknown>
  | grpc.ServerDuplexStream<unknown, unknown>;

function header(md: grpc.Metadata, key: string): string | undefined {
  const v = md.get(key)[0];
  return v === undefined ? undefined : String(v);
}

export function callContextOf(call: AnyCall): CallContext {
  const controller = new AbortController();
  const onCancel = () => controller.abort();
  const emitter = call as unknown as NodeJS.EventEmitter;
  emitter.on("cancelled", onCancel);
  return {
    namespace: header(call.metadata, namespaceHeader),
    lease: header(call.metadata, leaseHeader),
    signal: controller.signal,
    metadata: call.metadata,
    dispose: () => emitter.removeListener("cancelled", onCancel),
  };
}

/** The request context of a namespaced call: FailedPrecondition without a namespace, InvalidArgument for a bad one. */
export function namespaced(ctx: CallContext): RequestContext {
  const ns = ctx.namespace;
  if (ns === undefined || ns === "") throw failedPrecondition("namespace is required");
  try {
    validateIdentifier(ns);
  } catch (err) {
    // containerd's namespaces.NamespaceRequired wraps the identifier error this way.
    const e = BerthError.from(err);
    throw new BerthError(e.code, `namespace validation: ${e.message}`, { cause: err });
  }
  return { namespace: ns, lease: ctx.lease || undefined, signal: ctx.signal };
}
