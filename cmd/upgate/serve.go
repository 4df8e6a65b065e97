package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/upgate/upgate"
	"github.com/upgate/upgate/config"
	"github.com/upgate/upgate/server"
)

func serveCommand() *cobra.Command {
	var configFile string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Long: `Run the gateway with the configuration in --config, or with the embedded
default (the repository's config.yaml: loopback listeners, an in-process
agent serving ./data, and the user demo with password demo).

Every key can be overridden by an UPGATE_* environment variable
(UPGATE_LISTEN_FTP=127.0.0.1:3121) and then by a flag (--listen.ftp).
Edits to users, agents and connection limits in the --config file take
effect without a restart (the file is watched; SIGHUP reloads too); an
invalid edit is refused and logged, and the running configuration stays.
Live sessions whose login the new file no longer accepts (a removed user,
a changed password or key, changed mounts) end, uploads in flight abort,
and their clients are told why.
SIGINT or SIGTERM drains and stops it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(configFile, upgate.DefaultConfig, cmd.Flags())
			if err != nil {
				return err
			}
			log := newLogger(cfg.Log.Level, cfg.Log.Format)
			keepMonitorAwake(cmd.Context(), log, cfg.CPU.AwakeMonitor) // may re-execute: first
			// client-go's own logs (API warnings) join ours: klog's
			// logger is process-wide, so main sets it.
			klog.SetSlogLogger(log.With("component", "kubernetes"))
			ctx := cmd.Context()
			srv, err := server.Start(ctx, cfg, server.Options{Logger: log, Version: upgate.Version(),
				ConfigPath: configFile, DefaultConfig: upgate.DefaultConfig, Flags: cmd.Flags()})
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						log.Info("SIGHUP: reloading configuration")
						_ = srv.Reload()
					}
				}
			}()
			log.Info("upgate serving", "version", upgate.Version(), "ftp", cfg.Listen.FTP, "sftp", cfg.Listen.SFTP, "users", len(cfg.Users), "agents", len(cfg.Agents))
			<-ctx.Done()
			log.Info("upgate draining", "timeout", cfg.Connections.DrainTimeout)
			dctx, cancel := context.WithTimeout(context.Background(), cfg.Connections.DrainTimeout)
			defer cancel()
			return srv.Shutdown(dctx)
		},
	}
	cmd.Flags().StringVarP(&configFile, "config", "c", "", "configuration file (default: the embedded config.yaml)")
	config.RegisterFlags(cmd.Flags())
	return cmd
}
