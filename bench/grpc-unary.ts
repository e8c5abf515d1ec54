// A minimal grpc-js client for one unary method of a protobuf-es service descriptor, as a Go
// client would call it: one HTTP/2 channel, optional containerd-namespace header.
import * as grpc from "@grpc/grpc-js";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type MessageInitShape,
} from "@bufbuild/protobuf";

export interface UnaryCaller {
  /** e.g. "/containerd.services.version.v1.Version/Version". */
  path: string;
  /** One call; resolves with the decoded response, rejects with the grpc ServiceError. */
  call(): Promise<unknown>;
  close(): void;
}

export interface UnaryCallerOptions {
  /** Sent as the containerd-namespace header, as ctr does for namespaced services. */
  namespace?: string;
  /** Request fields; the empty message by default. */
  request?: MessageInitShape<DescMessage>;
}

/** Opens a channel to the unix socket and prepares calls of `method` with a fixed request. */
export function unaryCaller(address: string, method: DescMethod, opts: UnaryCallerOptions = {}): UnaryCaller {
  const client = new grpc.Client(`unix://${address}`, grpc.credentials.createInsecure());
  const path = `/${method.parent.typeName}/${method.name}`;
  // The request never changes: encode it once so that only the call itself is measured.
  const request = Buffer.from(toBinary(method.input, create(method.input, opts.request ?? {})));
  const output = method.output;
  const metadata = new grpc.Metadata();
  if (opts.namespace !== undefined) metadata.set("containerd-namespace", opts.namespace);
  return {
    path,
    call() {
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          path,
          (buf: Buffer) => buf,
          (buf: Buffer) => fromBinary(output, buf),
          request,
          metadata,
          (err, value) => (err ? reject(err) : resolve(value)),
        );
      });
    },
    close() {
      client.close();
    },
  };
}
