// Turns what grpc-js reports (a ServiceError with a status code) into a BerthError, so callers
// branch on the same closed set of codes the daemon throws.
import type * as grpc from "@grpc/grpc-js";
import { BerthError } from "../errdefs/errors.js";
import { errorCodeOfGrpc } from "../errdefs/grpc-status.js";

function isServiceError(err: unknown): err is grpc.ServiceError {
  return err instanceof Error && typeof (err as Partial<grpc.ServiceError>).code === "number";
}

/**
 * The BerthError for a failed call: the code mapped back from the gRPC status and the server's
 * own message (the status details, e.g. `image "x": not found`). The ServiceError is the cause.
 */
export function errorFromGrpc(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  if (isServiceError(err)) {
    return new BerthError(errorCodeOfGrpc(err.code), err.details, { cause: err });
  }
  return BerthError.from(err);
}

/**
 * The raw gRPC status code behind an error from this client (several gRPC codes share the
 * BerthError code "unknown"); undefined when the error did not come from a gRPC status.
 */
export function grpcStatusOf(err: unknown): grpc.status | undefined {
  const source = err instanceof BerthError ? err.cause : err;
  return isServiceError(source) ? source.code : undefined;
}
