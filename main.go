// Command strata is the single Strata binary: brain, agent, gateway, sim and
// the operator tools are its subcommands. This file only hands over to the
// command package, which wires the libraries together.
package main

import (
	"os"

	"github.com/strata-llm/strata/command"
)

func main() { os.Exit(command.Execute()) }
