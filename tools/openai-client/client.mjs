// Talks to an OpenAI-compatible server with the official openai npm client and prints what it got as one
// JSON object: the model list, a chat completion (seeded, with logprobs), the same completion streamed,
// and a raw-prompt completion. Usage: node client.mjs BASE_URL MODEL. Used by backend/npmclient_test.go.
import OpenAI from "openai";

const [baseURL, model] = process.argv.slice(2);
if (!baseURL || !model) {
  console.error("usage: node client.mjs BASE_URL MODEL");
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey: "not-needed", maxRetries: 0, timeout: 120_000 });
const messages = [
  { role: "system", content: "You are a pirate." },
  { role: "user", content: "What is 17+25?" },
];
const params = { model, messages, max_tokens: 8, temperature: 0.8, seed: 11, logprobs: true, top_logprobs: 2 };

const out = {};
const models = await client.models.list();
out.models = [];
for await (const m of models) out.models.push(m.id);

const chat = await client.chat.completions.create(params);
out.chat = {
  text: chat.choices[0].message.content,
  finish_reason: chat.choices[0].finish_reason,
  logprobs: chat.choices[0].logprobs.content.map((t) => t.logprob),
  top: chat.choices[0].logprobs.content.map((t) => t.top_logprobs.length),
  usage: chat.usage,
};

const stream = await client.chat.completions.create({ ...params, stream: true, stream_options: { include_usage: true } });
let text = "", finish = null, chunks = 0, usage = null;
const logprobs = [];
for await (const chunk of stream) {
  chunks++;
  if (chunk.usage) usage = chunk.usage;
  for (const c of chunk.choices) {
    text += c.delta.content ?? "";
    for (const t of c.logprobs?.content ?? []) logprobs.push(t.logprob);
    if (c.finish_reason) finish = c.finish_reason;
  }
}
out.stream = { text, finish_reason: finish, chunks, logprobs, usage };

const done = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 4, temperature: 0 });
out.completion = { text: done.choices[0].text, finish_reason: done.choices[0].finish_reason };

try {
  await client.chat.completions.create({ ...params, model: "no-such-model" });
  out.error = null;
} catch (e) {
  out.error = { status: e.status, type: e.constructor.name, message: e.message };
}
console.log(JSON.stringify(out));
