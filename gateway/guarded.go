package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"persona/backend"
	"persona/chat"
	"persona/engine"
	"persona/resid"
)

// Guarded serves a model as its brand persona: the spec's system prompt
// opens every conversation, every reply passes the guard before the client
// sees it, and what the monitor read comes back in the response's persona
// field, in the conversation log and in the metrics. Streams are buffered
// (a rail may replace the reply), so a stream arrives as one piece once the
// reply has passed.
type Guarded struct {
	// Up answers the chats: the embedded engine, or a model API through
	// a backend.
	Up backend.Backend
	// Guard holds replies to the spec. Set it before serving; Reload
	// replaces it while serving.
	Guard *Guard
	// SpecPath and Readers let Reload build the guard again from the file.
	SpecPath string
	Readers  Readers
	// Log, if set, keeps every turn durably before its response is sent.
	Log *Log
	// others are the server's further specs (AddSpec), which a request
	// may choose by name where the default spec's overrides list "spec".
	others     map[string]*Guard
	otherPaths []string

	mu    sync.Mutex
	stats Stats
	// guardMu guards Guard against Reload.
	guardMu sync.RWMutex
}

// guard returns the guard in force.
func (g *Guarded) guard() *Guard {
	g.guardMu.RLock()
	defer g.guardMu.RUnlock()
	return g.Guard
}

// Reload reads the spec files again and puts their guards in force for
// the requests that come after; if any does not load, all the old ones
// stay.
func (g *Guarded) Reload() error {
	guard, err := g.load(g.SpecPath)
	if err != nil {
		return err
	}
	others := map[string]*Guard{}
	for _, p := range g.otherPaths {
		o, err := g.load(p)
		if err != nil {
			return err
		}
		if o.Spec.Name == guard.Spec.Name || others[o.Spec.Name] != nil {
			return fmt.Errorf("%w: %s: a second spec named %q", ErrSpec, p, o.Spec.Name)
		}
		others[o.Spec.Name] = o
	}
	g.guardMu.Lock()
	g.Guard, g.others = guard, others
	g.guardMu.Unlock()
	return nil
}

func (g *Guarded) load(path string) (*Guard, error) {
	spec, err := LoadSpec(path)
	if err != nil {
		return nil, err
	}
	return NewGuard(spec, g.Readers)
}

// AddSpec serves one more spec beside the default, answered by the same
// upstream: requests choose it with "persona": {"spec": NAME} where the
// default spec's overrides list "spec". Names must differ.
func (g *Guarded) AddSpec(path string) error {
	o, err := g.load(path)
	if err != nil {
		return err
	}
	g.guardMu.Lock()
	defer g.guardMu.Unlock()
	if o.Spec.Name == g.Guard.Spec.Name || g.others[o.Spec.Name] != nil {
		return fmt.Errorf("%w: %s: a second spec named %q", ErrSpec, path, o.Spec.Name)
	}
	if g.others == nil {
		g.others = map[string]*Guard{}
	}
	g.others[o.Spec.Name], g.otherPaths = o, append(g.otherPaths, path)
	return nil
}

// choose returns the guard a request's persona field asks for.
func (g *Guarded) choose(f personaField) (*Guard, error) {
	g.guardMu.RLock()
	defer g.guardMu.RUnlock()
	def := g.Guard
	if f.Spec == "" || f.Spec == def.Spec.Name {
		return def, nil
	}
	if !slices.Contains(def.Spec.Overrides, "spec") {
		return nil, fmt.Errorf("%w: this deployment does not let requests choose a spec (the spec's overrides: %v)", ErrControl, def.Spec.Overrides)
	}
	o := g.others[f.Spec]
	if o == nil {
		names := []string{def.Spec.Name}
		for n := range g.others {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%w: no spec %q on this server (it has %v)", ErrControl, f.Spec, names)
	}
	return o, nil
}

// Stats counts what the gateway saw and did since it started.
type Stats struct {
	Turns         int            `json:"turns"`
	ByTop         map[string]int `json:"by_top_persona"`
	Interventions map[string]int `json:"interventions"` // by "rail/action"
	Blocked       int            `json:"blocked"`
	// AllowedMean is the mean allowed-persona probability of served replies.
	AllowedMean float64 `json:"allowed_mean"`
	allowedSum  float64
	// Projections are the served replies' projections by direction.
	Projections map[string]Histogram `json:"projections,omitempty"`
}

// ProjectionBuckets are the upper bounds of the projection histograms:
// symmetric and doubling, so one set fits directions of any scale.
var ProjectionBuckets = []float64{-64, -32, -16, -8, -4, -2, -1, -0.5, -0.25, 0, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64}

// Histogram counts values by ProjectionBuckets: Counts[i] of them are
// ≤ ProjectionBuckets[i] (cumulative, as Prometheus has it).
type Histogram struct {
	Counts []int   `json:"counts"`
	Sum    float64 `json:"sum"`
	Count  int     `json:"count"`
}

func (h Histogram) add(v float64) Histogram {
	if h.Counts == nil {
		h.Counts = make([]int, len(ProjectionBuckets))
	} else {
		h.Counts = slices.Clone(h.Counts)
	}
	for i, le := range ProjectionBuckets {
		if v <= le {
			h.Counts[i]++
		}
	}
	h.Sum += v
	h.Count++
	return h
}

// Name names the gateway and its upstream.
func (g *Guarded) Name() string { return "gateway:" + g.guard().Spec.Name + "/" + g.Up.Name() }

// Model is the upstream's model id: the engine's model, or the backend's
// name for an API.
func (g *Guarded) Model() string {
	if m, ok := g.Up.(interface{ Model() string }); ok {
		return m.Model()
	}
	return g.Up.Name()
}

// Chat is ChatStream without streaming.
func (g *Guarded) Chat(ctx context.Context, req backend.Request) (*backend.Response, error) {
	return g.ChatStream(ctx, req, nil)
}

// ChatStream answers as the brand persona.
func (g *Guarded) ChatStream(ctx context.Context, req backend.Request, emit func(backend.Delta) error) (*backend.Response, error) {
	field, err := parsePersonaField(req.Persona)
	var guard *Guard
	if err == nil {
		guard, err = g.choose(field)
	}
	var ctl Control
	if err == nil {
		ctl, err = guard.Spec.control(field)
	}
	if err != nil {
		return nil, &backend.Error{Backend: g.Name(), Kind: backend.KindBadRequest, Msg: err.Error()}
	}
	msgs := append([]chat.Message{{Role: chat.RoleSystem, Content: guard.Spec.SystemPrompt}}, req.Messages...)
	var last *backend.Response
	attempt := int64(0)
	gen := func(ctx context.Context, m []chat.Message, ivs []resid.Intervention, watch engine.Watch) (string, error) {
		r := req
		r.Messages, r.Interventions, r.Watch = m, ivs, watch
		if r.Seed != nil {
			s := *r.Seed + attempt // a rail's next try is a new draw
			r.Seed = &s
		}
		attempt++
		resp, err := g.Up.Chat(ctx, r)
		if err != nil {
			return "", err
		}
		last = resp
		return resp.Content, nil
	}
	out, err := guard.Reply(ctx, msgs, ctl, gen)
	if errors.Is(err, ErrControl) {
		return nil, &backend.Error{Backend: g.Name(), Kind: backend.KindBadRequest, Msg: err.Error()}
	}
	if err != nil {
		return nil, err
	}
	resp := *last
	if out.Reply != resp.Content {
		// The client gets the text the rails let through; the drawn
		// tokens' probabilities describe another text.
		resp.Content, resp.Logprobs = out.Reply, nil
		if out.Blocked {
			resp.FinishReason = "content_filter"
		}
	}
	resp.Persona = &out.Telemetry
	g.count(out)
	if g.Log != nil {
		if err := g.Log.Append(ctx, Turn{Conversation: ConversationID(msgs), Messages: msgs, Reply: out.Reply, Telemetry: out.Telemetry,
			Model: g.Model(), At: time.Now().UTC()}); err != nil {
			return nil, fmt.Errorf("conversation log: %w", err)
		}
	}
	if emit != nil && resp.Content != "" {
		if err := emit(backend.Delta{Text: resp.Content}); err != nil {
			return nil, err
		}
	}
	return &resp, nil
}

func (g *Guarded) count(out *Outcome) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := &g.stats
	if s.ByTop == nil {
		s.ByTop, s.Interventions = map[string]int{}, map[string]int{}
	}
	s.Turns++
	s.ByTop[out.Top]++
	for _, iv := range out.Interventions {
		s.Interventions[iv.Rail+"/"+iv.Action]++
	}
	if out.Blocked {
		s.Blocked++
	}
	s.allowedSum += out.Allowed
	s.AllowedMean = s.allowedSum / float64(s.Turns)
	for name, v := range out.Projections {
		if s.Projections == nil {
			s.Projections = map[string]Histogram{}
		}
		s.Projections[name] = s.Projections[name].add(v)
	}
}

// Stats returns a copy of the counts.
func (g *Guarded) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.stats
	s.ByTop, s.Interventions, s.Projections = clone(s.ByTop), clone(s.Interventions), maps.Clone(s.Projections)
	return s
}

func clone(m map[string]int) map[string]int {
	if m == nil {
		return map[string]int{}
	}
	return maps.Clone(m)
}

// WriteMetrics writes the counts in the Prometheus text format.
func (g *Guarded) WriteMetrics(w io.Writer) {
	s := g.Stats()
	spec := g.guard().Spec.Name
	fmt.Fprintln(w, "# HELP persona_gateway_turns_total Replies served, by the persona the monitor read as most likely.")
	fmt.Fprintln(w, "# TYPE persona_gateway_turns_total counter")
	for _, k := range sortedKeys(s.ByTop) {
		fmt.Fprintf(w, "persona_gateway_turns_total{spec=%q,top=%q} %d\n", spec, k, s.ByTop[k])
	}
	fmt.Fprintln(w, "# HELP persona_gateway_interventions_total Actions the rails took, by rail and action.")
	fmt.Fprintln(w, "# TYPE persona_gateway_interventions_total counter")
	for _, k := range sortedKeys(s.Interventions) {
		rail, action, _ := strings.Cut(k, "/")
		fmt.Fprintf(w, "persona_gateway_interventions_total{spec=%q,rail=%q,action=%q} %d\n", spec, rail, action, s.Interventions[k])
	}
	fmt.Fprintln(w, "# HELP persona_gateway_allowed_mean Mean probability of the allowed personas over served replies.")
	fmt.Fprintln(w, "# TYPE persona_gateway_allowed_mean gauge")
	fmt.Fprintf(w, "persona_gateway_allowed_mean{spec=%q} %g\n", spec, s.AllowedMean)
	if len(s.Projections) == 0 {
		return
	}
	fmt.Fprintln(w, "# HELP persona_gateway_projection Served replies' mean projections on the spec's persona vectors and assistant axis.")
	fmt.Fprintln(w, "# TYPE persona_gateway_projection histogram")
	for _, name := range slices.Sorted(maps.Keys(s.Projections)) {
		h := s.Projections[name]
		for i, le := range ProjectionBuckets {
			fmt.Fprintf(w, "persona_gateway_projection_bucket{spec=%q,direction=%q,le=\"%g\"} %d\n", spec, name, le, h.Counts[i])
		}
		fmt.Fprintf(w, "persona_gateway_projection_bucket{spec=%q,direction=%q,le=\"+Inf\"} %d\n", spec, name, h.Count)
		fmt.Fprintf(w, "persona_gateway_projection_sum{spec=%q,direction=%q} %g\n", spec, name, h.Sum)
		fmt.Fprintf(w, "persona_gateway_projection_count{spec=%q,direction=%q} %d\n", spec, name, h.Count)
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Card is the persona card: what a deployment is, how it is held, and
// what was measured of it.
type Card struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Disclosure  string   `json:"disclosure,omitempty"`
	Model       string   `json:"model"`
	Monitor     string   `json:"monitor"`
	Allowed     []string `json:"allowed"`
	Forbidden   []string `json:"forbidden"`
	Rails       []Rail   `json:"rails"`
	// Watermark names the scheme and key id when output is marked.
	Watermark map[string]string `json:"watermark,omitempty"`
	Stats     Stats             `json:"stats"`
	// Evidence is the measured adherence the spec points to (the newest
	// finished audit run, a drift report), read when the card is asked for.
	Evidence *Evidence `json:"evidence,omitempty"`
	// OtherSpecs names the further specs requests may choose.
	OtherSpecs []string `json:"other_specs,omitempty"`
}

// Card returns the deployment's card.
func (g *Guarded) Card(ctx context.Context) Card {
	s := g.guard().Spec
	return Card{Name: s.Name, Description: s.Description, Disclosure: s.Disclosure, Model: g.Model(), Monitor: s.Monitor,
		Allowed: slices.Clone(s.Allowed), Forbidden: slices.Clone(s.Forbidden), Rails: slices.Clone(s.Rails), Stats: g.Stats(),
		Evidence: s.evidence(ctx), OtherSpecs: g.otherNames()}
}

func (g *Guarded) otherNames() []string {
	g.guardMu.RLock()
	defer g.guardMu.RUnlock()
	if !slices.Contains(g.Guard.Spec.Overrides, "spec") {
		return nil
	}
	names := make([]string, 0, len(g.others))
	for n := range g.others {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
