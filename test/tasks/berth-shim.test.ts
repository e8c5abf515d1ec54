// The tasks suite with berthd running containers through the Berth shim (containerd-shim-berth-v1).
import { tasksSuite } from "./tasks-suite.js";

tasksSuite("io.containerd.berth.v1", "the berth shim");
