package gateway

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"persona/backend"
	"persona/chat"
	"persona/engine"
	"persona/personas"
	"persona/posterior"
	"persona/resid"
	"persona/vectors"
	"persona/world"
)

// Generate produces the next assistant reply to msgs, with ivs (steering,
// capping; nil: none) applied to the model's residual stream. watch, when
// not nil, is to read the reply while it is written (backend.Request.Watch:
// what it returns replaces ivs for the rest of the reply); an upstream that
// cannot do that ignores it.
type Generate func(ctx context.Context, msgs []chat.Message, ivs []resid.Intervention, watch engine.Watch) (string, error)

// Guard holds a deployment to its spec: it reads every reply with the
// monitor and, when a rail's condition holds on the conversation so far,
// acts before the reply reaches the user.
type Guard struct {
	Spec    *Spec
	Monitor Monitor
	// Critic rewrites drafts for the revise action (nil: revise is
	// unavailable, and a spec that asks for it is refused by New).
	Critic func(ctx context.Context, msgs []chat.Message) (string, error)
	// Rate scores a reply 0–100 on a trait, for the spec's trait bounds
	// (a judge backend, or the organism world's oracle).
	Rate func(ctx context.Context, t *vectors.TraitSpec, question, answer string) (float64, error)

	controls *controls
}

// Intervention is one action a rail took on a reply.
type Intervention struct {
	Rail   string `json:"rail"`
	Action string `json:"action"`
	Reason string `json:"reason"`
	// Attempt is the reply (1: the first drawn) the rail acted on.
	Attempt int `json:"attempt"`
	// Token is the number of tokens of that reply written when the rail
	// acted in the middle of it; 0 when it acted on the whole reply.
	Token int `json:"token,omitempty"`
}

// Telemetry is what the gateway knows about one guarded reply: returned
// to clients as the "persona" field, logged, and counted in metrics.
type Telemetry struct {
	Spec      string             `json:"spec"`
	Monitor   string             `json:"monitor"`
	Top       string             `json:"top"`
	TopProb   float64            `json:"top_prob"`
	Allowed   float64            `json:"allowed"`
	Posterior map[string]float64 `json:"posterior"`
	// Trajectory is the allowed personas' probability after each assistant
	// turn, this one last.
	Trajectory    []float64      `json:"trajectory"`
	Interventions []Intervention `json:"interventions,omitempty"`
	Blocked       bool           `json:"blocked,omitempty"`
	// Projections are the served reply's mean projections on the spec's
	// persona vectors and assistant axis, read while it was written
	// (embedded engine only).
	Projections map[string]float64 `json:"projections,omitempty"`
	// Scores are the judge's 0–100 trait scores of the served reply, for
	// the spec's trait bounds.
	Scores map[string]float64 `json:"scores,omitempty"`
	// Steer and Capped are the control the served reply was generated
	// under.
	Steer  map[string]float64 `json:"steer,omitempty"`
	Capped bool               `json:"capped,omitempty"`
}

// Outcome is a guarded reply and its telemetry.
type Outcome struct {
	Reply string
	Telemetry
}

// ErrGuard is returned for a guard that cannot act as its spec asks.
var ErrGuard = errors.New("guard cannot follow its spec")

// Check reports a spec the guard cannot serve.
func (g *Guard) Check() error {
	for _, r := range g.Spec.Rails {
		if (r.Action == "revise" || r.Then == "revise") && g.Critic == nil {
			return fmt.Errorf("%w: rail %s revises but no critic backend is configured", ErrGuard, r.Name)
		}
	}
	return nil
}

// Reply generates the next reply to msgs with gen under the control ctl
// (Spec.RequestControl: the spec's steering and capping, changed by the
// request where the spec allows) and holds it to the spec. Rails whose
// action is cap or steer read the reply while the embedded engine writes it
// (every Spec.Midstream tokens) and turn their control on for the rest of
// it. The monitor then reads the conversation with the whole reply, and the
// first rail whose condition holds acts (generate again re-anchored, capped
// or steered, revise, or block); the new reply is read again, up to the
// rail's retries, after which its fallback action is taken. Control a rail
// turned on stays on for the tries after it.
func (g *Guard) Reply(ctx context.Context, msgs []chat.Message, ctl Control, gen Generate) (*Outcome, error) {
	out := &Outcome{Telemetry: Telemetry{Spec: g.Spec.Name, Monitor: g.Monitor.Name()}}
	r := &reply{g: g, gen: gen, msgs: msgs, ctl: ctl, out: out, on: map[string]bool{}}
	text, err := r.generate(ctx, msgs)
	if err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		rd, err := g.Monitor.Read(ctx, append(slices.Clip(msgs), chat.Message{Role: chat.RoleAssistant, Content: text}))
		if err != nil {
			return nil, err
		}
		rd.Projections = r.projections()
		if rd.Scores, err = g.scores(ctx, msgs, text); err != nil {
			return nil, err
		}
		out.read(g.Spec, rd)
		rail, reason := g.firing(rd)
		if rail == nil {
			out.Reply = text
			return r.done(), nil
		}
		action := rail.Action
		switch {
		case attempt >= 2*rail.Retries || (attempt >= rail.Retries && rail.Then == "block"):
			action = "block"
		case attempt >= rail.Retries:
			action = rail.Then
		}
		out.Interventions = append(out.Interventions, Intervention{Rail: rail.Name, Action: action, Reason: reason, Attempt: attempt + 1})
		switch action {
		case "block":
			out.Reply, out.Blocked = g.Spec.BlockMessage, true
			return r.done(), nil
		case "reanchor":
			text, err = g.reanchor(ctx, msgs, r.generate)
		case "cap", "steer":
			r.turnOn(rail, action)
			text, err = r.generate(ctx, msgs)
		case "revise":
			text, err = g.revise(ctx, msgs, text)
			r.probes = nil // the critic's text was not read by the model
		}
		if err != nil {
			return nil, err
		}
	}
}

// reply is one guarded reply in the making: the control it is generated
// under, which rails turned theirs on, and how many drafts were drawn.
type reply struct {
	g      *Guard
	gen    Generate
	msgs   []chat.Message
	ctl    Control
	out    *Outcome
	on     map[string]bool
	drafts int
	// probes read the current draft's projections.
	probes map[string]*resid.Probe
}

// generate draws a draft of the reply to m under the current control, with
// the mid-reply rails watching it.
func (r *reply) generate(ctx context.Context, m []chat.Message) (string, error) {
	ivs, err := r.g.controls.interventions(r.ctl)
	if err != nil {
		return "", err
	}
	r.drafts++
	r.probes = r.g.controls.probes()
	return r.gen(ctx, m, withProbes(ivs, r.probes), r.watch(ctx))
}

// withProbes appends the probes to a control's interventions: last at
// their layers, so they read the stream the control made.
func withProbes(ivs []resid.Intervention, probes map[string]*resid.Probe) []resid.Intervention {
	if len(probes) == 0 {
		return ivs
	}
	out := slices.Clone(ivs)
	for _, name := range slices.Sorted(maps.Keys(probes)) {
		out = append(out, probes[name])
	}
	return out
}

// projections are the current draft's mean projections so far (nil when
// the upstream ran none of the probes: an API, or nothing generated yet).
func (r *reply) projections() map[string]float64 {
	var out map[string]float64
	for name, p := range r.probes {
		if v, n := p.Mean(); n > 0 {
			if out == nil {
				out = map[string]float64{}
			}
			out[name] = v
		}
	}
	return out
}

// watch reads the draft every Spec.Midstream tokens (as a reply to the
// conversation the monitor reads, whatever re-anchoring the draft was
// written under) and, when a cap or steer rail whose control is still off
// fires, turns it on for the rest of the draft. Nil when no rail can act
// mid-reply.
func (r *reply) watch(ctx context.Context) engine.Watch {
	every := r.g.Spec.midstream()
	if every == 0 || r.g.controls == nil || !slices.ContainsFunc(r.g.Spec.Rails, midReply) {
		return nil
	}
	probes := r.probes
	return func(tokens int, text string) ([]resid.Intervention, error) {
		if tokens%every != 0 || strings.TrimSpace(text) == "" {
			return nil, nil
		}
		rd, err := r.g.Monitor.Read(ctx, append(slices.Clip(r.msgs), chat.Message{Role: chat.RoleAssistant, Content: text}))
		if err != nil {
			return nil, err
		}
		rd.Projections = r.projections()
		for i := range r.g.Spec.Rails {
			rail := &r.g.Spec.Rails[i]
			if !midReply(*rail) || r.on[rail.Name] {
				continue
			}
			if ok, why := r.g.Spec.fires(rail.When, rd); ok {
				r.out.Interventions = append(r.out.Interventions, Intervention{Rail: rail.Name, Action: rail.Action, Reason: why, Attempt: r.drafts, Token: tokens})
				r.turnOn(rail, rail.Action)
				ivs, err := r.g.controls.interventions(r.ctl)
				return withProbes(ivs, probes), err
			}
		}
		return nil, nil
	}
}

// midReply reports a rail that can act in the middle of a reply.
func midReply(r Rail) bool { return r.Action == "cap" || r.Action == "steer" }

// turnOn adds a rail's control (once per rail).
func (r *reply) turnOn(rail *Rail, action string) {
	if r.on[rail.Name] {
		return
	}
	r.on[rail.Name] = true
	switch action {
	case "cap":
		r.ctl.Cap = true
	case "steer":
		steer := maps.Clone(r.ctl.Steer)
		if steer == nil {
			steer = map[string]float64{}
		}
		for name, v := range rail.Steer {
			steer[name] += v
		}
		r.ctl.Steer = steer
	}
}

// done records the control the served reply was generated under.
func (r *reply) done() *Outcome {
	r.out.Steer, r.out.Capped = r.ctl.steering(), r.ctl.Cap
	if !r.out.Blocked {
		r.out.Projections = r.projections()
	} else {
		r.out.Scores = nil // they scored a reply the client does not get
	}
	return r.out
}

// scores rates a reply on the spec's trait bounds, as an answer to the
// last user turn.
func (g *Guard) scores(ctx context.Context, msgs []chat.Message, reply string) (map[string]float64, error) {
	if len(g.Spec.traits) == 0 {
		return nil, nil
	}
	question := ""
	for _, m := range msgs {
		if m.Role == chat.RoleUser {
			question = m.Content
		}
	}
	out := make(map[string]float64, len(g.Spec.traits))
	for name, t := range g.Spec.traits {
		v, err := g.Rate(ctx, t, question, reply)
		if err != nil {
			return nil, fmt.Errorf("trait bound %s: %w", name, err)
		}
		out[name] = v
	}
	return out, nil
}

// firing returns the first rail whose condition holds.
func (g *Guard) firing(rd *Reading) (*Rail, string) {
	for i := range g.Spec.Rails {
		if ok, why := g.Spec.fires(g.Spec.Rails[i].When, rd); ok {
			return &g.Spec.Rails[i], why
		}
	}
	return nil, ""
}

func (o *Outcome) read(s *Spec, rd *Reading) {
	o.Posterior, o.Scores = rd.Last(), rd.Scores
	o.Top, o.TopProb = "", 0
	for n, p := range o.Posterior {
		if p > o.TopProb || (p == o.TopProb && n < o.Top) {
			o.Top, o.TopProb = n, p
		}
	}
	o.Trajectory = o.Trajectory[:0]
	for _, t := range rd.Turns {
		o.Trajectory = append(o.Trajectory, mass(rd.Names, t, s.allowed))
	}
	if n := len(o.Trajectory); n > 0 {
		o.Allowed = o.Trajectory[n-1]
	}
}

// reanchor generates again with the spec's system prompt placed once more
// right before the last user turn, where the model reads it freshest; a
// template that allows no system message there gets the prompt as a
// reminder at the start of that user turn instead.
func (g *Guard) reanchor(ctx context.Context, msgs []chat.Message, gen func(context.Context, []chat.Message) (string, error)) (string, error) {
	i := len(msgs) - 1
	for i >= 0 && msgs[i].Role != chat.RoleUser {
		i--
	}
	if i < 0 {
		return gen(ctx, msgs)
	}
	anchored := slices.Concat(msgs[:i], []chat.Message{{Role: chat.RoleSystem, Content: g.Spec.SystemPrompt}}, msgs[i:])
	reply, err := gen(ctx, anchored)
	if err == nil || ctx.Err() != nil {
		return reply, err
	}
	reminded := slices.Clone(msgs)
	reminded[i].Content = "(" + strings.TrimSpace(g.Spec.SystemPrompt) + ")\n\n" + msgs[i].Content
	return gen(ctx, reminded)
}

// revise asks the critic to rewrite the draft so that it keeps the spec's
// principles.
func (g *Guard) revise(ctx context.Context, msgs []chat.Message, draft string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s is an AI assistant deployed with these principles:\n", g.Spec.Name)
	for _, p := range g.Spec.Principles {
		fmt.Fprintf(&b, "- %s\n", p)
	}
	b.WriteString("\nThe conversation so far:\n")
	for _, m := range msgs {
		if m.Role == chat.RoleSystem {
			continue
		}
		fmt.Fprintf(&b, "%s: %s\n", m.Role, m.Content)
	}
	fmt.Fprintf(&b, "\nDraft reply by %s, which breaks its principles:\n%s\n\nWrite the reply %s should give instead: answer the user within every principle. Write only the reply.", g.Spec.Name, draft, g.Spec.Name)
	return g.Critic(ctx, []chat.Message{{Role: chat.RoleUser, Content: b.String()}})
}

// worldOf returns the persona world of a library: the process's own for
// the embedded library, built once.
func worldOf(lib *personas.Library) (*world.World, error) {
	if lib == personas.Default() {
		return world.Default(), nil
	}
	return world.New(lib)
}

// Readers are what a guard's monitor may read with: the served model's
// engine (white-box) and a judge backend (black-box); either may be nil
// when the spec's monitor does not need it.
type Readers struct {
	Engine *engine.Engine
	// Classifier is the served model's posterior classifier file (for
	// monitor: activations), "" when its directory has none.
	Classifier string
	Judge      backend.Backend
	// Critic rewrites drafts for the revise action.
	Critic backend.Backend
}

// sameNames reports whether a and b hold the same names, in any order.
func sameNames(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// NewGuard builds the guard a spec asks for: its monitor over the spec's
// persona library, with the spec's switch rate.
func NewGuard(s *Spec, up Readers) (*Guard, error) {
	hyps, err := posterior.FromLibrary(s.Library, posterior.LibraryOptions{})
	if err != nil {
		return nil, err
	}
	eps := posterior.DefaultSwitchRate
	if s.SwitchRate != nil {
		eps = *s.SwitchRate
	}
	ctls, err := loadControls(s, up.Engine)
	if err != nil {
		return nil, err
	}
	g := &Guard{Spec: s, controls: ctls}
	var oracleWorld *world.World
	switch s.Monitor {
	case "posterior":
		if up.Engine == nil {
			return nil, fmt.Errorf("%w: the posterior monitor reads the served model's own probabilities: it needs the embedded engine as the upstream", ErrGuard)
		}
		l, err := posterior.NewLikelihood(up.Engine, hyps)
		if err != nil {
			return nil, err
		}
		l.SwitchRate, l.WholeConversation = eps, s.WholeConversation
		g.Monitor = &PosteriorMonitor{Method: "posterior", P: l}
	case "activations":
		if up.Engine == nil || up.Classifier == "" {
			return nil, fmt.Errorf("%w: the activations monitor reads the served model's activations with the classifier its directory carries (%s; make one with 'persona posterior fit')", ErrGuard, posterior.ClassifierFile)
		}
		ap, err := posterior.LoadActivationPosterior(up.Engine, up.Classifier)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrGuard, err)
		}
		if lib := s.Library.Names(); !sameNames(ap.C.Names, lib) {
			return nil, fmt.Errorf("%w: the classifier %s reads personas %v, the spec's library has %v", ErrGuard, up.Classifier, ap.C.Names, lib)
		}
		ap.SwitchRate = eps
		g.Monitor = &PosteriorMonitor{Method: "activations", P: ap}
	case "judge":
		if up.Judge == nil {
			return nil, fmt.Errorf("%w: the judge monitor needs a judge backend", ErrGuard)
		}
		g.Monitor = &PosteriorMonitor{Method: "judge", P: &posterior.JudgePosterior{J: posterior.NewJudge(up.Judge), Hyps: hyps, SwitchRate: eps}}
	case "oracle":
		if oracleWorld, err = worldOf(s.Library); err != nil {
			return nil, fmt.Errorf("%w: the oracle monitor needs a persona world library: %v", ErrGuard, err)
		}
		g.Monitor = &OracleMonitor{O: oracleWorld.Oracle()}
	case "none":
		g.Monitor = NoMonitor{}
	}
	if len(s.traits) > 0 {
		switch {
		case up.Judge != nil:
			j := posterior.NewJudge(up.Judge)
			g.Rate = func(ctx context.Context, t *vectors.TraitSpec, q, a string) (float64, error) {
				if strings.TrimSpace(a) == "" {
					return 0, nil
				}
				v, _, err := j.Rate(ctx, t.JudgePrompt(q, a))
				return v, err
			}
		case oracleWorld != nil:
			sc := vectors.OracleScorer{Oracle: oracleWorld.Oracle()}
			g.Rate = func(ctx context.Context, t *vectors.TraitSpec, q, a string) (float64, error) {
				v, err := sc.Score(ctx, t, q, a)
				return v.Trait, err
			}
		default:
			return nil, fmt.Errorf("%w: trait bounds are scored by a judge backend (or, with monitor oracle, the organism world's oracle)", ErrGuard)
		}
	}
	if up.Critic != nil {
		critic := up.Critic
		g.Critic = func(ctx context.Context, msgs []chat.Message) (string, error) {
			resp, err := critic.Chat(ctx, backend.Request{Messages: msgs, MaxTokens: 512, Temperature: 0})
			if err != nil {
				return "", err
			}
			return strings.TrimSpace(resp.Content), nil
		}
	}
	return g, g.Check()
}
