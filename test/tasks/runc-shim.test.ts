// The tasks suite with berthd running containers through the stock Go shim (containerd-shim-runc-v2).
import { tasksSuite } from "./tasks-suite.js";

tasksSuite("io.containerd.runc.v2", "the stock runc shim");
