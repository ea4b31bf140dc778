package vectors

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"persona/chat"
	"persona/engine"
	"persona/internal/parallel"
	"persona/internal/stats"
	"persona/sample"
)

// ScreenOptions say how a fine-tuning dataset is screened.
type ScreenOptions struct {
	// Layer is the layer whose projection is compared.
	Layer int
	// MaxTokens bounds the model's own reply (default 64); it is greedy, so
	// a screening is reproducible.
	MaxTokens int
	// By is the score samples are flagged by: "difference" (default; the
	// sample's projection minus the model's own reply's, the persona-vectors
	// recipe) or "response" (the sample's projection alone, which ranked
	// trait-laden samples better on the organism; docs/measurements.md).
	By string
	// Threshold flags samples whose score exceeds it; nil uses the
	// dataset's median plus three robust standard deviations (1.4826 ×
	// the median absolute deviation), so a few outliers stand out whatever
	// the vector's scale.
	Threshold *float64
	Workers   int
	Progress  func(done, total int)
}

// Screened is one sample's screening.
type Screened struct {
	Sample int `json:"sample"` // 1-based line of the dataset
	// Given is the projection of the sample's response (its last assistant
	// message), Own that of the model's own greedy reply to the same
	// conversation; Diff = Given − Own says how far training on the sample
	// would push the model along the trait.
	Given   float64 `json:"given"`
	Own     float64 `json:"own"`
	Diff    float64 `json:"diff"`
	Flagged bool    `json:"flagged"`
}

// score is what a sample is flagged by.
func (s Screened) score(by string) float64 {
	if by == ScreenByResponse {
		return s.Given
	}
	return s.Diff
}

// The scores a screening can flag by.
const (
	ScreenByDifference = "difference"
	ScreenByResponse   = "response"
)

// Screening is a dataset's screening against one trait vector.
type Screening struct {
	Vectors   string     `json:"vectors"`
	Layer     int        `json:"layer"`
	By        string     `json:"by"`
	Threshold float64    `json:"threshold"`
	Flagged   int        `json:"flagged"`
	Score     float64    `json:"score"` // mean score: the dataset's push along the trait
	Samples   []Screened `json:"samples"`
}

// ErrScreenBy is returned for a score a screening cannot flag by.
var ErrScreenBy = errors.New("screening by")

// ErrDataset is returned for a dataset that cannot be screened.
var ErrDataset = errors.New("bad dataset")

// Screen scores every sample of a fine-tuning dataset by its projection
// difference on s: the sample's response projected at the layer, minus the
// model's own reply to the same conversation. Samples that would teach the
// model more of the trait than it already shows stand out; their share and
// the mean difference say what the dataset as a whole would do.
func Screen(ctx context.Context, e *engine.Engine, s *Set, chats []chat.Chat, o ScreenOptions) (*Screening, error) {
	if _, err := s.Vector(o.Layer); err != nil {
		return nil, err
	}
	if o.MaxTokens <= 0 {
		o.MaxTokens = 64
	}
	if o.By == "" {
		o.By = ScreenByDifference
	}
	if o.By != ScreenByDifference && o.By != ScreenByResponse {
		return nil, fmt.Errorf("%w %q: want %s or %s", ErrScreenBy, o.By, ScreenByDifference, ScreenByResponse)
	}
	if len(chats) == 0 {
		return nil, fmt.Errorf("%w: no samples", ErrDataset)
	}
	out := &Screening{Vectors: s.Name, Layer: o.Layer, By: o.By, Samples: make([]Screened, len(chats))}
	err := parallel.ForProgress(ctx, max(o.Workers, 1), len(chats), func(i int) error {
		msgs := chats[i].Messages
		last := len(msgs) - 1
		if last < 1 || msgs[last].Role != chat.RoleAssistant {
			return fmt.Errorf("%w: sample %d does not end with an assistant response to screen", ErrDataset, i+1)
		}
		act, err := e.Capture(ctx, msgs, engine.CaptureOptions{Layers: []int{o.Layer}})
		if err != nil {
			return fmt.Errorf("sample %d: %w", i+1, err)
		}
		turn := act.Turns[len(act.Turns)-1]
		if turn.Mean == nil {
			return fmt.Errorf("%w: sample %d has an empty response", ErrDataset, i+1)
		}
		given, err := s.Project(o.Layer, turn.Mean[0])
		if err != nil {
			return err
		}
		r, err := e.Reply(ctx, msgs[:last], engine.ReplyOptions{MaxTokens: o.MaxTokens, Capture: true, Layers: []int{o.Layer},
			Sampling: sample.Params{Temperature: 0}})
		if err != nil {
			return fmt.Errorf("sample %d: %w", i+1, err)
		}
		own := 0.0
		if r.Means[0] != nil {
			if own, err = s.Project(o.Layer, r.Means[0]); err != nil {
				return err
			}
		}
		out.Samples[i] = Screened{Sample: i + 1, Given: given, Own: own, Diff: given - own}
		return nil
	}, o.Progress)
	if err != nil {
		return nil, err
	}
	diffs := make([]float64, len(out.Samples))
	for i, x := range out.Samples {
		diffs[i] = x.score(o.By)
		out.Score += diffs[i]
	}
	out.Score /= float64(len(diffs))
	if o.Threshold != nil {
		out.Threshold = *o.Threshold
	} else {
		slices.Sort(diffs)
		med := stats.Quantile(diffs, 0.5)
		dev := make([]float64, len(diffs))
		for i, d := range diffs {
			dev[i] = math.Abs(d - med)
		}
		slices.Sort(dev)
		out.Threshold = med + 3*1.4826*stats.Quantile(dev, 0.5)
	}
	for i := range out.Samples {
		if out.Samples[i].score(o.By) > out.Threshold {
			out.Samples[i].Flagged = true
			out.Flagged++
		}
	}
	return out, nil
}
