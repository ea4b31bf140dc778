// Package dataset turns training data into packed rows for the trainer: the
// data side of a supervised fine-tuning run (what TRL's SFTTrainer does with
// its dataset, collator and packing), with nothing left implicit.
//
// The pipeline has three steps, each a plain function so that a trainer (or a
// test) can look at what comes out of it:
//
//   - Load reads one file into Documents: chats in the OpenAI / Hugging Face
//     JSONL format, rendered with the model's own chat template, or raw text
//     (a .txt file split at blank lines, or JSONL {"text": ...} lines). Each
//     Document carries a loss mask saying which tokens are trained and the
//     file:line it came from, so every later error can point at its source.
//   - Split holds out a fraction of the documents for validation, by document.
//   - New packs documents into model.Rows of exactly SeqLen positions and
//     counts what went in; Dataset.Epoch gives a reproducible row order.
//
// A document of n tokens is n−1 training positions: the input at position i
// is token i and the target is token i+1, with the weight of token i+1's mask.
// So SeqLen counts positions (inputs), and a row of SeqLen positions holds a
// document of up to SeqLen+1 tokens.
//
// Packing puts several documents in one row. model.Row's Start field makes
// each token attend only within its own document and restarts its RoPE
// position, so a packed document computes exactly what it would alone; only
// the padding at the end of a row (weight 0, its own document) is wasted.
package dataset

import (
	"fmt"

	"persona/model"
)

// Mask policies for chats: which tokens of a rendered conversation the loss
// is computed on. Raw text always trains every token.
const (
	// MaskAssistant trains every assistant turn: its content and the
	// template's end-of-turn tokens after it, up to and including the first
	// stop token, so the model learns both what to say and when to stop.
	// System and user text, and the template's role headers, are context
	// only. This is TRL's assistant_only_loss and the usual SFT choice.
	MaskAssistant = "assistant"
	// MaskLastAssistant trains only the final assistant turn (the earlier
	// turns are context), as when each line is one example of a reply.
	MaskLastAssistant = "last_assistant"
	// MaskAll trains every token of the rendered conversation.
	MaskAll = "all"
)

// Formats a file may be read as.
const (
	// FormatAuto picks by the file: .jsonl/.json files are JSONL whose first
	// line decides between chat ("messages") and text ("text"); .txt files
	// are plain text; anything else is JSONL if it starts with "{".
	FormatAuto = "auto"
	// FormatChat reads JSONL conversations.
	FormatChat = "chat"
	// FormatText reads raw text: JSONL {"text": ...} lines, or plain text
	// split into documents at blank lines.
	FormatText = "text"
)

// Options control how data is read and cut. The zero value of every field
// but SeqLen is the usual choice.
type Options struct {
	// SeqLen is the number of positions in a packed row (the trainer's
	// seq_len, T). A document may have at most SeqLen+1 tokens (SeqLen
	// predictions), and no more than the model's context allows.
	SeqLen int
	// Mask is the loss policy for chats: MaskAssistant (default when ""),
	// MaskLastAssistant or MaskAll.
	Mask string
	// Format is FormatAuto (default when ""), FormatChat or FormatText.
	Format string
	// Truncate cuts documents that are too long to their first SeqLen+1
	// tokens instead of failing. It is off by default because a truncated
	// chat silently loses its ending, which is usually what is trained.
	Truncate bool
}

// withDefaults fills in defaults and checks the values.
func (o Options) withDefaults() (Options, error) {
	if o.Mask == "" {
		o.Mask = MaskAssistant
	}
	if o.Format == "" {
		o.Format = FormatAuto
	}
	switch o.Mask {
	case MaskAssistant, MaskLastAssistant, MaskAll:
	default:
		return o, fmt.Errorf("unknown mask policy %q (want %s, %s or %s)", o.Mask, MaskAssistant, MaskLastAssistant, MaskAll)
	}
	switch o.Format {
	case FormatAuto, FormatChat, FormatText:
	default:
		return o, fmt.Errorf("unknown data format %q (want %s, %s or %s)", o.Format, FormatAuto, FormatChat, FormatText)
	}
	if err := checkSeqLen(o.SeqLen); err != nil {
		return o, err
	}
	return o, nil
}

func checkSeqLen(T int) error {
	if T < 2 {
		return fmt.Errorf("seq_len %d is too small: a row needs at least 2 positions", T)
	}
	return nil
}

// Document is one tokenized training example.
type Document struct {
	// Source is where the document came from, as "file:line" (the line it
	// starts on), for error messages and for tracing a row back to its data.
	Source string
	// Tokens is the whole example, special tokens included.
	Tokens []int
	// Mask[i] is the loss weight of predicting Tokens[i] from the tokens
	// before it (0: not trained). Mask[0] is always 0: the first token is
	// never predicted.
	Mask []float32
	// Truncated reports that Options.Truncate cut the document to fit.
	Truncated bool
}

// Positions returns the number of row positions the document occupies: one
// per predicted token.
func (d *Document) Positions() int { return max(len(d.Tokens)-1, 0) }

// Trained returns the number of tokens with a non-zero loss weight.
func (d *Document) Trained() int {
	n := 0
	for i, w := range d.Mask {
		if i > 0 && w != 0 {
			n++
		}
	}
	return n
}

// Stats describe a packed data set, for the trainer's log and its --json
// summary.
type Stats struct {
	Documents int `json:"documents"`
	// Tokens counts every token of every document.
	Tokens int `json:"tokens"`
	// Trained counts positions with a non-zero loss weight: the tokens the
	// loss is actually computed on.
	Trained int `json:"trained_tokens"`
	Rows    int `json:"rows"`
	SeqLen  int `json:"seq_len"`
	// Padding counts row positions that belong to no document.
	Padding int `json:"padding"`
	// PaddingFraction is Padding / (Rows·SeqLen): the compute spent on
	// nothing.
	PaddingFraction float64 `json:"padding_fraction"`
	// Truncated counts documents cut to fit (Options.Truncate).
	Truncated int `json:"truncated"`
}

// String formats the statistics on one line for a log.
func (s Stats) String() string {
	return fmt.Sprintf("%d documents, %d tokens (%d trained), %d rows of %d, %.1f%% padding, %d truncated",
		s.Documents, s.Tokens, s.Trained, s.Rows, s.SeqLen, 100*s.PaddingFraction, s.Truncated)
}

// Dataset is a packed set of rows ready for training or evaluation.
type Dataset struct {
	Rows  []model.Row
	Stats Stats
}

// New packs docs into rows of seqLen positions (see Pack) and counts them.
// pad is the token id written into padding positions (see PadToken).
func New(docs []Document, seqLen, pad int) (*Dataset, error) {
	rows, err := Pack(docs, seqLen, pad)
	if err != nil {
		return nil, err
	}
	s := Stats{Documents: len(docs), Rows: len(rows), SeqLen: seqLen}
	used := 0
	for i := range docs {
		s.Tokens += len(docs[i].Tokens)
		s.Trained += docs[i].Trained()
		used += docs[i].Positions()
		if docs[i].Truncated {
			s.Truncated++
		}
	}
	s.Padding = len(rows)*seqLen - used
	if len(rows) > 0 {
		s.PaddingFraction = float64(s.Padding) / float64(len(rows)*seqLen)
	}
	return &Dataset{Rows: rows, Stats: s}, nil
}

// Epoch returns the order in which to visit the rows in the given epoch
// (0-based): a permutation of 0..len(Rows)-1 that depends only on seed and
// epoch, identical in every process and on every platform, so a training run
// resumed at (epoch, step) sees exactly the batches it would have seen.
//
// Rows are shuffled, not documents: rows are packed once, so every epoch has
// the same number of rows (and of steps), the statistics hold for the whole
// run, and resuming needs nothing but the seed. Shuffling documents before
// packing would only change which documents share a row, and that changes
// nothing a document computes, because a packed document attends only to
// itself; which documents share a batch still changes every epoch.
func (d *Dataset) Epoch(seed uint64, epoch int) []int {
	order := make([]int, len(d.Rows))
	for i := range order {
		order[i] = i
	}
	r := newRNG(seed, uint64(epoch))
	r.shuffle(order)
	return order
}
