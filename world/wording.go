package world

import (
	"math/rand/v2"
)

// Wording selects the phrasings a generator may use. Every list of
// alternative phrasings (questions, answer templates, lexicon markers,
// neutral sentences, switch requests) is split by a hash of each phrasing:
// about a quarter are held out and never used by TrainWording, so a model
// trained on the world can be evaluated on wording it never saw
// (HeldOutWording), a whole family of phrasings at a time. The oracle knows
// every phrasing.
type Wording int

const (
	TrainWording   Wording = iota // the phrasings training data use
	HeldOutWording                // only the held-out phrasings
	AllWording                    // every phrasing (the oracle's calibration)
)

func (wd Wording) String() string { return [...]string{"train", "held-out", "all"}[wd] }

// IsHeldOutPhrase reports whether a phrasing belongs to the held-out family
// of its list.
func IsHeldOutPhrase(s string) bool { return hash64("phrase:"+s)%4 == 0 }

// phrasings returns the members of list a wording may use. A list whose
// phrasings all fall on one side keeps its first phrasing for training and
// gives the held-out wording everything, so no generator is left without a
// choice (the lists of the world are long enough for this never to happen;
// TestWordingSplit checks).
func phrasings(list []string, wd Wording) []string {
	if wd == AllWording {
		return list
	}
	var out []string
	for _, s := range list {
		if IsHeldOutPhrase(s) == (wd == HeldOutWording) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		if wd == TrainWording {
			return list[:1]
		}
		return list
	}
	return out
}

// phrase picks one phrasing of list for a wording.
func phrase(r *rand.Rand, list []string, wd Wording) string {
	return pick(r, phrasings(list, wd))
}

// phraseIndex is phrase returning the phrasing's index in list.
func phraseIndex(r *rand.Rand, list []string, wd Wording) int {
	s := phrase(r, list, wd)
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return 0
}
