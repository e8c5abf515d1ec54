// An event payload as containerd packs it: an Any whose type URL is the bare full message name.
import { create, toBinary, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import type { AnyValue } from "../any-value.js";

export function packEvent<S extends DescMessage>(schema: S, init: MessageInitShape<S>): AnyValue {
  return { typeUrl: schema.typeName, value: toBinary(schema, create(schema, init)) };
}
