// containerd.services.images.v1.Images: image records by name; emits /images/*; Delete{sync} waits for GC.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Images, type Image as ImageProto } from "../gen/containerd/services/images/v1/images_pb.js";
import {
  ImageCreateSchema,
  ImageUpdateSchema,
  ImageDeleteSchema,
} from "../gen/containerd/events/image_pb.js";
import type { ServiceImpl } from "./grpc-adapter.js";
import { namespaced } from "./call-context.js";
import type { ImageStore, Image } from "../core/metadata/images.js";
import type { GcScheduler } from "../core/metadata/gc-scheduler.js";
import type { Exchange } from "../core/events/exchange.js";
import { packEvent } from "./event-payloads.js";
import { invalidArgument, isCode } from "../errdefs/errors.js";
import { descriptorFromProto, descriptorToProto } from "./descriptor.js";

export { Images };

const toProto = (i: Image) => ({
  name: i.name,
  labels: i.labels,
  target: descriptorToProto(i.target),
  createdAt: timestampFromDate(i.createdAt),
  updatedAt: timestampFromDate(i.updatedAt),
});

function fromProto(i: ImageProto | undefined): Omit<Image, "createdAt" | "updatedAt"> {
  if (!i) throw invalidArgument("image must not be empty");
  return { name: i.name, labels: i.labels, target: descriptorFromProto(i.target) };
}

export function imagesService(deps: {
  images: ImageStore;
  events: Exchange;
  gc: GcScheduler;
}): ServiceImpl<(typeof Images)["method"]> {
  const { images, events, gc } = deps;
  return {
    get: async (req, ctx) => ({ image: toProto(images.get(namespaced(ctx), req.name)) }),
    list: async (req, ctx) => {
      const rc = namespaced(ctx);
      try {
        return { images: images.list(rc, req.filters).map(toProto) };
      } catch (err) {
        // containerd's service wraps filter errors once more: "...: invalid argument: invalid argument".
        if (isCode(err, "invalid-argument")) throw invalidArgument((err as Error).message);
        throw err;
      }
    },
    create: async (req, ctx) => {
      const rc = namespaced(ctx);
      const created = images.create(rc, fromProto(req.image));
      events.publish(
        rc.namespace,
        "/images/create",
        packEvent(ImageCreateSchema, { name: created.name, labels: created.labels }),
      );
      return { image: toProto(created) };
    },
    update: async (req, ctx) => {
      const rc = namespaced(ctx);
      const updated = images.update(rc, fromProto(req.image), req.updateMask?.paths ?? []);
      events.publish(
        rc.namespace,
        "/images/update",
        packEvent(ImageUpdateSchema, { name: updated.name, labels: updated.labels }),
      );
      return { image: toProto(updated) };
    },
    delete: async (req, ctx) => {
      const rc = namespaced(ctx);
      images.delete(rc, req.name);
      events.publish(rc.namespace, "/images/delete", packEvent(ImageDeleteSchema, { name: req.name }));
      if (req.sync) await gc.runNow();
      return {};
    },
  };
}
