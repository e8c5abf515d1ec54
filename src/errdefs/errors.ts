// The closed set of error codes Berth uses everywhere; services map them one-to-one onto gRPC codes.

export type ErrorCode =
  | "invalid-argument"
  | "not-found"
  | "already-exists"
  | "failed-precondition"
  | "unavailable"
  | "not-implemented"
  | "out-of-range"
  | "data-loss"
  | "canceled"
  | "deadline-exceeded"
  | "resource-exhausted"
  | "permission-denied"
  | "unknown";

/** One error type for the whole daemon: a code from the closed set, a message, an optional cause. */
export class BerthError extends Error {
  override readonly name = "BerthError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** Normalises anything thrown into a BerthError (unknown code unless it already carries one). */
  static from(err: unknown): BerthError {
    if (err instanceof BerthError) return err;
    if (err instanceof Error) return new BerthError("unknown", err.message, { cause: err });
    return new BerthError("unknown", String(err));
  }
}

export function isCode(err: unknown, code: ErrorCode): boolean {
  return err instanceof BerthError && err.code === code;
}

// Message suffixes follow containerd's errdefs texts, which clients print verbatim.
export const invalidArgument = (msg: string, cause?: unknown) =>
  new BerthError("invalid-argument", `${msg}: invalid argument`, { cause });
export const notFound = (msg: string) => new BerthError("not-found", `${msg}: not found`);
export const alreadyExists = (msg: string) => new BerthError("already-exists", `${msg}: already exists`);
export const failedPrecondition = (msg: string) =>
  new BerthError("failed-precondition", `${msg}: failed precondition`);
export const unavailable = (msg: string) => new BerthError("unavailable", `${msg}: unavailable`);
export const notImplemented = (msg: string) => new BerthError("not-implemented", `${msg}: not implemented`);
export const outOfRange = (msg: string) => new BerthError("out-of-range", msg);
export const dataLoss = (msg: string) => new BerthError("data-loss", msg);
export const canceled = (msg = "context canceled") => new BerthError("canceled", msg);
