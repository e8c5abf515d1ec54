// What travels with every request into core: the namespace (always), the lease (when the client
// named one) and the cancellation signal. Core never reads gRPC metadata itself.
export interface RequestContext {
  namespace: string;
  lease?: string;
  signal?: AbortSignal;
}
