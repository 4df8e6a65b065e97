package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/upgate/upgate"
)

func versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "upgate %s %s %s/%s\n", upgate.Version(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}
