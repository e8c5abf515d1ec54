// Maps Berth error codes onto gRPC status codes (and back, for the client library).
import { status as Status } from "@grpc/grpc-js";
import { BerthError, type ErrorCode } from "./errors.js";

const toGrpc: Record<ErrorCode, Status> = {
  "invalid-argument": Status.INVALID_ARGUMENT,
  "not-found": Status.NOT_FOUND,
  "already-exists": Status.ALREADY_EXISTS,
  "failed-precondition": Status.FAILED_PRECONDITION,
  unavailable: Status.UNAVAILABLE,
  "not-implemented": Status.UNIMPLEMENTED,
  "out-of-range": Status.OUT_OF_RANGE,
  "data-loss": Status.DATA_LOSS,
  canceled: Status.CANCELLED,
  "deadline-exceeded": Status.DEADLINE_EXCEEDED,
  "resource-exhausted": Status.RESOURCE_EXHAUSTED,
  "permission-denied": Status.PERMISSION_DENIED,
  unknown: Status.UNKNOWN,
};

export function grpcCodeOf(err: unknown): Status {
  return toGrpc[BerthError.from(err).code];
}

export function errorCodeOfGrpc(code: Status): ErrorCode {
  for (const [k, v] of Object.entries(toGrpc)) if (v === code) return k as ErrorCode;
  return "unknown";
}
