// Encoding helpers of the pages protocol: base64 <-> bytes, UTF-8, and the
// file monitor's JSON lines ({"contents": base64} / {"error": base64}) that
// arrive base64-encoded inside "output" frames.

const encoder = new TextEncoder();

/** Bytes (Uint8Array) of a base64 string. Throws on invalid base64. */
export function fromBase64(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** Base64 of bytes (Uint8Array) or of a string (encoded as UTF-8 first). */
export function toBase64(data) {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  let binary = "";
  const step = 0x8000; // keep String.fromCharCode's argument list small
  for (let i = 0; i < bytes.length; i += step) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + step));
  }
  return btoa(binary);
}

/** Text of UTF-8 bytes; invalid sequences become U+FFFD (never throws). */
export function utf8(bytes) {
  return new TextDecoder("utf-8").decode(bytes);
}

/** The bytes of an output frame's message ({stdout|stderr: base64}) and its stream name. */
export function outputOf(message) {
  for (const stream of ["stdout", "stderr"]) {
    if (typeof message[stream] === "string") return { stream, bytes: fromBase64(message[stream]) };
  }
  return null;
}

/**
 * Splits a file executor's output into monitor messages.
 * feed(bytes) returns the complete JSON lines seen so far, parsed; a partial
 * line is kept until its end arrives.
 */
export class MonitorReader {
  constructor() {
    this.decoder = new TextDecoder("utf-8");
    this.pending = "";
  }

  reset() {
    this.decoder = new TextDecoder("utf-8");
    this.pending = "";
  }

  feed(bytes) {
    this.pending += this.decoder.decode(bytes, { stream: true });
    const lines = this.pending.split("\n");
    this.pending = lines.pop();
    const out = [];
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        out.push(JSON.parse(line));
      } catch {
        out.push({ invalid: line });
      }
    }
    return out;
  }
}

/** The client message that writes a file: a monitor line wrapped in stdin (interactive-widgets' shape). */
export function fileWrite(text) {
  return { stdin: toBase64(JSON.stringify({ contents: toBase64(text) }) + "\n") };
}
