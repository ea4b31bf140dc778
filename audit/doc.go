// Package audit runs persona audits: suites of probes that put pressure on a
// model's intended persona (role-play, emotional, identity, sycophancy,
// harmful framing, system-prompt override, long conversations), scorers that
// judge every assistant turn on one 0–100 persona-departure scale, and
// reports that gate releases in CI.
//
// A run plays each probe several times (samples) against a target backend,
// scores each turn (the persona trajectory of the conversation), and reports
// per-probe and per-category elicitation rates (the share of samples in which
// some turn left the persona) with bootstrap confidence intervals. Thresholds
// in the suite turn the rates into an exit code: 0 pass, 1 breached, 2 bad
// input, 3 infrastructure failure. A sample that could not be measured (a
// backend error, an empty reply, a judge without a number) is an error that
// is recorded and counted, never a pass.
//
// Every finished sample is committed to the store (SQLite or PostgreSQL) in
// its own transaction, so a killed run resumes where it stopped without
// redoing or losing completed samples.
//
// Scorers. "regex" and "judge" (an LLM judge, probability-weighted when the
// judge returns log-probabilities) work on any target. "oracle" asks an
// oracle that knows which persona wrote a reply (Options.Oracle: the model
// organism's ground truth, which package organism supplies together with
// the "organism" suite it registers). The white-box scorers "posterior"
// (package posterior's likelihood posterior over a persona library:
// departure = 100·(1 − P(intended persona)), with the whole distribution per
// turn) and "projection" (the reply's response-mean activation on a persona
// vector or the assistant axis, departure = 100·σ(−sign·(p − τ)/w)) read the
// target model itself, so they need the embedded engine as the target
// (--model, or a config entry of kind engine); against an API they fail at
// once with ErrBlackBox rather than scoring nothing.
//
// Throughput (BenchmarkAuditThroughput, BenchmarkAuditOverhead; one
// single-turn probe with a regex scorer, samples saved to SQLite; measured on
// 2 shared AMD EPYC cores with other jobs running, so read them as orders of
// magnitude). Against a target with a fixed 5 ms latency behind a backend
// limit of 16 requests in flight:
//
//	concurrency  1:   173 probes/s  (ideal 200)
//	concurrency  8:  1268 probes/s  (ideal 1600)
//	concurrency 32:  2190 probes/s  (backend limit: ideal 3200)
//
// so the harness scales about linearly up to the backend's limit. Its own
// cost per probe, against a target that answers at once: about 3 µs for
// scheduling, the conversation and scoring (in-memory store), about 220 µs
// with the SQLite commit every sample gets (the price of resumability, and
// what caps a run at a few thousand probes/s). A real model's latency
// (hundreds of ms per turn) dwarfs both.
package audit
