package command

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/strata-llm/strata/auth"
	"gopkg.in/yaml.v3"
)

// envPrefix names the environment variables that stand in for flags:
// --cluster-token is STRATA_CLUSTER_TOKEN, --raft-addr STRATA_RAFT_ADDR.
const envPrefix = "STRATA_"

// EnvName is the environment variable for a flag.
func EnvName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyConfig fills every flag the command line did not set, first from its
// environment variable, then from the YAML file named by the --config flag
// (keys are flag names). So a flag beats the environment, which beats the
// file, which beats the default — the usual order for daemons, and it lets
// secrets such as the cluster token stay out of argv and files.
func applyConfig(cmd *cobra.Command) error {
	fromFile := map[string]string{}
	if f := cmd.Flags().Lookup("config"); f != nil && f.Value.String() != "" {
		var err error
		if fromFile, err = readConfigFile(cmd.Flags(), f.Value.String()); err != nil {
			return err
		}
	}
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		v, ok := os.LookupEnv(EnvName(f.Name))
		src := EnvName(f.Name)
		if !ok {
			v, ok = fromFile[f.Name]
			src = "config file key " + f.Name
		}
		if !ok {
			return
		}
		if err := cmd.Flags().Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src, err))
		}
	})
	return errors.Join(errs...)
}

// readConfigFile reads a flat YAML mapping of flag names to values; lists
// become comma-separated values, as the flags take them.
func readConfigFile(flags *pflag.FlagSet, path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	if len(b) > 1<<20 {
		return nil, fmt.Errorf("config file %s: larger than 1 MiB", path)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
		return map[string]string{}, nil // an empty file sets nothing
	} else if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return map[string]string{}, nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("config file %s: line %d: want a mapping of flag names to values", path, m.Line)
	}
	out := map[string]string{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if flags.Lookup(k.Value) == nil || k.Value == "config" {
			return nil, fmt.Errorf("config file %s: line %d: unknown key %q (keys are the command's flag names)", path, k.Line, k.Value)
		}
		switch v.Kind {
		case yaml.ScalarNode:
			out[k.Value] = v.Value
		case yaml.SequenceNode:
			var items []string
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					return nil, fmt.Errorf("config file %s: line %d: %s: list items must be scalars", path, it.Line, k.Value)
				}
				items = append(items, it.Value)
			}
			out[k.Value] = strings.Join(items, ",")
		default:
			return nil, fmt.Errorf("config file %s: line %d: %s: want a scalar or a list", path, v.Line, k.Value)
		}
	}
	return out, nil
}

// brainClientFlags adds the flags of a process that calls the brains: the
// replicas' addresses, the cluster token and client TLS.
func brainClientFlags(f *pflag.FlagSet, brains *[]string, token *string, tls *auth.TLSFiles) {
	f.StringSliceVar(brains, "brain", []string{"127.0.0.1:7001"}, "gRPC addresses of the brain replicas (comma-separated)")
	f.StringVar(token, "cluster-token", "", "the cluster's shared secret (prefer STRATA_CLUSTER_TOKEN)")
	f.StringVar(&tls.CA, "tls-ca", "", "PEM CA to verify the brains with (enables TLS)")
	f.StringVar(&tls.Cert, "tls-cert", "", "PEM client certificate, for brains that require mutual TLS")
	f.StringVar(&tls.Key, "tls-key", "", "PEM key of --tls-cert")
}
