// Package gateway is what stands between persona's model API and the
// internet: API keys with scopes (stored as hashes, compared in constant
// time, never logged), per-key rate and concurrency limits, a bounded
// admission queue that answers 429 at once when it is full, and a deadline
// on every generation. Handler wraps the OpenAI-compatible server of
// package backend with all of it.
package gateway

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"time"

	"persona/internal/fileio"
)

// Scope is what a key may do.
type Scope string

const (
	// ScopeClient may generate, list models, test watermarks and read the
	// persona card.
	ScopeClient Scope = "client"
	// ScopeAdmin may also read metrics and reload the configuration.
	ScopeAdmin Scope = "admin"
)

// Key is one API key as stored: never the secret, only its SHA-256.
type Key struct {
	ID     string  `json:"id"`
	SHA256 string  `json:"sha256"`
	Scopes []Scope `json:"scopes"`
	// Rate is the sustained requests per second the key may make (0: no
	// limit), Burst how many may come at once above it.
	Rate  float64 `json:"rate,omitempty"`
	Burst int     `json:"burst,omitempty"`
	// Concurrency bounds the key's requests in flight (0: no limit).
	Concurrency int       `json:"concurrency,omitempty"`
	Created     time.Time `json:"created"`

	hash [sha256.Size]byte
}

// Has reports whether the key carries scope s; admin includes client.
func (k *Key) Has(s Scope) bool {
	return slices.Contains(k.Scopes, s) || (s == ScopeClient && slices.Contains(k.Scopes, ScopeAdmin))
}

// Keys is a key file: the keys a server accepts.
type Keys struct {
	Path string
	Keys []*Key
}

// ErrKeys is returned for a key file or key that cannot be used.
var ErrKeys = errors.New("bad API keys")

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// secretPrefix marks persona keys, so a leaked one is recognisable in a
// secret scanner.
const secretPrefix = "psk_"

// LoadKeys reads a key file written by Add. A missing file is an empty set.
func LoadKeys(path string) (*Keys, error) {
	ks := &Keys{Path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ks, nil
	} else if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var file struct {
		Keys []*Key `json:"keys"`
	}
	if err := dec.Decode(&file); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKeys, path, err)
	}
	seen := map[string]bool{}
	for i, k := range file.Keys {
		if err := k.check(); err != nil {
			return nil, fmt.Errorf("%w: %s: keys[%d]: %v", ErrKeys, path, i, err)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("%w: %s: key id %q is repeated", ErrKeys, path, k.ID)
		}
		seen[k.ID] = true
	}
	ks.Keys = file.Keys
	return ks, nil
}

func (k *Key) check() error {
	if !keyIDPattern.MatchString(k.ID) {
		return fmt.Errorf("id %q: use 1–64 letters, digits, '.', '_' or '-'", k.ID)
	}
	h, err := hex.DecodeString(k.SHA256)
	if err != nil || len(h) != sha256.Size {
		return fmt.Errorf("key %s: sha256 is not 64 hex digits", k.ID)
	}
	copy(k.hash[:], h)
	if len(k.Scopes) == 0 {
		return fmt.Errorf("key %s has no scope", k.ID)
	}
	for _, s := range k.Scopes {
		if s != ScopeClient && s != ScopeAdmin {
			return fmt.Errorf("key %s: unknown scope %q (want client or admin)", k.ID, s)
		}
	}
	if k.Rate < 0 || k.Burst < 0 || k.Concurrency < 0 {
		return fmt.Errorf("key %s: rate, burst and concurrency must be ≥ 0", k.ID)
	}
	if k.Rate > 0 && k.Burst == 0 {
		k.Burst = max(1, int(k.Rate))
	}
	return nil
}

// Add makes a new key with a fresh random secret, saves the file and
// returns the secret: the only time it is ever shown.
func (ks *Keys) Add(k Key) (secret string, err error) {
	for _, o := range ks.Keys {
		if o.ID == k.ID {
			return "", fmt.Errorf("%w: key id %q exists (revoke it first)", ErrKeys, k.ID)
		}
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	secret = secretPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := sha256.Sum256([]byte(secret))
	k.SHA256 = hex.EncodeToString(h[:])
	k.Created = time.Now().UTC().Truncate(time.Second)
	if err := k.check(); err != nil {
		return "", fmt.Errorf("%w: %v", ErrKeys, err)
	}
	ks.Keys = append(ks.Keys, &k)
	return secret, ks.save()
}

// Revoke removes a key and saves the file.
func (ks *Keys) Revoke(id string) error {
	i := slices.IndexFunc(ks.Keys, func(k *Key) bool { return k.ID == id })
	if i < 0 {
		return fmt.Errorf("%w: no key %q in %s", ErrKeys, id, ks.Path)
	}
	ks.Keys = slices.Delete(ks.Keys, i, i+1)
	return ks.save()
}

func (ks *Keys) save() error {
	data, err := json.MarshalIndent(struct {
		Keys []*Key `json:"keys"`
	}{ks.Keys}, "", "  ")
	if err != nil {
		return err
	}
	if err := fileio.WriteFileAtomic(ks.Path, append(data, '\n')); err != nil {
		return err
	}
	return os.Chmod(ks.Path, 0o600)
}

// Match returns the key whose secret this is, or nil. Every stored hash is
// compared, in constant time, whether or not one already matched: how long
// a check takes says nothing about which keys exist.
func (ks *Keys) Match(secret string) *Key {
	h := sha256.Sum256([]byte(secret))
	var found *Key
	for _, k := range ks.Keys {
		if subtle.ConstantTimeCompare(h[:], k.hash[:]) == 1 {
			found = k
		}
	}
	return found
}
