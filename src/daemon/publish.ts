// `berthd publish`: what shims that use the legacy -publish-binary run (containerd's `containerd
// publish`): reads a protobuf Any from stdin and sends it with Events.Publish to the daemon.
import { fromBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { createClient, Events } from "../client/index.js";

export async function publishEvent(
  address: string,
  namespace: string,
  topic: string,
  payload: Uint8Array,
): Promise<void> {
  let event;
  try {
    event = fromBinary(AnySchema, payload);
  } catch {
    throw new Error("the event on stdin is not a protobuf Any");
  }
  const client = createClient(address, { namespace });
  try {
    await client.service(Events).publish({ topic, event });
  } finally {
    client.close();
  }
}
