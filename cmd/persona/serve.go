package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"persona/backend"
	"persona/engine"
	"persona/sample"
)

func newServeCmd() *cobra.Command {
	var (
		modelPath, tokPath, addr, name string
		concurrency                    int
		maxBody                        int64
		grace                          time.Duration
		wf                             watermarkFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve a model over an OpenAI-compatible HTTP API",
		Long: `Serve a model over the OpenAI Chat Completions API, so tools written for
OpenAI (Inspect, promptfoo, garak, the openai clients) can talk to it.

Endpoints: GET /v1/models, POST /v1/chat/completions (with "stream": true,
logprobs and top_logprobs), POST /v1/completions (raw prompts), GET /health,
and GET /metrics in the Prometheus text format. With --watermark every
generation is marked with the key, /v1/models names the key id, and POST
/v1/watermark/detect tests a text ({"text": ...} or {"ids": [...]}, optional
"window" and "alpha") without the key leaving the server.

The server listens on --addr (127.0.0.1:8080; use :8080 to accept other
machines). SIGINT or SIGTERM stops accepting requests and lets running ones
finish for up to --grace before closing them; a second signal exits at once.`,
		Example: `  persona serve --model DIR
  persona serve --model model.gguf --addr :8080 --concurrency 2
  persona serve --model DIR --watermark gumbel --key-file wm.key
  curl -s localhost:8080/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}]}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if modelPath == "" {
				return usageErr(errors.New("--model is required (a Hugging Face directory or a GGUF file)"))
			}
			if concurrency < 1 || maxBody < 1 || grace < 0 {
				return usageErr(fmt.Errorf("--concurrency (%d) and --max-body (%d) must be ≥ 1 and --grace (%v) ≥ 0", concurrency, maxBody, grace))
			}
			wm, err := wf.load()
			if err != nil {
				return err
			}
			e, err := loadEngine(modelPath, engine.Options{Tokenizer: tokPath})
			if err != nil {
				return err
			}
			defer e.Close()
			if e.Template == nil {
				fmt.Fprintf(os.Stderr, "persona serve: %s has no chat template; only /v1/completions will work\n", modelPath)
			}
			if name == "" {
				name = filepath.Base(filepath.Clean(modelPath))
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return usageErr(fmt.Errorf("listen on %s: %w", addr, err))
			}
			b := backend.NewEngine(e, name, concurrency)
			b.Watermark = wm
			s := backend.NewServer(b)
			s.MaxBodyBytes = maxBody
			s.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
			fmt.Fprintf(os.Stderr, "persona serve: model %q on http://%s/v1\n", name, ln.Addr())
			if wm != nil {
				fmt.Fprintf(os.Stderr, "persona serve: %s watermark, key id %s\n", wm.Scheme, sample.KeyID(wm.Key))
			}
			if err := backend.Serve(cmd.Context(), ln, s, grace); err != nil {
				return backendErr(err)
			}
			fmt.Fprintln(os.Stderr, "persona serve: stopped")
			return nil
		},
	}
	f := cmd.Flags()
	modelFlag(f, &modelPath, "model: Hugging Face directory or GGUF file")
	tokenizerFlag(f, &tokPath)
	f.StringVar(&addr, "addr", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free one)")
	f.StringVar(&name, "name", "", "model id clients use (default: the model's file or directory name)")
	f.IntVar(&concurrency, "concurrency", 1, "generations run at once (more queue)")
	f.Int64Var(&maxBody, "max-body", 4<<20, "largest request body accepted, in bytes")
	f.DurationVar(&grace, "grace", 30*time.Second, "how long running requests may finish after SIGINT/SIGTERM")
	wf.register(f, "watermark")
	return cmd
}
