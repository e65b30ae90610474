/**
 * JSON.parse keeps the last of two equal keys without a word, so a safetensors header that names a
 * tensor twice would silently lose one. This scanner walks JSON text (already known to be valid: call
 * it after JSON.parse succeeded) and reports the top-level keys in text order and the first key that
 * repeats inside any object. Iterative, one pass, no recursion: deep nesting cannot overflow the stack.
 */

export interface DuplicateKey {
  /** The repeated key. */
  key: string;
  /** 1 for the top-level object, 2 for an object directly inside it, and so on. */
  depth: number;
  /** The top-level key the object sits under (for depth >= 2). */
  topLevelKey?: string;
}

export interface ScannedKeys {
  /** The top-level object's keys, in text order (each once). */
  topLevelKeys: string[];
  duplicate?: DuplicateKey;
}

interface Frame {
  /** Keys seen so far (an array while small: most objects have a few keys); null for an array. */
  keys: string[] | Set<string> | null;
  /** True when the next string in this object is a key. */
  expectKey: boolean;
  /** The key whose value is being read (objects only). */
  lastKey?: string;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Index of the quote closing the string that opens at `start`. */
function stringEnd(text: string, start: number): number {
  let i = start + 1;
  for (;;) {
    const q = text.indexOf('"', i);
    if (q < 0) return text.length - 1; // cannot happen for valid JSON
    let backslashes = 0;
    for (let j = q - 1; j > start && text.charCodeAt(j) === BACKSLASH; j--) backslashes++;
    if (backslashes % 2 === 0) return q;
    i = q + 1;
  }
}

export function scanJsonKeys(text: string): ScannedKeys {
  const topLevelKeys: string[] = [];
  const stack: Frame[] = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const end = stringEnd(text, i);
      const top = stack[stack.length - 1];
      if (top?.keys && top.expectKey) {
        const raw = text.slice(i + 1, end);
        const key = raw.includes("\\") ? (JSON.parse(text.slice(i, end + 1)) as string) : raw;
        const keys = top.keys;
        if (Array.isArray(keys) ? keys.includes(key) : keys.has(key)) {
          const duplicate: DuplicateKey = { key, depth: stack.length };
          const outer = stack[0]?.lastKey;
          if (stack.length >= 2 && outer !== undefined) duplicate.topLevelKey = outer;
          return { topLevelKeys, duplicate };
        }
        if (!Array.isArray(keys)) keys.add(key);
        else if (keys.length < 16) keys.push(key);
        else top.keys = new Set([...keys, key]);
        top.lastKey = key;
        top.expectKey = false;
        if (stack.length === 1) topLevelKeys.push(key);
      }
      i = end;
    } else if (c === 0x7b /* { */) {
      stack.push({ keys: [], expectKey: true });
    } else if (c === 0x5b /* [ */) {
      stack.push({ keys: null, expectKey: false });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top?.keys) top.expectKey = true;
    }
  }
  return { topLevelKeys };
}
