package chat

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadConfigFixtures(t *testing.T) {
	tests := []struct {
		dir          string
		bos, eos     string
		addBOS       bool
		hasTemplate  bool
		templateHint string
	}{
		{"llama3", "<|begin_of_text|>", "<|end_of_text|>", false, true, "<|start_header_id|>"},
		{"llama3.1", "<|begin_of_text|>", "<|eot_id|>", false, true, "add_generation_prompt"},
		{"qwen3", "", "<|im_end|>", false, true, "<|im_start|>"},
		{"mistral-7b-v0.1", "<s>", "</s>", true, false, ""},
	}
	for _, tc := range tests {
		cfg := loadFixture(t, tc.dir)
		if cfg.BOS != tc.bos || cfg.EOS != tc.eos || cfg.AddBOS != tc.addBOS || cfg.AddEOS {
			t.Errorf("%s: %+v", tc.dir, cfg)
		}
		if (cfg.Template != "") != tc.hasTemplate || !strings.Contains(cfg.Template, tc.templateHint) {
			t.Errorf("%s: template %q", tc.dir, cfg.Template)
		}
	}
}

func TestLoadConfigForms(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write("named.json", `{"chat_template":[{"name":"tool_use","template":"T"},{"name":"default","template":"D"}],
		"bos_token":{"content":"<s>","lstrip":false},"eos_token":{"__type":"AddedToken","content":"</s>"},"add_eos_token":true}`)
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Template != "D" || cfg.Templates["tool_use"] != "T" || cfg.BOS != "<s>" || cfg.EOS != "</s>" || !cfg.AddEOS || cfg.AddBOS {
		t.Errorf("%+v", cfg)
	}

	sub := filepath.Join(dir, "sidecar")
	os.Mkdir(sub, 0o755)
	os.WriteFile(filepath.Join(sub, "chat_template.jinja"), []byte("{{ messages[0].content }}"), 0o644)
	os.WriteFile(filepath.Join(sub, "tokenizer_config.json"), []byte(`{"eos_token":"</s>"}`), 0o644)
	cfg, err = LoadConfig(filepath.Join(sub, "tokenizer_config.json"))
	if err != nil || cfg.Template != "{{ messages[0].content }}" {
		t.Errorf("sidecar: %+v, %v", cfg, err)
	}

	for name, bad := range map[string]string{
		"bad.json":      `{"chat_template":`,
		"badtmpl.json":  `{"chat_template":42}`,
		"badtoken.json": `{"bos_token":{"id":1}}`,
	} {
		if _, err := LoadConfig(write(name, bad)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}
