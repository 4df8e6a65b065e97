package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/upgate/upgate/gateway/admin"
)

// adminFlags are the flags every admin client command takes.
type adminFlags struct {
	addr, tokenFile string
}

func (f *adminFlags) register(cmd *cobra.Command) {
	def := os.Getenv("UPGATE_LISTEN_ADMIN")
	if def == "" {
		def = "127.0.0.1:9100"
	}
	cmd.Flags().StringVar(&f.addr, "admin", def, "the gateway's admin address (listen.admin)")
	cmd.Flags().StringVar(&f.tokenFile, "token-file", os.Getenv("UPGATE_ADMIN_TOKEN_FILE"), "file with the admin bearer token (admin.token_file)")
}

func (f *adminFlags) client() (*admin.Client, error) {
	c := &admin.Client{Addr: f.addr}
	if f.tokenFile != "" {
		b, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, err
		}
		c.Token = strings.TrimSpace(string(b))
	}
	return c, nil
}

func sessionsCommand() *cobra.Command {
	var af adminFlags
	var by string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "sessions",
		Short: "List the gateway's live sessions",
		Long: `List live sessions from a running gateway's admin API: id (data connections
as parent/id), protocol, user, remote address, age, time since the client's
last request, the socket's keepalive and TCP_USER_TIMEOUT as the kernel
reports them, bytes in and out, and the current operation; then, if anyone
saved in the last minutes, the save latency (an upload's open to its commit)
per user and protocol: saves, p50, p99 and max.
--by ip or --by user counts sessions instead. --json prints the admin API's
GET /api/sessions: {"sessions": [...], "window", "slot", "latency": [...]},
durations in nanoseconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			resp, err := c.SessionsAndLatency(cmd.Context())
			if err != nil {
				return err
			}
			switch {
			case asJSON:
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(resp)
			case by != "":
				return admin.WriteCounts(cmd.OutOrStdout(), resp.Sessions, by)
			}
			if err := admin.WriteTable(cmd.OutOrStdout(), resp.Sessions, time.Now()); err != nil {
				return err
			}
			if len(resp.Latency) == 0 {
				return nil
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return admin.WriteLatency(cmd.OutOrStdout(), resp.LatencyResponse)
		},
	}
	af.register(cmd)
	cmd.Flags().StringVar(&by, "by", "", "count sessions by ip or user")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON: the sessions and the save latency, as GET /api/sessions serves them")
	return cmd
}

func kickCommand() *cobra.Command {
	var af adminFlags
	cmd := &cobra.Command{
		Use:   "kick ID...",
		Short: "Disconnect sessions",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, ids []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			for _, id := range ids {
				if err := c.Kick(cmd.Context(), id); err != nil {
					return fmt.Errorf("kick %s: %w", id, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "kicked %s\n", id)
			}
			return nil
		},
	}
	af.register(cmd)
	return cmd
}
