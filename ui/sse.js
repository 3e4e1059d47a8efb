// The server-sent events parser, without I/O: text in, events out, however the stream is cut.

/**
 * An SSE parser without I/O: feed it text as it arrives, in pieces of any size; it calls
 * `onEvent({event, data, id})` for each complete event.
 */
export function sseParser(onEvent) {
  let buffer = "";
  let event = "";
  let data = [];
  let id = null;
  const line = (text) => {
    if (text === "") {
      if (data.length) onEvent({ event: event || "message", data: data.join("\n"), id });
      event = "";
      data = [];
      return;
    }
    if (text[0] === ":") return;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "event") event = value;
    else if (field === "data") data.push(value);
    else if (field === "id") id = value;
  };
  return (chunk) => {
    buffer += chunk;
    let start = 0;
    for (;;) {
      const nl = buffer.indexOf("\n", start);
      const cr = buffer.indexOf("\r", start);
      let end = nl < 0 ? cr : cr < 0 ? nl : Math.min(nl, cr);
      if (end < 0) break;
      // A CR at the end of this chunk may be the first half of a CRLF: wait for the next one.
      if (end === cr && end === buffer.length - 1) break;
      line(buffer.slice(start, end));
      start = end + (buffer[end] === "\r" && buffer[end + 1] === "\n" ? 2 : 1);
    }
    buffer = buffer.slice(start);
  };
}
