package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"persona/audit"
	"persona/backend"
	"persona/engine"
	"persona/fleet"
	"persona/models"
	"persona/world"
)

func newWorkerCmd() *cobra.Command {
	var (
		dbArg, configPath, modelPath, listen string
		concurrency                          int
		opt                                  fleet.WorkerOptions
		drain                                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "worker",
		Short: "Take audits' samples and studies' items from a shared PostgreSQL queue and play them",
		Long: `Run as one of many workers of distributed audits and studies (persona
audit, drift, vectors sweep and vectors extract with --distribute): take jobs
from the queue in the --db PostgreSQL, play each against this worker's own
backends (--backend config entries, the embedded engine with --model, or
both), and store every result in the same transaction that completes its
job, so a worker killed at any moment loses and duplicates nothing.

A worker takes the audit samples of runs whose target is one of its
backends, and the items of studies (drift conversations, steering cells,
extraction batches) on a model it runs itself (--model, or engine entries of
--backend), scored by the world's oracle or by the judge entry the study
names.

A job held by a worker that died is handed to another after --rescue-after
(give every worker the same value). A worker whose backend fails gives its
jobs back and takes none for --cooldown. SIGINT or SIGTERM drains: no new
jobs, up to --drain for the samples in flight, the rest given back.

--listen serves /healthz (503 while not taking jobs) and /metrics
(Prometheus).`,
		Example: `  persona worker --db postgres://audit@db/persona --backend backends.yaml --concurrency 16 --listen :9464
  persona worker --db postgres://audit@db/persona --model organism`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if dbArg == "" {
				return usageErr(errors.New("--db postgres://… names the database the fleet shares"))
			}
			if configPath == "" && modelPath == "" {
				modelPath = models.Default
			}
			if concurrency < 1 || drain < 0 {
				return usageErr(errors.New("--concurrency must be ≥ 1 and --drain ≥ 0"))
			}
			ctx := cmd.Context()
			// The database first: a wrong DSN should not wait for a model to load.
			db, err := fleet.Open(ctx, dbArg)
			if err != nil {
				return fleetErr(err)
			}
			defer db.Close()
			var bs []backend.Backend
			if modelPath != "" {
				e, err := loadEngine(modelPath, engine.Options{})
				if err != nil {
					return err
				}
				defer e.Close()
				bs = []backend.Backend{backend.NewEngine(e, filepath.Base(modelPath), 1)}
			}
			if configPath != "" {
				cfg, err := backend.LoadConfig(configPath)
				if err != nil {
					return usageErr(err)
				}
				names := make([]string, len(cfg.Backends))
				for i, b := range cfg.Backends {
					names[i] = b.Name
				}
				opened, closer, err := openBackends(configPath, names...)
				if err != nil {
					return err
				}
				defer closer.Close()
				bs = append(bs, opened...)
			}
			opt.Backends, opt.Oracle, opt.Concurrency, opt.Studies = bs, world.Default().Oracle(), concurrency,
				map[string]fleet.StudySetup{"drift": driftPlayer, "sweep": sweepPlayer, "extract": extractPlayer}
			opt.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
			w, err := fleet.NewWorker(db, opt)
			if err != nil {
				return fleetErr(err)
			}
			if listen != "" {
				ln, err := net.Listen("tcp", listen)
				if err != nil {
					return usageErr(fmt.Errorf("--listen: %w", err))
				}
				srv := &http.Server{Handler: w, ReadHeaderTimeout: 10 * time.Second}
				go srv.Serve(ln)
				defer srv.Close()
				fmt.Fprintf(os.Stderr, "persona: worker health and metrics on http://%s/healthz and /metrics\n", ln.Addr())
			}
			names := make([]string, len(bs))
			for i, b := range bs {
				names[i] = b.Name()
			}
			fmt.Fprintf(os.Stderr, "persona: worker taking samples of runs that audit %s (db %s)\n", strings.Join(names, ", "), dbShown(dbArg))
			if err := w.Run(ctx, drain); err != nil {
				return backendErr(err)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dbArg, "db", "", "PostgreSQL DSN (postgres://...) of the database the fleet shares")
	f.StringVar(&configPath, "backend", "", "backend config YAML: the worker serves runs that audit any of its entries")
	f.StringVar(&modelPath, "model", "", "serve runs that audit this local model, with the embedded engine")
	f.IntVar(&concurrency, "concurrency", 4, "samples played at once per target")
	f.StringVar(&listen, "listen", "", "address for /healthz and /metrics (e.g. :9464); none by default")
	f.DurationVar(&opt.JobTimeout, "job-timeout", 10*time.Minute, "cancel a sample that runs longer (it is tried again)")
	f.DurationVar(&opt.RescueAfter, "rescue-after", 0, "hand a job that has run this long to another worker, its own taken for dead (default job-timeout + 1m)")
	f.DurationVar(&opt.Cooldown, "cooldown", 30*time.Second, "after a backend failure, take no jobs for this long")
	f.DurationVar(&drain, "drain", time.Minute, "on SIGINT/SIGTERM, how long samples in flight may finish")
	return cmd
}

// studyEngine is the engine a worker plays a study on.
func studyEngine(b backend.Backend) (*engine.Engine, error) {
	eb, ok := b.(*backend.Engine)
	if !ok {
		return nil, fmt.Errorf("backend %s is not a model this worker runs itself", b.Name())
	}
	return eb.E, nil
}

// runStudy queues a study of n items on the fleet at dsn for persona worker
// processes running modelPath, follows it with a progress bar, and returns
// the items' results in order, decoded as T.
func runStudy[T any](ctx context.Context, dsn, kind, items, modelPath string, study any, n int) ([]T, error) {
	db, err := fleet.Open(ctx, dsn)
	if err != nil {
		return nil, fleetErr(err)
	}
	defer db.Close()
	js, err := json.Marshal(study)
	if err != nil {
		return nil, err
	}
	id, model := audit.NewRunID(), "engine:"+filepath.Base(modelPath)
	if err := db.StartStudy(ctx, id, kind, model, js, n); err != nil {
		return nil, fleetErr(err)
	}
	fmt.Fprintf(os.Stderr, "persona: %s study %s queued on %s; workers take it with: persona worker --db '<your DSN>' --model %s\n",
		kind, id, fleet.StudyQueue(kind, model), modelPath)
	bar := newProgress(items)
	raws, err := db.WaitStudy(ctx, id, n, 250*time.Millisecond, func(p fleet.Progress) { bar.update(p.Done, p.Total) })
	bar.finish()
	if err != nil {
		return nil, backendErr(err)
	}
	out := make([]T, len(raws))
	for i, r := range raws {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return nil, backendErr(fmt.Errorf("%s study %s: item %d: %w", kind, id, i, err))
		}
	}
	return out, nil
}

// decodeStudy reads a study as a worker's setup gets it.
func decodeStudy[T any](study []byte) (T, error) {
	var st T
	err := json.Unmarshal(study, &st)
	return st, badStudy(err)
}

// badStudy marks a study (or item) no worker can play: its job is
// cancelled rather than retried.
func badStudy(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", fleet.ErrBadStudy, err)
}
