package backend

// persona serve checked with a real client: the official openai npm package
// (tools/openai-client, pinned), run by node. Install: bash tools/openai-client/install.sh.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"persona/internal/testref"
)

func TestOpenAINpmClient(t *testing.T) {
	dir := testref.OpenAIClient(t)
	ts, _ := startServer(t)
	cmd := exec.Command("node", filepath.Join(dir, "client.mjs"), ts.URL+"/v1", "tiny-qwen3")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client.mjs: %v\n%s", err, out)
	}
	var got struct {
		Models []string
		Chat   struct {
			Text         string
			FinishReason string `json:"finish_reason"`
			Logprobs     []float64
			Top          []int
			Usage        struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		Stream struct {
			Text         string
			FinishReason string `json:"finish_reason"`
			Chunks       int
			Logprobs     []float64
			Usage        *struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		Completion struct {
			Text         string
			FinishReason string `json:"finish_reason"`
		}
		Error *struct {
			Status int
			Type   string
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(got.Models) != 1 || got.Models[0] != "tiny-qwen3" {
		t.Errorf("models.list: %v", got.Models)
	}
	if got.Chat.Text == "" || got.Chat.FinishReason == "" || len(got.Chat.Logprobs) == 0 || got.Chat.Usage.CompletionTokens == 0 {
		t.Errorf("chat: %+v", got.Chat)
	}
	for i, n := range got.Chat.Top {
		if n != 2 {
			t.Errorf("token %d: %d top_logprobs, want 2", i, n)
		}
	}
	if got.Stream.Text != got.Chat.Text || got.Stream.FinishReason != got.Chat.FinishReason || got.Stream.Chunks < 3 {
		t.Errorf("stream %+v differs from chat %+v", got.Stream, got.Chat)
	}
	if fmt.Sprint(got.Stream.Logprobs) != fmt.Sprint(got.Chat.Logprobs) {
		t.Errorf("streamed logprobs %v, chat %v", got.Stream.Logprobs, got.Chat.Logprobs)
	}
	if got.Stream.Usage == nil || got.Stream.Usage.CompletionTokens != got.Chat.Usage.CompletionTokens {
		t.Errorf("stream usage %+v", got.Stream.Usage)
	}
	if got.Completion.FinishReason == "" {
		t.Errorf("completion: %+v", got.Completion)
	}
	if got.Error == nil || got.Error.Status != 404 || got.Error.Type != "NotFoundError" {
		t.Errorf("unknown model: %+v", got.Error)
	}
}
