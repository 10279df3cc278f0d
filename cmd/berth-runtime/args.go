package main

import (
	"fmt"
	"strconv"
	"strings"
)

// flagDef describes one flag of runc's command line.
type flagDef struct {
	name  string // canonical long name
	short string // one-letter alias, or ""
	value bool   // takes a value (else boolean)
}

// parsedArgs is a parsed command line: flag values by canonical name
// (booleans as "true"/"false") and the positional arguments.
type parsedArgs struct {
	flags map[string]string
	pos   []string
}

func (p parsedArgs) str(name string) string { return p.flags[name] }

func (p parsedArgs) bool(name string) bool { return p.flags[name] == "true" }

// parseArgs parses args against defs the way runc's CLI library does:
// --name value, --name=value, -n value, single or double dash; boolean
// flags take no value but accept =true/=false. Flags may follow positional
// arguments; "--" ends the flags. With stopAtPositional the first
// positional argument ends the flags (for the global flags, which precede
// the command).
func parseArgs(args []string, defs []flagDef, stopAtPositional bool) (parsedArgs, error) {
	p := parsedArgs{flags: map[string]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			p.pos = append(p.pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			if stopAtPositional {
				p.pos = append(p.pos, args[i:]...)
				break
			}
			p.pos = append(p.pos, a)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		name, val, hasVal := strings.Cut(name, "=")
		var def *flagDef
		for j := range defs {
			if defs[j].name == name || defs[j].short != "" && defs[j].short == name {
				def = &defs[j]
				break
			}
		}
		if def == nil || name == "" {
			return p, fmt.Errorf("flag provided but not defined: %s", a)
		}
		switch {
		case def.value && hasVal:
		case def.value:
			if i+1 >= len(args) {
				return p, fmt.Errorf("flag needs an argument: %s", a)
			}
			i++
			val = args[i]
		case hasVal:
			b, err := strconv.ParseBool(val)
			if err != nil {
				return p, fmt.Errorf("invalid boolean value %q for %s", val, a)
			}
			val = strconv.FormatBool(b)
		default:
			val = "true"
		}
		p.flags[def.name] = val
	}
	return p, nil
}

// wantArgs checks the number of positional arguments of a command, with
// runc's wording.
func wantArgs(cmd string, p parsedArgs, min, max int) error {
	n := len(p.pos)
	switch {
	case min == max && n != min:
		return fmt.Errorf("%q requires exactly %d argument(s)", cmd, min)
	case n < min:
		return fmt.Errorf("%q requires a minimum of %d argument(s)", cmd, min)
	case n > max:
		return fmt.Errorf("%q requires a maximum of %d argument(s)", cmd, max)
	}
	return nil
}
