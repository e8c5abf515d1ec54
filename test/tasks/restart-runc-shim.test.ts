// Restart and dead-shim cleanup with containers on the stock Go shim.
import { restartSuite } from "./restart-suite.js";

restartSuite("io.containerd.runc.v2", "the stock runc shim");
