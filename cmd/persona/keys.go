package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"persona/gateway"
)

func newKeysCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Manage the API keys persona serve accepts",
		Long: `API keys for persona serve --keys FILE. The file holds each key's id, scopes,
limits and the SHA-256 of its secret, never the secret: add prints the secret
once, and a lost secret is replaced by revoking the key and adding a new one.
A running server rereads the file on POST /admin/reload (an admin key).

Scopes: client (generate, models, watermark detection, persona card) and
admin (also /metrics and /admin/reload).`,
	}
	cmd.PersistentFlags().StringVar(&path, "keys", "keys.json", "key file")
	load := func() (*gateway.Keys, error) {
		ks, err := gateway.LoadKeys(path)
		if err != nil {
			return nil, usageErr(err)
		}
		return ks, nil
	}

	var (
		k     gateway.Key
		admin bool
	)
	add := &cobra.Command{
		Use:     "add",
		Short:   "Add a key and print its secret (shown only this once)",
		Example: "  persona keys add --keys keys.json --id alice --rate 2 --burst 4 --concurrency 1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ks, err := load()
			if err != nil {
				return err
			}
			k.Scopes = []gateway.Scope{gateway.ScopeClient}
			if admin {
				k.Scopes = []gateway.Scope{gateway.ScopeAdmin}
			}
			secret, err := ks.Add(k)
			if errors.Is(err, gateway.ErrKeys) {
				return usageErr(err)
			} else if err != nil {
				return backendErr(err)
			}
			fmt.Fprintf(os.Stderr, "added key %s to %s; its secret, which is not stored anywhere:\n", k.ID, path)
			fmt.Println(secret)
			return nil
		},
	}
	f := add.Flags()
	f.StringVar(&k.ID, "id", "", "key id (who holds it), shown in logs instead of the key")
	f.BoolVar(&admin, "admin", false, "admin scope (metrics, reload) as well as client")
	f.Float64Var(&k.Rate, "rate", 0, "requests a second the key may make (0: no limit)")
	f.IntVar(&k.Burst, "burst", 0, "requests at once above the rate (default: the rate)")
	f.IntVar(&k.Concurrency, "concurrency", 0, "generation requests the key may have in flight (0: no limit)")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the keys: ids, scopes, limits (never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ks, err := load()
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "id\tscopes\trate/s\tburst\tconcurrency\tcreated")
			for _, k := range ks.Keys {
				fmt.Fprintf(tw, "%s\t%v\t%g\t%d\t%d\t%s\n", k.ID, k.Scopes, k.Rate, k.Burst, k.Concurrency, k.Created.Format("2006-01-02"))
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Remove a key (a running server stops accepting it at the next reload)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ks, err := load()
			if err != nil {
				return err
			}
			if err := ks.Revoke(args[0]); errors.Is(err, gateway.ErrKeys) {
				return usageErr(err)
			} else if err != nil {
				return backendErr(err)
			}
			fmt.Fprintf(os.Stderr, "revoked %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(add, list, revoke)
	return cmd
}
