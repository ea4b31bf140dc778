package main

import (
	"context"
	"crypto/tls"
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
	"persona/gateway"
	"persona/sample"
)

func newServeCmd() *cobra.Command {
	var (
		modelPath, tokPath, addr, name string
		keysPath, tlsCert, tlsKey      string
		logDSN, configPath             string
		specPaths                      []string
		judgeName, criticName          string
		retention                      time.Duration
		concurrency, queue             int
		maxBody                        int64
		grace, deadline, bodyTimeout   time.Duration
		insecure                       bool
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

The server listens on --addr (127.0.0.1:8080). To accept other machines
(--addr :8080) it needs API keys (--keys FILE, made with persona keys add;
clients send Authorization: Bearer KEY) or an explicit --insecure, and should
get TLS (--tls-cert, --tls-key). --concurrency generations run at once and
--queue more wait; beyond that a request gets 429 with Retry-After at once.
Bodies must arrive within --body-timeout and a request ends after --deadline.
Control tokens typed in messages are text, never turn boundaries.

SIGINT or SIGTERM stops accepting requests and lets running ones finish for
up to --grace before closing them; a second signal exits at once.`,
		Example: `  persona serve --model DIR
  persona keys add --keys keys.json --id alice --rate 2 --concurrency 1
  persona serve --model model.gguf --addr :8080 --keys keys.json --tls-cert c.pem --tls-key k.pem
  persona serve --model DIR --watermark gumbel --key-file wm.key
  curl -s localhost:8080/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}]}'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			wm, err := wf.load()
			if err != nil {
				return err
			}
			if concurrency < 1 || maxBody < 1 || queue < 0 || grace < 0 || deadline < 0 || bodyTimeout <= 0 {
				return usageErr(fmt.Errorf("--concurrency (%d) and --max-body (%d) must be ≥ 1, --queue (%d), --grace (%v) and --deadline (%v) ≥ 0, --body-timeout (%v) > 0",
					concurrency, maxBody, queue, grace, deadline, bodyTimeout))
			}
			if (tlsCert == "") != (tlsKey == "") {
				return usageErr(errors.New("--tls-cert and --tls-key go together"))
			}
			var keys *gateway.Keys
			if keysPath != "" {
				if keys, err = gateway.LoadKeys(keysPath); err != nil {
					return usageErr(err)
				}
				if len(keys.Keys) == 0 {
					return usageErr(fmt.Errorf("%s holds no keys; add one with persona keys add --keys %s", keysPath, keysPath))
				}
			} else if !insecure && !loopback(addr) {
				return usageErr(fmt.Errorf("--addr %s accepts other machines: give --keys FILE (persona keys add) so only key holders use the model, or --insecure to serve it to anyone", addr))
			}
			var spec *gateway.Spec
			specPath := ""
			if len(specPaths) > 0 {
				specPath = specPaths[0]
				if spec, err = gateway.LoadSpec(specPath); err != nil {
					return usageErr(err)
				}
				if spec.Upstream.Model != "" && !cmd.Flags().Changed("model") {
					modelPath = spec.Upstream.Model
				}
				if sw := spec.Watermark; sw != nil && wm == nil {
					key, err := sw.Key(specPath)
					if err != nil {
						return usageErr(err)
					}
					wm = &sample.Watermark{Scheme: sw.Scheme, Key: key, Context: sw.Context}
					if err := (sample.Params{Temperature: 1, Watermark: wm}).Validate(); err != nil {
						return usageErr(err)
					}
				}
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			if wm != nil && spec != nil && spec.Upstream.Backend != "" {
				return usageErr(errors.New("a watermark is drawn while sampling: it needs the embedded engine, not an API upstream"))
			}
			up, readers, closeUp, err := openUpstream(spec, modelPath, tokPath, name, configPath, concurrency)
			if err != nil {
				return err
			}
			defer closeUp()
			var s *backend.Server
			if b, ok := up.(*backend.Engine); ok {
				if b.E.Template == nil {
					fmt.Fprintf(os.Stderr, "persona serve: %s has no chat template; only /v1/completions will work\n", modelPath)
				}
				b.Watermark = wm
				s = backend.NewServer(b)
			}
			var guarded *gateway.Guarded
			if spec != nil {
				if guarded, err = openGuard(cmd.Context(), spec, up, readers, logDSN, retention, configPath, judgeName, criticName); err != nil {
					return err
				}
				if guarded.Log != nil {
					defer guarded.Log.Close()
				}
				for _, p := range specPaths[1:] {
					if err := guarded.AddSpec(p); err != nil {
						return usageErr(err)
					}
				}
				if s == nil {
					s = backend.NewChatServer(guarded)
				}
				s.Chat = guarded
			}
			s.MaxBodyBytes = maxBody
			s.Log = log
			opts := gateway.Options{Keys: keys, Slots: concurrency, Queue: queue, Deadline: deadline,
				BodyTimeout: bodyTimeout, MaxBody: maxBody, Logger: log, Persona: guarded}
			if guarded != nil {
				opts.Log = guarded.Log
			}
			if wm != nil {
				opts.Watermark = map[string]string{"scheme": wm.Scheme, "key_id": sample.KeyID(wm.Key)}
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return usageErr(fmt.Errorf("listen on %s: %w", addr, err))
			}
			scheme := "http"
			if tlsCert != "" {
				cert, err := tls.LoadX509KeyPair(tlsCert, tlsKey)
				if err != nil {
					ln.Close()
					return usageErr(fmt.Errorf("TLS: %w", err))
				}
				ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
				scheme = "https"
			}
			fmt.Fprintf(os.Stderr, "persona serve: model %q on %s://%s/v1\n", s.Chat.Model(), scheme, ln.Addr())
			if keys != nil {
				fmt.Fprintf(os.Stderr, "persona serve: %d API keys from %s\n", len(keys.Keys), keysPath)
			}
			if guarded != nil {
				fmt.Fprintf(os.Stderr, "persona serve: brand persona %q (%s monitor, %d rails); card at /v1/persona, live page at /ui\n",
					spec.Name, spec.Monitor, len(spec.Rails))
			}
			if wm != nil {
				fmt.Fprintf(os.Stderr, "persona serve: %s watermark, key id %s\n", wm.Scheme, sample.KeyID(wm.Key))
			}
			if err := backend.Serve(cmd.Context(), ln, gateway.New(s, opts), grace); err != nil {
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
	f.IntVar(&concurrency, "concurrency", 1, "generations run at once")
	f.IntVar(&queue, "queue", 16, "requests that may wait for a generation slot; more get 429")
	f.DurationVar(&deadline, "deadline", 5*time.Minute, "longest a generation request may take (0: no limit)")
	f.DurationVar(&bodyTimeout, "body-timeout", 10*time.Second, "longest a request body may take to arrive")
	f.StringVar(&keysPath, "keys", "", "API key file (persona keys add); clients must send one of its keys")
	f.BoolVar(&insecure, "insecure", false, "serve a non-loopback --addr without API keys")
	f.StringVar(&tlsCert, "tls-cert", "", "TLS certificate (PEM) to serve HTTPS")
	f.StringVar(&tlsKey, "tls-key", "", "TLS private key (PEM)")
	f.StringArrayVar(&specPaths, "spec", nil, "brand persona spec YAML: serve the model as that persona, monitored and held by rails; repeat to serve more specs, which requests choose with \"persona\": {\"spec\": NAME} where the first spec's overrides list spec")
	f.StringVar(&logDSN, "log", "gateway.db", "conversation log with --spec: a SQLite file or postgres:// DSN; \"none\" keeps no log")
	f.DurationVar(&retention, "retention", 30*24*time.Hour, "how long the conversation log keeps turns")
	f.StringVar(&configPath, "backend", "", "backend config YAML with the judge (--judge) and critic (--critic) the spec uses")
	f.StringVar(&judgeName, "judge", "", "backend config entry that rates turns for a spec with monitor: judge")
	f.StringVar(&criticName, "critic", "", "backend config entry that rewrites replies for the revise action")
	f.Int64Var(&maxBody, "max-body", 4<<20, "largest request body accepted, in bytes")
	f.DurationVar(&grace, "grace", 30*time.Second, "how long running requests may finish after SIGINT/SIGTERM")
	wf.register(f, "watermark")
	return cmd
}

// loopback reports whether addr only accepts connections from this machine.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// openGuard builds what serves a spec: the guard with its monitor, the
// judge and critic backends it names, and the conversation log (pruned now
// and every hour).
// openUpstream opens what a deployment serves: the spec's API backend
// (from the --backend config), or the embedded engine on modelPath.
func openUpstream(spec *gateway.Spec, modelPath, tokPath, name, configPath string, concurrency int) (backend.Backend, gateway.Readers, func(), error) {
	var readers gateway.Readers
	if spec != nil && spec.Upstream.Backend != "" {
		// A model API: chats only, read by a judge.
		if configPath == "" {
			return nil, readers, nil, usageErr(fmt.Errorf("the spec's upstream is backend %q: give the --backend config that defines it", spec.Upstream.Backend))
		}
		bk, closer, err := openBackend(configPath, spec.Upstream.Backend)
		if err != nil {
			return nil, readers, nil, err
		}
		return bk, readers, func() { closer.Close() }, nil
	}
	e, err := loadEngine(modelPath, engine.Options{Tokenizer: tokPath})
	if err != nil {
		return nil, readers, nil, err
	}
	if name == "" {
		name = filepath.Base(filepath.Clean(modelPath))
	}
	readers.Engine, readers.Classifier = e, modelClassifier(modelPath)
	return backend.NewEngine(e, name, concurrency), readers, func() { e.Close() }, nil
}

func openGuard(ctx context.Context, spec *gateway.Spec, up backend.Backend, readers gateway.Readers, logDSN string, retention time.Duration, configPath, judgeName, criticName string) (*gateway.Guarded, error) {
	for _, c := range []struct {
		name string
		into *backend.Backend
	}{{judgeName, &readers.Judge}, {criticName, &readers.Critic}} {
		if c.name == "" {
			continue
		}
		if configPath == "" {
			return nil, usageErr(errors.New("--judge and --critic name entries of a --backend config"))
		}
		bk, _, err := openBackend(configPath, c.name)
		if err != nil {
			return nil, err
		}
		*c.into = bk
	}
	guard, err := gateway.NewGuard(spec, readers)
	if err != nil {
		return nil, usageErr(err)
	}
	g := &gateway.Guarded{Up: up, Guard: guard, SpecPath: spec.File, Readers: readers}
	if logDSN == "none" {
		return g, nil
	}
	if retention <= 0 {
		return nil, usageErr(fmt.Errorf("--retention %v must be > 0", retention))
	}
	if g.Log, err = gateway.OpenLog(ctx, logDSN); err != nil {
		return nil, usageErr(err)
	}
	go func() {
		for {
			g.Log.Prune(ctx, retention)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Hour):
			}
		}
	}()
	return g, nil
}
