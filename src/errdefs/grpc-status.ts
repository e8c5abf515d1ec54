// Maps Berth error codes onto gRPC status codes (and back, for the client library and ttrpc).
// The numbers are gRPC's own (google.rpc.Code); ttrpc carries the same ones. Kept free of
// @grpc/grpc-js so that the shim, which speaks only ttrpc, does not load it.
import { BerthError, type ErrorCode } from "./errors.js";

/** google.rpc.Code, the status codes shared by gRPC and ttrpc. */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const toGrpc: Record<ErrorCode, number> = {
  "invalid-argument": GrpcCode.INVALID_ARGUMENT,
  "not-found": GrpcCode.NOT_FOUND,
  "already-exists": GrpcCode.ALREADY_EXISTS,
  "failed-precondition": GrpcCode.FAILED_PRECONDITION,
  unavailable: GrpcCode.UNAVAILABLE,
  "not-implemented": GrpcCode.UNIMPLEMENTED,
  "out-of-range": GrpcCode.OUT_OF_RANGE,
  "data-loss": GrpcCode.DATA_LOSS,
  canceled: GrpcCode.CANCELLED,
  "deadline-exceeded": GrpcCode.DEADLINE_EXCEEDED,
  "resource-exhausted": GrpcCode.RESOURCE_EXHAUSTED,
  "permission-denied": GrpcCode.PERMISSION_DENIED,
  unknown: GrpcCode.UNKNOWN,
};

export function grpcCodeOf(err: unknown): number {
  return toGrpc[BerthError.from(err).code];
}

export function errorCodeOfGrpc(code: number): ErrorCode {
  for (const [k, v] of Object.entries(toGrpc)) if (v === code) return k as ErrorCode;
  return "unknown";
}
