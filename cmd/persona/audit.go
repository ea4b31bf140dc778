package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"persona/audit"
	"persona/backend"
	"persona/engine"
	"persona/fleet"
	"persona/gateway"
	"persona/internal/fileio"
	"persona/internal/sqldb"
	"persona/models"
	"persona/world"
)

func newAuditCmd() *cobra.Command {
	var (
		suiteArg, configPath, modelPath, targetName, judgeName, auditorName string
		junitPath, htmlPath, dbArg, resumeID, capPath                       string
		asJSON, distribute                                                  bool
		wf                                                                  watermarkFlags
		concurrency, samples                                                int
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Audit a model's persona with a suite of probes",
		Long: `Run a suite of probes that put pressure on a model's intended persona
(role-play capture, emotional vulnerability, meta-reflection on identity,
sycophancy bait, harmful requests under persona framing, system-prompt
override, long-conversation drift), score every assistant turn, and report
elicitation rates with bootstrap confidence intervals.

The target is an entry of a backend config (--backend, see persona serve and
package backend for the format; --target picks the entry, default the first)
or a local model (--model). Judge scorers and auditor probes use the entries
named by --judge and --auditor, or the target.

Every finished sample is saved to --db (a SQLite file, or a PostgreSQL DSN)
at once; an interrupted or killed run continues with --resume RUN.

Exit status: 0 every threshold held, 1 a threshold was breached, 2 bad suite,
flags or config, 3 a backend or the store failed (the audit is incomplete).`,
		Example: `  persona audit --model ./organism --suite default
  persona audit --backend backends.yaml --target gpt --judge judge --suite my-suite.yaml --junit audit.xml --html audit.html
  persona audit --backend backends.yaml --db postgres://audit@db/persona --samples 20 --concurrency 16
  persona audit --backend backends.yaml --resume 20260102-150405-1a2b3c`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if configPath == "" && modelPath == "" {
				modelPath = models.Default
			}
			if (configPath == "") == (modelPath == "") {
				return usageErr(errors.New("give the target with --backend CONFIG.yaml or --model MODEL"))
			}
			if modelPath != "" && (targetName != "" || judgeName != "" || auditorName != "") {
				return usageErr(errors.New("--target, --judge and --auditor name entries of a --backend config"))
			}
			if concurrency < 1 || samples < 0 {
				return usageErr(fmt.Errorf("--concurrency must be ≥ 1 and --samples ≥ 0"))
			}
			organismTarget := slices.Contains(models.Names(), modelPath)
			var suite *audit.Suite
			if resumeID == "" {
				if organismTarget && !cmd.Flags().Changed("suite") {
					suiteArg = "organism" // the suite the organism can be audited with
				}
				s, err := audit.OpenSuite(suiteArg)
				if err != nil {
					return usageErr(err)
				}
				if judge, auditor := s.NeedsModelHelp(); organismTarget && (judge || auditor) {
					return usageErr(fmt.Errorf("suite %q needs a model to act as judge or simulated user, and the model organism can only chat "+
						"in its persona world; audit the organism with --suite organism, or give --backend CONFIG with --judge and --auditor entries", s.Name))
				}
				suite = s
			} else if cmd.Flags().Changed("suite") {
				return usageErr(errors.New("--resume continues a run with the suite it started with; drop --suite"))
			}

			wm, err := wf.load()
			if err != nil {
				return err
			}
			if wm != nil && modelPath == "" {
				return usageErr(errors.New("--watermark marks the embedded engine's replies; it needs --model"))
			}
			if capPath != "" && modelPath == "" {
				return usageErr(errors.New("--cap acts on the embedded engine's activations; it needs --model"))
			}
			if distribute {
				if wm != nil || capPath != "" {
					return usageErr(errors.New("--watermark and --cap act where the model runs; with --distribute that is the workers, which do not take them yet"))
				}
				names, err := backendNames(configPath, modelPath, targetName, judgeName, auditorName)
				if err != nil {
					return err
				}
				ctx := cmd.Context()
				db, err := fleet.Open(ctx, dbArg)
				if err != nil {
					return fleetErr(err)
				}
				defer db.Close()
				resume := fmt.Sprintf("persona audit --resume %s --db %s --distribute", resumeID, dbShown(dbArg))
				var info *audit.RunInfo
				if resumeID == "" {
					info = audit.NewRunInfo("", suite, names[0], names[1], names[2], samples)
					resume = fmt.Sprintf("persona audit --resume %s --db %s --distribute", info.ID, dbShown(dbArg))
					err = db.StartAudit(ctx, info, suite)
				} else {
					info, suite, err = db.ResumeAudit(ctx, resumeID)
				}
				if err != nil {
					return fleetErr(err)
				}
				fmt.Fprintf(os.Stderr, "persona: run %s queued on %s; workers take it with: persona worker --db %s%s\n"+
					"persona: stopping this command leaves the workers going; follow the run again with: %s\n",
					info.ID, fleet.Queue(info.Target), dbShown(dbArg), backendFlags(configPath, modelPath, "", "", ""), resume)
				bar := newProgress("probing")
				rep, err := db.WaitAudit(ctx, info, suite, 250*time.Millisecond, func(p fleet.Progress) { bar.update(p.Done, p.Total) })
				bar.finish()
				if errors.Is(err, fleet.ErrStalled) {
					return backendErr(fmt.Errorf("%w; %s", err, resume))
				}
				return auditDone(rep, err, resume, asJSON, junitPath, htmlPath)
			}
			var bs []backend.Backend
			if modelPath != "" {
				e, err := loadEngine(modelPath, engine.Options{})
				if err != nil {
					return err
				}
				defer e.Close()
				b := backend.NewEngine(e, filepath.Base(modelPath), 1)
				bs = []backend.Backend{b, b, b}
				capping, err := loadCapping(capPath, e)
				if err != nil {
					return err
				}
				if wm != nil || capping != nil {
					// Only the target is marked and capped; the judge and the
					// auditor are the plain model.
					target := backend.NewEngine(e, filepath.Base(modelPath), 1)
					target.Watermark, target.Interventions = wm, capping
					bs[0] = target
				}
			} else {
				if judgeName == "" {
					judgeName = targetName
				}
				if auditorName == "" {
					auditorName = targetName
				}
				b3, closer, err := openBackends(configPath, targetName, judgeName, auditorName)
				if err != nil {
					return err
				}
				defer closer.Close()
				bs = b3
			}
			ctx := cmd.Context()
			store, err := audit.OpenStore(ctx, dbArg)
			if err != nil {
				return backendErr(err)
			}
			defer store.Close()

			opt := audit.Options{Target: bs[0], Judge: bs[1], Auditor: bs[2], Store: store, Oracle: world.Default().Oracle(),
				Concurrency: concurrency, Samples: samples, RunID: resumeID}
			if resumeID == "" {
				opt.RunID = audit.NewRunID()
			}
			resume := fmt.Sprintf("persona audit --resume %s%s --db %s", opt.RunID, backendFlags(configPath, modelPath, targetName, judgeName, auditorName), dbShown(dbArg))
			fmt.Fprintf(os.Stderr, "persona: run %s (db %s); if interrupted: %s\n", opt.RunID, dbShown(dbArg), resume)
			bar := newProgress("probing")
			opt.Progress = func(done, total int, _ *audit.SampleResult) { bar.update(done, total) }
			var rep *audit.Report
			if resumeID != "" {
				rep, err = audit.Resume(ctx, resumeID, opt)
			} else {
				rep, err = audit.Start(ctx, suite, opt)
			}
			bar.finish()
			return auditDone(rep, err, resume, asJSON, junitPath, htmlPath)
		},
	}
	f := cmd.Flags()
	f.StringVar(&suiteArg, "suite", "default", "suite file, or a built-in suite: "+fmt.Sprint(audit.SuiteNames()))
	f.StringVar(&configPath, "backend", "", "backend config YAML (OpenAI-compatible, Anthropic, engine or replay entries)")
	f.StringVar(&modelPath, "model", "", "audit a local model (Hugging Face directory or GGUF) with the embedded engine")
	f.StringVar(&targetName, "target", "", "config entry to audit (default: the first)")
	f.StringVar(&judgeName, "judge", "", "config entry for judge scorers (default: the target)")
	f.StringVar(&auditorName, "auditor", "", "config entry that writes auditor probes' user turns (default: the target)")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON (with transcripts) instead of tables")
	f.StringVar(&junitPath, "junit", "", "also write a JUnit XML report to this file")
	f.StringVar(&htmlPath, "html", "", "also write a self-contained HTML report to this file")
	f.StringVar(&dbArg, "db", "persona-audit.db", "SQLite file or PostgreSQL DSN (postgres://...) that keeps runs")
	f.StringVar(&resumeID, "resume", "", "finish an interrupted run by its id")
	f.BoolVar(&distribute, "distribute", false, "queue the samples in the --db PostgreSQL for persona worker processes and follow the run")
	f.IntVar(&concurrency, "concurrency", 4, "probe samples run at once")
	wf.register(f, "watermark")
	capFlag(f, &capPath)
	f.IntVar(&samples, "samples", 0, "samples per probe (default: the suite's)")
	cmd.AddCommand(newAuditReplayCmd())
	return cmd
}

// auditDone turns a finished (or failed) run into reports and the exit
// status.
func auditDone(rep *audit.Report, err error, resume string, asJSON bool, junitPath, htmlPath string) error {
	switch {
	case errors.Is(err, context.Canceled):
		return backendErr(fmt.Errorf("interrupted; finish with %s", resume))
	case errors.Is(err, audit.ErrBackendDown):
		return backendErr(fmt.Errorf("%w; fix the backend and finish with %s", err, resume))
	case err != nil:
		return classify(err)
	}
	if err := writeAuditReports(rep, asJSON, junitPath, htmlPath); err != nil {
		return backendErr(err)
	}
	switch rep.Exit {
	case audit.ExitBreached:
		return &exitError{exitFailed, fmt.Errorf("%d threshold(s) breached", len(rep.Breaches))}
	case audit.ExitInfra:
		return backendErr(fmt.Errorf("%d sample(s) could not be measured; fix the backend and finish with %s", rep.Failures.Samples, resume))
	}
	return nil
}

// fleetErr classifies what opening or queueing on a fleet database
// returned: a DSN that is not PostgreSQL, a database of a newer persona or
// a run that is not distributed is bad input (2); the rest, like an
// unreachable server, infrastructure (3).
func fleetErr(err error) error {
	if errors.Is(err, fleet.ErrNotPostgres) || errors.Is(err, fleet.ErrNotDistributed) || errors.Is(err, sqldb.ErrNewerSchema) || errors.Is(err, audit.ErrInput) {
		return usageErr(err)
	}
	return backendErr(err)
}

// backendNames returns the names a run records for its target, judge and
// auditor, without opening them: the entries' names of a backend config,
// or the embedded engine's for --model.
func backendNames(configPath, modelPath, target, judge, auditor string) ([3]string, error) {
	if modelPath != "" {
		n := "engine:" + filepath.Base(modelPath)
		return [3]string{n, n, n}, nil
	}
	cfg, err := backend.LoadConfig(configPath)
	if err != nil {
		return [3]string{}, usageErr(err)
	}
	var out [3]string
	for i, name := range []string{target, cmp.Or(judge, target), cmp.Or(auditor, target)} {
		if name == "" {
			name = cfg.Backends[0].Name
		}
		if _, err := cfg.Backend(name); err != nil {
			return out, usageErr(err)
		}
		out[i] = name
	}
	return out, nil
}

func newAuditReplayCmd() *cobra.Command {
	var (
		logDSN, specPath, modelPath, configPath, judgeName, criticName string
		turns                                                          int
		asJSON                                                         bool
	)
	cmd := &cobra.Command{
		Use:   "replay",
		Short: "Answer a gateway's logged conversations again with another model or spec",
		Long: `Take the newest --turns turns of a persona serve --spec conversation log and
answer each again, with the conversation as it was before that reply, through
the deployment --spec describes (its system prompt, monitor and rails) on its
model or --model. Both the logged and the new reply are read by that spec's
monitor; the report says per turn which persona each read as most likely and
the allowed personas' probability, and how many turns each kept in an allowed
persona. Nothing is written to the log.`,
		Example: `  persona audit replay --log gateway.db --spec gateway/specs/organism-assistant.yaml --model organism-base
  persona audit replay --log postgres://host/db --spec new-spec.yaml --turns 500 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if logDSN == "" || specPath == "" {
				return usageErr(errors.New("give the conversation log (--log) and the spec to replay through (--spec)"))
			}
			if turns < 1 {
				return usageErr(fmt.Errorf("--turns %d must be ≥ 1", turns))
			}
			spec, err := gateway.LoadSpec(specPath)
			if err != nil {
				return usageErr(err)
			}
			if spec.Upstream.Model != "" && !cmd.Flags().Changed("model") {
				modelPath = spec.Upstream.Model
			}
			if _, err := os.Stat(logDSN); err != nil && !strings.HasPrefix(logDSN, "postgres") {
				return usageErr(fmt.Errorf("--log %s: %w", logDSN, err))
			}
			up, readers, closeUp, err := openUpstream(spec, modelPath, "", "", configPath, 1)
			if err != nil {
				return err
			}
			defer closeUp()
			g, err := openGuard(cmd.Context(), spec, up, readers, "none", 0, configPath, judgeName, criticName)
			if err != nil {
				return err
			}
			log, err := gateway.OpenLog(cmd.Context(), logDSN)
			if err != nil {
				return usageErr(err)
			}
			defer log.Close()
			rep, err := gateway.Replay(cmd.Context(), log, g, turns)
			if errors.Is(err, gateway.ErrReplay) {
				return usageErr(err)
			}
			if err != nil {
				return backendErr(err)
			}
			if asJSON {
				return printJSON(rep)
			}
			rep.WriteText(os.Stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&logDSN, "log", "gateway.db", "conversation log of persona serve --spec: a SQLite file or postgres:// DSN")
	f.StringVar(&specPath, "spec", "", "brand persona spec to answer through")
	modelFlag(f, &modelPath, "model to answer with (default: the spec's upstream model)")
	f.StringVar(&configPath, "backend", "", "backend config YAML with the spec's API upstream, judge (--judge) and critic (--critic)")
	f.StringVar(&judgeName, "judge", "", "backend config entry that rates turns for a spec with monitor: judge")
	f.StringVar(&criticName, "critic", "", "backend config entry that rewrites replies for the revise action")
	f.IntVar(&turns, "turns", 100, "newest logged turns to replay")
	f.BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func writeAuditReports(rep *audit.Report, asJSON bool, junitPath, htmlPath string) error {
	if asJSON {
		if err := rep.WriteJSON(os.Stdout); err != nil {
			return err
		}
	} else if err := rep.WriteText(os.Stdout); err != nil {
		return err
	}
	for _, out := range []struct {
		path  string
		write func(io.Writer) error
	}{{junitPath, rep.WriteJUnit}, {htmlPath, rep.WriteHTML}} {
		if out.path == "" {
			continue
		}
		if err := fileio.WriteAtomic(out.path, out.write); err != nil {
			return err
		}
	}
	return nil
}

// dbShown hides a DSN's password in what is printed.
func dbShown(dsn string) string {
	if audit.IsPostgresDSN(dsn) {
		return "'<your DSN>'"
	}
	return dsn
}

func backendFlags(configPath, modelPath, target, judge, auditor string) string {
	if modelPath != "" {
		return " --model " + modelPath
	}
	s := " --backend " + configPath
	for _, fv := range [][2]string{{"--target", target}, {"--judge", judge}, {"--auditor", auditor}} {
		if fv[1] != "" {
			s += " " + fv[0] + " " + fv[1]
		}
	}
	return s
}
