// Command keygate is the one binary: the server (serve), the admin CLI over
// the management API (keys …), and small tools (secret generate, version).
package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
)

// env is all keygate takes from the process it runs in. Commands read the
// environment only through getenv, so that tests hand each command a map
// instead of changing the process environment, and can run in parallel.
type env struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	// isTerminal reports whether a stream is a terminal (nil: never, as in
	// tests that do not set it).
	isTerminal func(io.Writer) bool
	// newTicker starts the ticks `events --follow` polls on and returns
	// how to stop them (nil: a time.Ticker). A test sends its own ticks
	// and ends the follow by closing the channel.
	newTicker func(time.Duration) (<-chan time.Time, func())
	// certTicks and certReloads drive serve's reloading of tls_cert and
	// tls_key (package certfile): a look at the files per tick, a reload
	// per signal. nil: a ticker of certfile.CheckEvery, and SIGHUP.
	certTicks   <-chan time.Time
	certReloads <-chan os.Signal
}

// processEnv is the real process's environment and standard streams.
func processEnv() env {
	return env{getenv: os.Getenv, stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, isTerminal: writerIsTerminal}
}

func main() {
	e := processEnv()
	if err := rootCommand(e).Execute(); err != nil {
		fmt.Fprintln(e.stderr, "keygate:", err)
		os.Exit(1)
	}
}

// rootCommand is keygate's command tree, reading from e and serving the
// stores in storeBackends.
func rootCommand(e env) *cobra.Command {
	root := &cobra.Command{
		Use:           "keygate",
		Short:         "OAuth 2.0 authorization server for API keys",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	root.AddCommand(serveCommand(e, storeBackends), seedCommand(e), keysCommand(e), adminKeysCommand(e), teamsCommand(e), signingKeysCommand(e), eventsCommand(e), tokenCommand(e), benchCommand(e), storeCommand(e), masterKeyCommand(e), secretCommand(), versionCommand())
	return root
}
