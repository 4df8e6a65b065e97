package main

import (
	"github.com/spf13/cobra"

	"github.com/upgate/upgate/internal/inject"
)

func injectCommand() *cobra.Command {
	var (
		opts     inject.Options
		uid, gid int64
	)
	cmd := &cobra.Command{
		Use:   "inject",
		Short: "Add the agent sidecar to Kubernetes YAML (stdin to stdout)",
		Long: `Read Kubernetes YAML on standard input (a Deployment, a StatefulSet or a Pod,
or a multi-document stream holding them among other objects) and write it
to standard output with the upgate agent added to each pod: a container
named upgate-agent running "upgate agent --root ROOT" as the app
container's uid, sharing the volume that holds ROOT, with the token from
the Secret --token-secret, probes and resources; and the pod labels the
gateway's selector expects for --user. Other objects pass unchanged.

Injecting twice changes nothing. Anything it cannot handle (another
workload kind, no volume at ROOT, no uid to run as) is an error saying why,
and nothing is written.

  upgate inject --user alice --root /var/www/html --image IMAGE < app.yaml > app-with-agent.yaml

With --command (where the upgate binary is in the image) and no --image,
the agent runs in the app container's own image, which holds upgate; with
--hooks it runs the hooks of that ConfigMap (key hooks.yaml) after saves,
with the app's tools.

--selector and --port must match the gateway's agents.NAME.kubernetes
selector and port.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("uid") {
				opts.UID = &uid
			}
			if cmd.Flags().Changed("gid") {
				opts.GID = &gid
			}
			return inject.Inject(cmd.InOrStdin(), cmd.OutOrStdout(), opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.User, "user", "", "the developer whose pod this is: fills {user} in --selector (required)")
	f.StringVar(&opts.Root, "root", "", "directory the agent serves: where a volume of the app container holds the code (required)")
	f.StringVar(&opts.Image, "image", "", "the agent's image: the gateway's; default, with --command, the app container's")
	f.StringVar(&opts.Command, "command", "", "path of the upgate binary in the image, when its entrypoint is not upgate (an app image)")
	f.StringVar(&opts.Hooks, "hooks", "", "ConfigMap with the agent's hooks (key hooks.yaml), mounted at /etc/upgate/hooks")
	f.StringVar(&opts.Selector, "selector", inject.DefaultSelector, "the gateway's agents.NAME.kubernetes.selector: its = requirements become pod labels")
	f.IntVar(&opts.Port, "port", inject.DefaultPort, "the agent's port: the gateway's agents.NAME.kubernetes.port")
	f.StringVar(&opts.Container, "container", "", "the app container; default the only one, or the only one with a volume at --root")
	f.StringVar(&opts.TokenSecret, "token-secret", inject.DefaultTokenSecret, "Secret holding the agent token, in the pod's namespace")
	f.StringVar(&opts.TokenKey, "token-key", inject.DefaultTokenKey, "key of the token in --token-secret")
	f.Int64Var(&uid, "uid", 0, "uid the agent runs as; default the app container's runAsUser (or the pod's)")
	f.Int64Var(&gid, "gid", 0, "gid the agent runs as; default the app container's runAsGroup (or the pod's)")
	for _, name := range []string{"user", "root"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}
