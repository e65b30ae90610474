/** Something about the model the GGUF writer cannot express: found before anything is written. */
export class ExportError extends Error {
  override name = "ExportError";
}

export function isExportError(e: unknown): e is ExportError {
  return e instanceof ExportError;
}
