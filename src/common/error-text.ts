/** What an error says, to show it (a thrown non-Error as text). */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** The error's name and message ("QuotaExceededError: ..."): for storage failures, where the name says most. */
export function errorWithName(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
