// Command keygate is the one binary: the server (serve), the admin CLI over
// the management API (keys …), and small tools (secret generate, version).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	if err := rootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "keygate:", err)
		os.Exit(1)
	}
}

func rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "keygate",
		Short:         "OAuth 2.0 authorization server for API keys",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCommand(), seedCommand(), keysCommand(), benchCommand(), secretCommand(), versionCommand())
	return root
}
