/** Where the lab's bundled files are served (public/models/stories260K: the model, its evaluation and calibration texts). */
export const BUNDLED_MODEL = new URL("models/stories260K/", new URL(import.meta.env.BASE_URL, self.location.origin));

/** A bundled (or any same-origin) text file; a failed fetch throws with the path and status. */
export async function fetchText(url: URL): Promise<string> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url.pathname}: HTTP ${r.status}`);
  return r.text();
}
