/**
 * The one way to turn a failure into the sentence a user reads: the server's own
 * `{"error": …}` text for an `ApiError` (it says what was wrong and what to do), the
 * message of any other `Error`, or the value as text.
 */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  return String(e);
}
