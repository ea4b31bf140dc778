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
// Scorers are pluggable: regex and an LLM judge are built in; scorers that
// need the persona world's oracle, the target's posterior over personas, or
// activations (projection on a persona vector or the assistant axis) register
// themselves with RegisterScorer from the packages that know about those
// things, so this package stays free of them.
package audit
