// Event payloads as containerd packs them: an Any whose type URL is the bare full message name.
import { fromBinary, type DescMessage } from "@bufbuild/protobuf";
import type { AnyValue } from "../core/any-value.js";
import * as containerEvents from "../gen/containerd/events/container_pb.js";
import * as contentEvents from "../gen/containerd/events/content_pb.js";
import * as imageEvents from "../gen/containerd/events/image_pb.js";
import * as namespaceEvents from "../gen/containerd/events/namespace_pb.js";
import * as snapshotEvents from "../gen/containerd/events/snapshot_pb.js";
import * as taskEvents from "../gen/containerd/events/task_pb.js";

export { packEvent } from "../core/events/pack-event.js";

const known = new Map<string, DescMessage>();
for (const mod of [
  containerEvents,
  contentEvents,
  imageEvents,
  namespaceEvents,
  snapshotEvents,
  taskEvents,
]) {
  for (const value of Object.values(mod)) {
    const v = value as { kind?: string; typeName?: string };
    if (v && v.kind === "message" && v.typeName) known.set(v.typeName, value as DescMessage);
  }
}

/** Decodes a known event payload into a message object (for `event.<field>` filters), else undefined. */
export function decodeEvent(event: AnyValue): unknown {
  const schema = known.get(event.typeUrl);
  return schema ? fromBinary(schema, event.value) : undefined;
}
