// berth/client: a typed TypeScript client for containerd's gRPC API (berthd or containerd alike).
export { createClient, grpcTarget, maxMessageBytes, type BerthClient, type ClientOptions } from "./client.js";
export { namespaceHeader, leaseHeader, type CallOptions, type ClientDefaults } from "./call-options.js";
export {
  methodPath,
  type ServiceClient,
  type UnaryMethod,
  type ServerStreamingMethod,
  type ClientStreamingMethod,
  type BidiStreamingMethod,
} from "./service-client.js";
export type { BidiStream } from "./bidi-stream.js";
export { errorFromGrpc, grpcStatusOf } from "./client-error.js";
export { BerthError, isCode, type ErrorCode } from "../errdefs/errors.js";
export * from "./services.js";
export { writeBlob, writeChunkSize, type WriteBlobOptions, type WriteBlobResult } from "./content-writer.js";
