// Per-call context for service handlers: the namespace and lease headers, and a cancellation signal.
import { BerthError, failedPrecondition } from "../errdefs/errors.js";
import type { RequestContext } from "../core/context.js";
import { validateIdentifier } from "../core/identifiers/identifiers.js";
import type { CallMetadata, ServerCall } from "../grpc/server.js";

export const namespaceHeader = "containerd-namespace";
export const leaseHeader = "containerd-lease";

export interface CallContext {
  /** The namespace header, if the client sent one (not yet validated). */
  readonly namespace: string | undefined;
  readonly lease: string | undefined;
  readonly signal: AbortSignal;
  readonly metadata: CallMetadata;
}

export function callContextOf(call: ServerCall): CallContext {
  return {
    namespace: call.metadata.get(namespaceHeader),
    lease: call.metadata.get(leaseHeader),
    // The signal (an AbortController) is made only for the handlers that look at it.
    get signal() {
      return call.signal;
    },
    metadata: call.metadata,
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
  return {
    namespace: ns,
    lease: ctx.lease || undefined,
    get signal() {
      return ctx.signal;
    },
  };
}
