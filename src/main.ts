/** Boots the lab: one model worker, the app shell, and the built-in demo so the first screen is never empty. */
import { LabClient } from "./ui/lab-client.ts";
import "./ui/lab-app.ts";

const app = document.createElement("ql-lab-app");
app.client = new LabClient();
document.body.append(app);
// The demo first: on a software adapter, creating the GPU device and compiling kernels takes CPU time
// the first table should not wait for.
void app.openDemo().finally(() => app.showGpuStatus());
