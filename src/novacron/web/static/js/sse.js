// Server-sent events read from a fetch response (fetch, not EventSource, so that the token goes in
// the Authorization header): the platform's event stream and the live charts.

/** The server-sent events of a response, as {event, data} with `data` parsed; comments skipped. */
export async function* serverEvents(resp) {
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const lines = buffer.slice(0, cut).split('\n');
      buffer = buffer.slice(cut + 2);
      const event = lines.find((l) => l.startsWith('event: '))?.slice(7) ?? 'message';
      const data = lines.filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (data) yield { event, data: JSON.parse(data) };
    }
  }
}
