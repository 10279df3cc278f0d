package cli

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// StatusError is an error that sets the CLI's exit code. Status, when
// set, is printed instead of the cause.
type StatusError struct {
	Status     string
	StatusCode int
	Cause      error
}

func (e StatusError) Error() string {
	switch {
	case e.Status != "":
		return e.Status
	case e.Cause != nil:
		return e.Cause.Error()
	default:
		// A bare exit code (a container's) prints nothing.
		return ""
	}
}

// Unwrap exposes the cause to errors.Is/As.
func (e StatusError) Unwrap() error { return e.Cause }

// exitCode is the process exit code for err: a StatusError's code, else 1.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var se StatusError
	if errors.As(err, &se) && se.StatusCode != 0 {
		return se.StatusCode
	}
	return 1
}

// flagErrorFunc reports a bad flag like docker: the error, the usage line,
// a pointer to --help, exit code 125.
func flagErrorFunc(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	return StatusError{
		Status:     fmt.Sprintf("%s\n\nUsage:  %s\n\nRun '%s --help' for more information", err, cmd.UseLine(), cmd.CommandPath()),
		StatusCode: 125,
		Cause:      err,
	}
}

// withHelp decorates an error of `run`/`create` as docker does.
func withHelp(err error, cmd *cobra.Command) error {
	return fmt.Errorf("%s: %w\n\nRun '%s --help' for more information", cmd.Root().Name(), err, cmd.CommandPath())
}

// toStatusError maps a failed create/start of `run` to docker's exit codes:
// 127 when the command cannot be found, 126 when it cannot be executed,
// 125 for everything else (the daemon or the CLI failed).
func toStatusError(err error, cmd *cobra.Command) error {
	msg := err.Error()
	code := 125
	switch {
	case strings.Contains(msg, "executable file not found"),
		strings.Contains(msg, "no such file or directory"),
		strings.Contains(msg, "system cannot find the file specified"):
		code = 127
	case strings.Contains(msg, syscall.EACCES.Error()),
		strings.Contains(msg, syscall.EISDIR.Error()):
		code = 126
	}
	return StatusError{Status: withHelp(err, cmd).Error(), StatusCode: code, Cause: err}
}

// connectionError rewrites the client's "failed to connect" errors into
// docker's familiar wording; it also keeps a socket's "no such file or
// directory" out of the 127 mapping above.
type connectionError struct {
	host  string
	cause error
}

func (e connectionError) Error() string {
	if strings.Contains(e.cause.Error(), "permission denied") {
		return fmt.Sprintf("permission denied while trying to connect to the berth daemon socket at %s", e.host)
	}
	// A TLS failure is no absent daemon: say what the handshake said
	// (a missing or untrusted certificate), as docker does.
	if msg := e.cause.Error(); strings.Contains(msg, "tls:") || strings.Contains(msg, "x509:") {
		return msg
	}
	return fmt.Sprintf("Cannot connect to the berth daemon at %s. Is the berth daemon running?", e.host)
}

func (e connectionError) Unwrap() error { return e.cause }

func wrapConnError(host string, err error) error {
	if err == nil || !client.IsErrConnectionFailed(err) {
		return err
	}
	var ce connectionError
	if errors.As(err, &ce) {
		return err
	}
	return connectionError{host: host, cause: err}
}

func pluralize(word string, n int) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// noArgs refuses arguments (or names the unknown subcommand of a
// management command), with docker's wording.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	bin := cmd.Root().Name()
	if cmd.HasSubCommands() {
		return fmt.Errorf("%[1]s: unknown command: %[2]s %[3]s\n\nUsage:  %[4]s\n\nRun '%[2]s --help' for more information", bin, cmd.CommandPath(), args[0], cmd.UseLine())
	}
	return fmt.Errorf("%[1]s: '%[2]s' accepts no arguments\n\nUsage:  %[3]s\n\nRun '%[2]s --help' for more information", bin, cmd.CommandPath(), cmd.UseLine())
}

func requiresMinArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= n {
			return nil
		}
		return fmt.Errorf("%[1]s: '%[2]s' requires at least %[3]d %[4]s\n\nUsage:  %[5]s\n\nSee '%[2]s --help' for more information",
			cmd.Root().Name(), cmd.CommandPath(), n, pluralize("argument", n), cmd.UseLine())
	}
}

func requiresMaxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) <= n {
			return nil
		}
		return fmt.Errorf("%[1]s: '%[2]s' requires at most %[3]d %[4]s\n\nUsage:  %[5]s\n\nRun '%[2]s --help' for more information",
			cmd.Root().Name(), cmd.CommandPath(), n, pluralize("argument", n), cmd.UseLine())
	}
}

func requiresRangeArgs(lo, hi int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) >= lo && len(args) <= hi {
			return nil
		}
		return fmt.Errorf("%[1]s: '%[2]s' requires at least %[3]d and at most %[4]d %[5]s\n\nUsage:  %[6]s\n\nRun '%[2]s --help' for more information",
			cmd.Root().Name(), cmd.CommandPath(), lo, hi, pluralize("argument", hi), cmd.UseLine())
	}
}

func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == n {
			return nil
		}
		return fmt.Errorf("%[1]s: '%[2]s' requires %[3]d %[4]s\n\nUsage:  %[5]s\n\nRun '%[2]s --help' for more information",
			cmd.Root().Name(), cmd.CommandPath(), n, pluralize("argument", n), cmd.UseLine())
	}
}
