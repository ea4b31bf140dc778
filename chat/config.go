package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Config is what a chat template needs from a Hugging Face
// tokenizer_config.json: the template itself and the special tokens it
// refers to. AddBOS and AddEOS say whether the tokenizer adds BOS/EOS when it
// encodes text; the template's own output never includes those, so the
// tokenizer stage must honour them (and must not add a second BOS when the
// template already wrote bos_token, as Llama 3's does).
type Config struct {
	// Template is the default chat template ("" when the model has none,
	// as base models often do).
	Template string
	// Templates holds every named template when the file lists several
	// (for example "default", "tool_use", "rag"); nil otherwise.
	Templates map[string]string
	// BOS and EOS are the bos_token and eos_token strings ("" when unset).
	BOS, EOS string
	// AddBOS and AddEOS are add_bos_token and add_eos_token.
	AddBOS, AddEOS bool
}

// LoadConfig reads a tokenizer_config.json. chat_template may be a string or
// a list of {"name", "template"} (Template is then the one named "default");
// bos_token and eos_token may be strings or {"content": ...} objects. When
// the file has no chat_template but a chat_template.jinja sits next to it (the
// newer Hugging Face layout), that file is used. A config with no template at
// all is not an error: Template is "".
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := parseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if cfg.Template == "" && cfg.Templates == nil {
		side := filepath.Join(filepath.Dir(path), "chat_template.jinja")
		if b, err := os.ReadFile(side); err == nil {
			cfg.Template = string(b)
		}
	}
	return cfg, nil
}

// parseConfig decodes the fields of tokenizer_config.json this package uses.
func parseConfig(data []byte) (*Config, error) {
	var raw struct {
		ChatTemplate json.RawMessage `json:"chat_template"`
		BOS          json.RawMessage `json:"bos_token"`
		EOS          json.RawMessage `json:"eos_token"`
		AddBOS       *bool           `json:"add_bos_token"`
		AddEOS       *bool           `json:"add_eos_token"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, err
	}
	cfg := &Config{}
	var err error
	if cfg.BOS, err = tokenString(raw.BOS); err != nil {
		return nil, fmt.Errorf("bos_token: %w", err)
	}
	if cfg.EOS, err = tokenString(raw.EOS); err != nil {
		return nil, fmt.Errorf("eos_token: %w", err)
	}
	cfg.AddBOS = raw.AddBOS != nil && *raw.AddBOS
	cfg.AddEOS = raw.AddEOS != nil && *raw.AddEOS
	if len(raw.ChatTemplate) == 0 || string(raw.ChatTemplate) == "null" {
		return cfg, nil
	}
	if raw.ChatTemplate[0] == '"' {
		if err := json.Unmarshal(raw.ChatTemplate, &cfg.Template); err != nil {
			return nil, fmt.Errorf("chat_template: %w", err)
		}
		return cfg, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw.ChatTemplate, &named); err != nil {
		return nil, fmt.Errorf("chat_template: want a string or a list of {name, template}: %w", err)
	}
	cfg.Templates = make(map[string]string, len(named))
	for _, t := range named {
		cfg.Templates[t.Name] = t.Template
	}
	cfg.Template = cfg.Templates["default"]
	return cfg, nil
}

// tokenString decodes a special token given as a string, as
// {"content": "..."} (the AddedToken form), or as null.
func tokenString(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil || obj.Content == nil {
		return "", errors.New(`want a string or an object with "content"`)
	}
	return *obj.Content, nil
}
