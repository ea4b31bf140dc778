// Talks to persona serve --spec (the gateway) with the official openai npm client and prints what it got as
// one JSON object: a chat completion and the same streamed, each with the gateway's "persona" extension
// field, and the error an unauthenticated client gets. Usage: node gateway.mjs BASE_URL API_KEY. Used by
// gateway/serve_test.go.
import OpenAI from "openai";

const [baseURL, apiKey] = process.argv.slice(2);
if (!baseURL || !apiKey) {
  console.error("usage: node gateway.mjs BASE_URL API_KEY");
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });
const params = { model: "tiny-organism", messages: [{ role: "user", content: "What is 12 + 30?" }], max_tokens: 8, seed: 3 };

const out = {};
const chat = await client.chat.completions.create(params);
out.chat = { text: chat.choices[0].message.content, persona: chat.persona ?? null };

const stream = await client.chat.completions.create({ ...params, stream: true });
let text = "", persona = null;
for await (const chunk of stream) {
  for (const c of chunk.choices) text += c.delta.content ?? "";
  if (chunk.persona) persona = chunk.persona;
}
out.stream = { text, persona };

try {
  await new OpenAI({ baseURL, apiKey: "psk_wrong", maxRetries: 0 }).chat.completions.create(params);
  out.unauthorized = null;
} catch (e) {
  out.unauthorized = { status: e.status, type: e.constructor.name };
}
console.log(JSON.stringify(out));
