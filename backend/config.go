package backend

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"persona/engine"
	"persona/internal/yamlstrict"
)

// Config is a backends file:
//
//	backends:
//	  - name: fleet                  # how suites and flags refer to it
//	    kind: openai                 # engine | openai | anthropic | replay
//	    model: Qwen/Qwen3-8B         # API model id; for engine, a model path
//	    endpoints:                   # or base_url: one URL
//	      - http://gpu1:8000/v1
//	      - http://gpu2:8000/v1
//	    api_key_env: VLLM_API_KEY    # the variable's name, never the key
//	    max_concurrency: 32          # in flight across all endpoints
//	    timeout: 120s                # per attempt
//	    retries: 3                   # after the first attempt
//	    record: runs/fleet.jsonl     # append every exchange, keys redacted
//	  - name: ci
//	    kind: replay
//	    replay: testdata/fleet.jsonl
//
// Unknown fields are errors, and every error names the file, line and field.
type Config struct {
	Backends []BackendConfig `yaml:"backends"`
	// File is where the config was read from; relative paths in it
	// (model, record, replay) are relative to its directory.
	File string `yaml:"-"`
}

// BackendConfig is one entry of Config.Backends.
type BackendConfig struct {
	Name           string        `yaml:"name"`
	Kind           string        `yaml:"kind"`
	Model          string        `yaml:"model"`
	BaseURL        string        `yaml:"base_url"`
	APIKeyEnv      string        `yaml:"api_key_env"`
	Endpoints      []string      `yaml:"endpoints"`
	MaxConcurrency int           `yaml:"max_concurrency"`
	Timeout        time.Duration `yaml:"timeout"`
	Retries        *int          `yaml:"retries"`
	Record         string        `yaml:"record"`
	Replay         string        `yaml:"replay"`

	line int // where the entry starts, for errors found when opening it
	file string
}

// Backend kinds.
const (
	KindEngineName    = "engine"
	KindOpenAIName    = "openai"
	KindAnthropicName = "anthropic"
	KindReplayName    = "replay"
)

// Defaults for API backends (engine backends get MaxConcurrency 1, no
// timeout and no retries: a local model fails deterministically).
const (
	DefaultAPIConcurrency = 8
	DefaultAPITimeout     = 2 * time.Minute
	DefaultAPIRetries     = 3
	maxRetries            = 20
)

// ConfigError is a problem in a backends file: "file:line: field: message".
type ConfigError = yamlstrict.Error

// LoadConfig reads and checks a backends file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(data, path)
}

var (
	nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:-]*$`)
	envRe  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ParseConfig decodes a backends file strictly; file names it in errors.
func ParseConfig(data []byte, file string) (*Config, error) {
	root, err := yamlstrict.Root(data)
	if err != nil {
		return nil, yamlstrict.FileError(file, err)
	}
	if root == nil {
		return nil, &ConfigError{File: file, Msg: "empty file; want a list of backends under \"backends:\""}
	}
	cfg := &Config{File: file}
	more, moreLine, err := yamlstrict.Decode(data, cfg)
	if err != nil {
		return nil, yamlstrict.FileError(file, err)
	}
	if more {
		return nil, &ConfigError{File: file, Line: moreLine, Msg: "more than one YAML document"}
	}
	if len(cfg.Backends) == 0 {
		return nil, &ConfigError{File: file, Line: yamlstrict.LineOf(root, "backends"), Field: "backends", Msg: "no backends declared"}
	}
	seen := map[string]int{}
	for i := range cfg.Backends {
		b := &cfg.Backends[i]
		b.file, b.line = file, yamlstrict.LineOf(root, "backends", strconv.Itoa(i))
		fail := func(field, format string, args ...any) error {
			return &ConfigError{File: file, Line: yamlstrict.LineOf(root, "backends", strconv.Itoa(i), field),
				Field: fmt.Sprintf("backends[%d].%s", i, field), Msg: fmt.Sprintf(format, args...)}
		}
		if err := b.check(fail); err != nil {
			return nil, err
		}
		if j, dup := seen[b.Name]; dup {
			return nil, fail("name", "%q is already the name of backends[%d]", b.Name, j)
		}
		seen[b.Name] = i
	}
	return cfg, nil
}

// check validates one entry and fills its defaults.
func (b *BackendConfig) check(fail func(field, format string, args ...any) error) error {
	switch {
	case b.Name == "":
		return fail("name", "required")
	case !nameRe.MatchString(b.Name):
		return fail("name", "%q: use letters, digits, '.', '_', ':' and '-'", b.Name)
	}
	api := b.Kind == KindOpenAIName || b.Kind == KindAnthropicName
	switch b.Kind {
	case KindEngineName, KindOpenAIName, KindAnthropicName:
		if b.Model == "" {
			return fail("model", "required for kind %s", b.Kind)
		}
		if b.Replay != "" {
			return fail("replay", "only for kind replay (to record this backend, use record)")
		}
	case KindReplayName:
		if b.Replay == "" {
			return fail("replay", "required for kind replay: the recording to serve")
		}
	case "":
		return fail("kind", "required: engine, openai, anthropic or replay")
	default:
		return fail("kind", "%q is not one of engine, openai, anthropic, replay", b.Kind)
	}
	if !api {
		for field, set := range map[string]bool{"base_url": b.BaseURL != "", "endpoints": len(b.Endpoints) > 0, "api_key_env": b.APIKeyEnv != ""} {
			if set {
				return fail(field, "not used by kind %s", b.Kind)
			}
		}
	}
	if b.BaseURL != "" && len(b.Endpoints) > 0 {
		return fail("endpoints", "set either base_url or endpoints, not both")
	}
	for j, u := range append([]string{b.BaseURL}, b.Endpoints...) {
		if u == "" && j == 0 {
			continue
		}
		field := "base_url"
		if j > 0 {
			field = fmt.Sprintf("endpoints[%d]", j-1)
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return fail(field, "%q is not an http(s) URL", u)
		}
		if pu.User != nil {
			return fail(field, "credentials in the URL; put the key in the environment variable named by api_key_env")
		}
	}
	if b.APIKeyEnv != "" && !envRe.MatchString(b.APIKeyEnv) {
		// Never echo the value: it may be the key itself, pasted in by mistake.
		return fail("api_key_env", "must be the name of an environment variable (letters, digits, '_'), not the key itself")
	}
	if b.MaxConcurrency < 0 {
		return fail("max_concurrency", "%d must be ≥ 0", b.MaxConcurrency)
	}
	if b.Timeout < 0 {
		return fail("timeout", "%v must be ≥ 0", b.Timeout)
	}
	if b.Retries != nil && (*b.Retries < 0 || *b.Retries > maxRetries) {
		return fail("retries", "%d must be in [0, %d]", *b.Retries, maxRetries)
	}
	if api {
		if b.MaxConcurrency == 0 {
			b.MaxConcurrency = DefaultAPIConcurrency
		}
		if b.Timeout == 0 {
			b.Timeout = DefaultAPITimeout
		}
		if b.Retries == nil {
			r := DefaultAPIRetries
			b.Retries = &r
		}
	}
	return nil
}

// Backend returns the entry called name.
func (c *Config) Backend(name string) (*BackendConfig, error) {
	var names []string
	for i := range c.Backends {
		if c.Backends[i].Name == name {
			return &c.Backends[i], nil
		}
		names = append(names, c.Backends[i].Name)
	}
	return nil, &ConfigError{File: c.File, Msg: fmt.Sprintf("no backend named %q (have: %s)", name, strings.Join(names, ", "))}
}

// OpenNamed opens the entries names, in order, each once however often it
// is named; "" names the first entry. The closer releases them all.
func (c *Config) OpenNamed(names ...string) ([]Backend, io.Closer, error) {
	var closers closeAll
	opened := map[string]Backend{}
	out := make([]Backend, len(names))
	for i, name := range names {
		if name == "" {
			name = c.Backends[0].Name
		}
		if b := opened[name]; b != nil {
			out[i] = b
			continue
		}
		bc, err := c.Backend(name)
		if err != nil {
			closers.Close()
			return nil, nil, err
		}
		b, cl, err := bc.Open()
		if err != nil {
			closers.Close()
			return nil, nil, err
		}
		closers = append(closers, cl.Close)
		opened[name], out[i] = b, b
	}
	return out, closers, nil
}

// Policy is the entry's robustness policy.
func (b *BackendConfig) Policy() Policy {
	p := Policy{MaxConcurrency: b.MaxConcurrency, Timeout: b.Timeout}
	if b.Retries != nil {
		p.Retries = *b.Retries
	}
	return p
}

// path resolves a path in the config relative to the config's directory.
func (b *BackendConfig) path(p string) string {
	if p == "" || filepath.IsAbs(p) || b.file == "" {
		return p
	}
	return filepath.Join(filepath.Dir(b.file), p)
}

// Open builds the backend an entry describes: the client for each endpoint,
// inside Robust, inside a Recorder when record is set. The closer releases
// the model or the recording file. Errors are *ConfigError (exit 2) except
// a model that fails to load.
func (b *BackendConfig) Open() (Backend, io.Closer, error) {
	fail := func(field string, err error) error {
		return &ConfigError{File: b.file, Line: b.line, Field: b.Name + "." + field, Msg: err.Error()}
	}
	var closers closeAll
	var eps []Backend
	switch b.Kind {
	case KindEngineName:
		e, err := engine.Load(b.path(b.Model))
		if err != nil {
			return nil, nil, fail("model", err)
		}
		closers = append(closers, e.Close)
		eps = append(eps, NewEngine(e, filepath.Base(b.Model), b.MaxConcurrency))
	case KindReplayName:
		rp, err := LoadReplay(b.path(b.Replay), b.Name)
		if err != nil {
			return nil, nil, fail("replay", err)
		}
		eps = append(eps, rp)
	case KindOpenAIName, KindAnthropicName:
		urls := b.Endpoints
		if len(urls) == 0 {
			urls = []string{b.BaseURL}
		}
		for i, u := range urls {
			name := b.Name
			if len(urls) > 1 {
				name = fmt.Sprintf("%s#%d", b.Name, i)
			}
			var (
				be  Backend
				err error
			)
			if b.Kind == KindOpenAIName {
				be, err = NewOpenAI(OpenAIConfig{Name: name, Model: b.Model, BaseURL: u, APIKeyEnv: b.APIKeyEnv})
			} else {
				be, err = NewAnthropic(AnthropicConfig{Name: name, Model: b.Model, BaseURL: u, APIKeyEnv: b.APIKeyEnv})
			}
			if err != nil {
				return nil, nil, fail("api_key_env", err)
			}
			eps = append(eps, be)
		}
	}
	var out Backend = NewRobust(b.Name, b.Policy(), eps...)
	if b.Record != "" {
		rec, err := RecordFile(out, b.path(b.Record))
		if err != nil {
			closers.Close()
			return nil, nil, fail("record", err)
		}
		closers = append(closers, rec.Close)
		out = rec
	}
	return out, closers, nil
}

type closeAll []func() error

func (c closeAll) Close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}
