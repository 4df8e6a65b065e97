// Command build builds the kube-apiserver that internal/kubetest runs,
// into its cache directory, unless it is there already, and prints its
// path. Arguments go to "go build" (such as -p 2). CI runs it before the
// tests so that the build is timed on its own:
//
//	go run ./internal/kubetest/build
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"

	"github.com/upgate/upgate/internal/kubetest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	bin, err := kubetest.Build(ctx, os.Stderr, os.Args[1:]...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(bin)
}
