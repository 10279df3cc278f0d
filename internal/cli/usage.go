package cli

import (
	"sort"
	"strconv"
	"sync"

	"github.com/spf13/cobra"
)

var templateFuncsOnce sync.Once

// setupTemplateFuncs registers the helpers of docker's help layout with
// cobra (cobra's template functions are global).
func setupTemplateFuncs() {
	templateFuncsOnce.Do(func() {
		cobra.AddTemplateFunc("add", func(a, b int) int { return a + b })
		cobra.AddTemplateFunc("hasAliases", func(cmd *cobra.Command) bool {
			return len(cmd.Aliases) > 0 || cmd.Annotations["aliases"] != ""
		})
		cobra.AddTemplateFunc("commandAliases", commandAliases)
		cobra.AddTemplateFunc("hasSubCommands", func(cmd *cobra.Command) bool { return len(operationSubCommands(cmd)) > 0 })
		cobra.AddTemplateFunc("hasTopCommands", func(cmd *cobra.Command) bool { return len(topCommands(cmd)) > 0 })
		cobra.AddTemplateFunc("hasManagementSubCommands", func(cmd *cobra.Command) bool { return len(managementSubCommands(cmd)) > 0 })
		cobra.AddTemplateFunc("topCommands", topCommands)
		cobra.AddTemplateFunc("operationSubCommands", operationSubCommands)
		cobra.AddTemplateFunc("managementSubCommands", managementSubCommands)
		cobra.AddTemplateFunc("wrappedFlagUsages", wrappedFlagUsages)
		cobra.AddTemplateFunc("hasAdditionalHelp", func(cmd *cobra.Command) bool { return cmd.Annotations["additionalHelp"] != "" })
		cobra.AddTemplateFunc("additionalHelp", func(cmd *cobra.Command) string { return cmd.Annotations["additionalHelp"] })
	})
}

// commandAliases lists a command's full invocations ("berth container ls,
// berth ps").
func commandAliases(cmd *cobra.Command) string {
	if a := cmd.Annotations["aliases"]; a != "" {
		return a
	}
	var parent string
	if cmd.HasParent() {
		parent = cmd.Parent().CommandPath() + " "
	}
	out := cmd.CommandPath()
	for _, a := range cmd.Aliases {
		out += ", " + parent + a
	}
	return out
}

func topCommands(cmd *cobra.Command) []*cobra.Command {
	var cmds []*cobra.Command
	if cmd.HasParent() {
		return cmds
	}
	for _, sub := range cmd.Commands() {
		if !sub.IsAvailableCommand() {
			continue
		}
		if _, ok := sub.Annotations["category-top"]; ok {
			cmds = append(cmds, sub)
		}
	}
	sort.SliceStable(cmds, func(i, j int) bool {
		a, _ := strconv.Atoi(cmds[i].Annotations["category-top"])
		b, _ := strconv.Atoi(cmds[j].Annotations["category-top"])
		return a < b
	})
	return cmds
}

func operationSubCommands(cmd *cobra.Command) []*cobra.Command {
	var cmds []*cobra.Command
	for _, sub := range cmd.Commands() {
		if _, ok := sub.Annotations["category-top"]; ok && !cmd.HasParent() {
			continue
		}
		if sub.IsAvailableCommand() && !sub.HasSubCommands() {
			cmds = append(cmds, sub)
		}
	}
	return cmds
}

func managementSubCommands(cmd *cobra.Command) []*cobra.Command {
	var cmds []*cobra.Command
	for _, sub := range cmd.Commands() {
		if sub.IsAvailableCommand() && sub.HasSubCommands() {
			cmds = append(cmds, sub)
		}
	}
	return cmds
}

// wrappedFlagUsages wraps flag help to the terminal's width (80 when
// stdout is not a terminal), as docker does.
func wrappedFlagUsages(cmd *cobra.Command) string {
	width := 80
	if o, ok := cmd.OutOrStdout().(*outStream); ok {
		if _, w := o.GetTtySize(); w > 0 {
			width = int(w)
		}
	}
	return cmd.Flags().FlagUsagesWrapped(width - 1)
}

const usageTemplate = `Usage:

{{- if not .HasSubCommands}}  {{.UseLine}}{{end}}
{{- if .HasSubCommands}}  {{ .CommandPath}}{{- if .HasAvailableFlags}} [OPTIONS]{{end}} COMMAND{{end}}

{{if ne .Long ""}}{{ .Long | trim }}{{ else }}{{ .Short | trim }}{{end}}
{{- if hasAliases . }}

Aliases:
  {{ commandAliases . }}

{{- end}}
{{- if .HasExample}}

Examples:
{{ .Example }}

{{- end}}
{{- if .HasParent}}
{{- if .HasAvailableFlags}}

Options:
{{ wrappedFlagUsages . | trimRightSpace}}

{{- end}}
{{- end}}
{{- if hasTopCommands .}}

Common Commands:
{{- range topCommands .}}
  {{rpad .Name (add .NamePadding 1)}}{{.Short}}
{{- end}}
{{- end}}
{{- if hasManagementSubCommands . }}

Management Commands:

{{- range managementSubCommands . }}
  {{rpad .Name (add .NamePadding 1)}}{{.Short}}
{{- end}}

{{- end}}
{{- if hasSubCommands .}}

Commands:

{{- range operationSubCommands . }}
  {{rpad .Name .NamePadding }} {{.Short}}
{{- end}}
{{- end}}
{{- if not .HasParent}}
{{- if .HasAvailableFlags}}

Global Options:
{{ wrappedFlagUsages . | trimRightSpace}}

{{- end}}
{{- end}}

{{- if .HasSubCommands }}

Run '{{.CommandPath}} COMMAND --help' for more information on a command.
{{- end}}
{{- if hasAdditionalHelp .}}

{{ additionalHelp . }}

{{- end}}
`

const helpTemplate = `{{if or .Runnable .HasSubCommands}}{{.UsageString}}{{end}}`
