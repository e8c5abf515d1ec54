// Restart and dead-shim cleanup with containers on the Berth shim (one shim serves them all).
import { restartSuite } from "./restart-suite.js";

restartSuite("io.containerd.berth.v1", "the berth shim");
