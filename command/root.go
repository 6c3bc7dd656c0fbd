// Package command holds the strata command line: one cobra command per
// subcommand, each only parsing flags and wiring library packages, as
// nomad's command package does.
package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// Version is set at build time with -ldflags.
var Version = "dev"

// Execute runs the command line and returns the process exit code.
func Execute() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "strata:", err)
		return 1
	}
	return 0
}

func newRoot() *cobra.Command {
	var logLevel, logFormat string
	root := &cobra.Command{
		Use:           "strata",
		Short:         "Strata turns a fleet of LLM inference engines into one coordinated service",
		Version:       Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.PersistentFlags().StringVar(&logFormat, "log-format", "text", "log format: text or json")
	logger := func() (*slog.Logger, error) { return newLogger(logLevel, logFormat) }
	root.AddCommand(newSimCommand(logger))
	root.AddCommand(newCtlCommand())
	root.AddCommand(newBrainCommand(logger))
	root.AddCommand(newAgentCommand(logger))
	root.AddCommand(newGatewayCommand(logger))
	root.AddCommand(newDevCommand(logger))
	root.AddCommand(newBenchCommand(logger))
	return root
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, errors.New("--log-format: want text or json")
}
