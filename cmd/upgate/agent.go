package main

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/upgate/upgate"
	"github.com/upgate/upgate/backend/agent"
	"github.com/upgate/upgate/backend/agent/hooks"
	"github.com/upgate/upgate/internal/procs"
)

// agentBusyWithin is how recently a gateway session must have had a
// request served to count as busy for --adaptive-procs (agent.Server.Busy),
// the gateway's own window (server's busyWithin).
const agentBusyWithin = time.Second

func agentCommand() *cobra.Command {
	var listen, root, tokenFile, cert, key, clientCA, hooksFile, logLevel string
	var maxOpenFiles int
	var adaptiveProcs, awakeMonitor bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent that writes files inside a container",
		Long: `Serve the agent protocol over --root for the gateway. Every call must carry
the token in --token-file; with --tls-cert and --tls-key the agent speaks TLS,
and with --client-ca it also requires a client certificate (mTLS).
Run it as the user the container's application runs as: files are written
with that user's uid. SIGINT or SIGTERM stops it; uploads still open abort.

--hooks FILE runs commands after files change (read once, at start; it
must lie outside --root):

  hooks:
    - name: opcache-reset            # required, unique: events, logs, metrics
      match: ["**/*.php"]            # required: globs of paths relative to --root
      exclude: ["vendor/**"]         # optional
      on: [write, rename]            # write (a committed upload), rename (its
                                     # destination), delete, mkdir; default write, rename
      command: ["sh", "-c", "kill -USR2 \"$(cat /run/php-fpm/php-fpm.pid)\""]
      debounce: 300ms                # run once no match came for this long (default 300ms)
      timeout: 1m                    # then its process group is killed (default 1m)
      env: {APP_ENV: local}          # optional, added to the agent's environment

In a glob, * and ? stay within one path segment and a ** segment matches
any number of them: "**/*.php" is every PHP file, "composer.json" the one
at the root. The command runs without a shell (name one to get it) as the
agent's user, in --root, with the changed paths on stdin, one per line,
and in UPGATE_CHANGED (newline-separated, at most 32 KiB; then
UPGATE_CHANGED_TRUNCATED=1), plus UPGATE_CHANGED_COUNT, UPGATE_HOOK and
UPGATE_ROOT. A hook never runs twice at once: changes during a run run it
once more afterwards with all their paths. Its result never affects the
upload; runs are logged and streamed to the gateway (upgate events).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger(logLevel, "text")
			keepMonitorAwake(cmd.Context(), log, awakeMonitor) // may re-execute: first
			tok, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("--token-file: %w", err)
			}
			var hs []hooks.Hook
			if hooksFile != "" {
				if err := hooks.CheckOutside(hooksFile, root); err != nil {
					return fmt.Errorf("--hooks: %w", err)
				}
				if hs, err = hooks.Load(hooksFile); err != nil {
					return fmt.Errorf("--hooks: %w", err)
				}
			}
			srv, err := agent.New(agent.Config{Root: root, Token: strings.TrimSpace(string(tok)), Logger: log, Version: upgate.Version(), Hooks: hs, MaxOpenFiles: maxOpenFiles})
			if err != nil {
				return err
			}
			defer srv.Close()
			if adaptiveProcs {
				busy := func() int { return srv.Busy(agentBusyWithin) }
				if stop := procs.Follow(procs.Config{Busy: busy, Logger: log.With("component", "procs")}); stop != nil {
					defer stop()
				}
			}
			var opts []grpc.ServerOption
			if cert != "" || key != "" {
				conf, err := agent.ServerTLS(cert, key, clientCA)
				if err != nil {
					return err
				}
				opts = append(opts, grpc.Creds(credentials.NewTLS(conf)))
			} else if clientCA != "" {
				return fmt.Errorf("--client-ca needs --tls-cert and --tls-key")
			}
			network, addr := "tcp", listen
			if path, ok := strings.CutPrefix(listen, "unix:"); ok {
				// A socket on a volume shared with the gateway's pod.
				network, addr = "unix", path
				_ = os.Remove(path) // a stale socket from a previous run
			}
			lis, err := net.Listen(network, addr)
			if err != nil {
				return err
			}
			log.Info("agent serving", "listen", lis.Addr().String(), "root", root, "tls", cert != "", "mtls", clientCA != "",
				"hooks", len(hs), "version", upgate.Version())
			return agent.Serve(cmd.Context(), srv, lis, opts...)
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":7070", "address to listen on: host:port, or unix:/path/to.sock")
	f.StringVar(&root, "root", ".", "directory to serve")
	f.StringVar(&tokenFile, "token-file", "", "file holding the bearer token the gateway sends (required)")
	f.StringVar(&cert, "tls-cert", "", "PEM certificate: serve TLS")
	f.StringVar(&key, "tls-key", "", "PEM private key for --tls-cert")
	f.StringVar(&clientCA, "client-ca", "", "PEM CA bundle: require client certificates signed by it")
	f.StringVar(&hooksFile, "hooks", "", "YAML file of hooks: commands run after files change (see above)")
	f.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	f.IntVar(&maxOpenFiles, "max-open-files", 0, "files the agent holds open at once over every gateway; more opens fail with \"too many open files\" (0: a quarter of the descriptor limit, at most 4096; negative: no bound)")
	f.BoolVar(&adaptiveProcs, "adaptive-procs", true, "run as many Go Ps as gateway sessions are at work (a request within the last second), at least 1 and at most Go's default GOMAXPROCS (the CPUs, or the container's CPU limit but at least 2); false: Go's default (a GOMAXPROCS environment variable wins either way)")
	f.BoolVar(&awakeMonitor, "awake-monitor", false, "keep the Go runtime's monitor polling every 10 ms while idle, so that a request after a pause does not have to wake it: the agent re-executes itself once at start with GODEBUG=schedtrace, which also dumps the scheduler's state on a crash and can turn a fatal runtime error into a hang (README, CPUs); a schedtrace in GODEBUG wins")
	_ = cmd.MarkFlagRequired("token-file")
	return cmd
}
