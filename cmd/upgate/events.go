package main

import (
	"encoding/json"

	"github.com/spf13/cobra"

	"github.com/upgate/upgate/gateway/admin"
)

func eventsCommand() *cobra.Command {
	var af adminFlags
	var user string
	var follow, asJSON bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show what agents committed and what their hooks did",
		Long: `Print the gateway's recent events from its admin API (GET /api/events), oldest
first: uploads agents committed, renames, deletes and mkdirs (commit), runs
of agents' hooks with their result, exit status, duration and number of
paths (hook; a failed run adds its error and the end of its output), and
the gateway's other events. --user keeps one user's events; --follow goes
on printing new ones until interrupted. Each gateway replica has its own.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			return c.Events(cmd.Context(), admin.EventsOptions{User: user, Follow: follow}, func(e admin.Event) error {
				if asJSON {
					return enc.Encode(e)
				}
				return admin.WriteEvent(out, e)
			})
		},
	}
	af.register(cmd)
	cmd.Flags().StringVar(&user, "user", "", "only this user's events")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events until interrupted")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON, one event per line")
	return cmd
}
