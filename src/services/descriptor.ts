// Conversions between containerd.types.Descriptor and core's descriptor (sizes as JS numbers).
import type { Descriptor as DescriptorProto } from "../gen/containerd/types/descriptor_pb.js";
import { invalidArgument } from "../errdefs/errors.js";

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

/** Converts a wire int64 to a JS number, refusing values past 2^53 rather than rounding them. */
export function safeNumber(v: bigint, field: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER))
    throw invalidArgument(`${field} ${v} out of range`);
  return Number(v);
}

export function descriptorFromProto(d: DescriptorProto | undefined): Descriptor {
  return {
    mediaType: d?.mediaType ?? "",
    digest: d?.digest ?? "",
    size: d ? safeNumber(d.size, "size") : 0,
    annotations: { ...(d?.annotations ?? {}) },
  };
}

export function descriptorToProto(d: Descriptor) {
  return { mediaType: d.mediaType, digest: d.digest, size: BigInt(d.size), annotations: d.annotations };
}
