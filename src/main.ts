/**
 * Boots the lab: one model worker, the app shell, and a model so the first screen is never empty: the one a
 * shared link names (its URL), else the built-in demo; then the link's tensor, tab and heatmap settings.
 */
import { LabClient } from "./ui/lab-client.ts";
import "./ui/lab-app.ts";
import { initialLang, setLang } from "./ui/i18n.ts";
import { parseUrlState } from "./ui/url-state.ts";

const state = parseUrlState(location.hash);
setLang(initialLang(state.lang, navigator.language));
const app = document.createElement("ql-lab-app");
app.client = new LabClient();
document.body.append(app);
// The model first: on a software adapter, creating the GPU device and compiling kernels takes CPU time
// the first table should not wait for.
const opened = state.src && state.src !== "demo" ? app.openUrl(state.src) : app.openDemo();
void opened
  .then((ok) => (ok ? app.restore(state) : undefined))
  .finally(() => app.showGpuStatus());
