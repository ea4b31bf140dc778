// Encodes strings with Hugging Face tokenizers (the Rust library, npm @anush008/tokenizers 0.6.0 = tokenizers
// 0.22.2) for persona's tokenizer tests (tokenizer/hftok_test.go).
//
// stdin:  {"tokenizer": "/path/tokenizer.json", "texts": ["...", ...]}
// stdout: {"vocab_size": N, "results": [{"ids": [...], "ids_with_special": [...], "decoded": "...",
//          "decoded_skip_special": "..."}, ...]}
// "ids" is encode(text, add_special_tokens=false), "ids_with_special" the same with the post-processor,
// "decoded" decode(ids_with_special, skip_special_tokens=false).
import tokenizers from "@anush008/tokenizers";

const { Tokenizer } = tokenizers;
// stdin is read as a stream: a synchronous read of fd 0 can fail with EAGAIN once the event loop runs.
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
const req = JSON.parse(Buffer.concat(chunks).toString("utf8"));
const tok = Tokenizer.fromFile(req.tokenizer);
const results = [];
for (const text of req.texts) {
  const plain = await tok.encode(text, null, { addSpecialTokens: false });
  const withSpecial = await tok.encode(text, null, { addSpecialTokens: true });
  const ids = Array.from(plain.getIds());
  const idsSpecial = Array.from(withSpecial.getIds());
  results.push({
    ids,
    ids_with_special: idsSpecial,
    decoded: await tok.decode(idsSpecial, false),
    decoded_skip_special: await tok.decode(idsSpecial, true),
  });
}
process.stdout.write(JSON.stringify({ vocab_size: tok.getVocabSize(true), results }));
