package backend

// Unwrap returns the backend the recorder writes through, so callers that
// need more than chat (white-box scorers) can reach the model behind it.
func (r *Recorder) Unwrap() Backend { return r.b }

// EngineOf returns the embedded engine behind b, looking through the
// wrappers a config puts around it (a Recorder, a Robust with engine
// endpoints), or nil when b is a black box (an HTTP API, a replay).
//
// White-box measurements — the model's own log-probabilities of a
// transcript under other system prompts, its residual stream — need the
// weights, not a chat endpoint, and they must be taken on the model that
// wrote the transcript. A Robust whose endpoints are several engines
// serves one model (that is what the config promises), so the first engine
// stands for all of them; a Robust that mixes engines with API endpoints
// has no single model behind it and counts as a black box.
func EngineOf(b Backend) *Engine {
	switch v := b.(type) {
	case *Engine:
		return v
	case *Recorder:
		return EngineOf(v.b)
	case *Robust:
		var first *Engine
		for _, ep := range v.eps {
			e := EngineOf(ep.b)
			if e == nil {
				return nil
			}
			if first == nil {
				first = e
			}
		}
		return first
	case interface{ Unwrap() Backend }:
		return EngineOf(v.Unwrap())
	}
	return nil
}
