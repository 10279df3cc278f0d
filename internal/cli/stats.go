package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/berth-engine/berth/internal/cli/formatter"
	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

type statsOptions struct {
	all, noStream, noTrunc bool
	format                 string
}

const defaultStatsFormat = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"

// statsHeader names the columns of the stats table.
var statsHeader = map[string]string{
	"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
	"MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
}

func (c *berthCLI) newStatsCommand() *cobra.Command {
	var o statsOptions
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [CONTAINER...]",
		Short: "Display a live stream of container(s) resource usage statistics",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.runStats(cmd.Context(), &o, args)
		},
		Annotations: map[string]string{"aliases": "berth container stats, berth stats"},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.all, "all", "a", false, "Show all containers (default shows just running)")
	f.BoolVar(&o.noStream, "no-stream", false, "Disable streaming stats and only pull the first result")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "Do not truncate output")
	f.StringVar(&o.format, "format", "", "Format output using a custom template:\n'table':            Print output in table format with column headers (default)\n'table TEMPLATE':   Print output in table format using the given Go template\n'json':             Print in JSON format\n'TEMPLATE':         Print output using the given Go template.")
	return cmd
}

// statsEntry is one container's row.
type statsEntry struct {
	Container, Name, id          string
	cpu, mem, memLimit, memPerc  float64
	netRx, netTx, blkRead, blkWr float64
	pids                         uint64
	noTrunc, err                 bool
}

func (s statsEntry) ID() string {
	if s.noTrunc || len(s.id) < 12 {
		return s.id
	}
	return s.id[:12]
}
func (s statsEntry) CPUPerc() string {
	if s.err {
		return "--"
	}
	return fmt.Sprintf("%.2f%%", s.cpu)
}
func (s statsEntry) MemUsage() string {
	if s.err {
		return "-- / --"
	}
	return units.BytesSize(s.mem) + " / " + units.BytesSize(s.memLimit)
}
func (s statsEntry) MemPerc() string {
	if s.err {
		return "--"
	}
	return fmt.Sprintf("%.2f%%", s.memPerc)
}
func (s statsEntry) NetIO() string {
	if s.err {
		return "--"
	}
	return humanSize(s.netRx) + " / " + humanSize(s.netTx)
}
func (s statsEntry) BlockIO() string {
	if s.err {
		return "--"
	}
	return humanSize(s.blkRead) + " / " + humanSize(s.blkWr)
}
func (s statsEntry) PIDs() string {
	if s.err {
		return "--"
	}
	return fmt.Sprint(s.pids)
}

// MarshalJSON is the row of --format json.
func (s statsEntry) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]string{
		"BlockIO": s.BlockIO(), "CPUPerc": s.CPUPerc(), "Container": s.Container, "ID": s.ID(), "MemPerc": s.MemPerc(),
		"MemUsage": s.MemUsage(), "Name": s.Name, "NetIO": s.NetIO(), "PIDs": s.PIDs(),
	})
}

// entryFrom computes a row as docker's CLI does (memory without the page
// cache's inactive files; CPU % over the sample's delta).
func entryFrom(name string, v *container.StatsResponse) statsEntry {
	e := statsEntry{Container: name, Name: strings.TrimPrefix(v.Name, "/"), id: v.ID}
	cpuDelta := float64(v.CPUStats.CPUUsage.TotalUsage) - float64(v.PreCPUStats.CPUUsage.TotalUsage)
	sysDelta := float64(v.CPUStats.SystemUsage) - float64(v.PreCPUStats.SystemUsage)
	cpus := float64(v.CPUStats.OnlineCPUs)
	if cpus == 0 {
		cpus = float64(len(v.CPUStats.CPUUsage.PercpuUsage))
	}
	if sysDelta > 0 && cpuDelta > 0 && v.PreCPUStats.SystemUsage != 0 {
		e.cpu = cpuDelta / sysDelta * cpus * 100
	}
	mem := float64(v.MemoryStats.Usage)
	if st := v.MemoryStats.Stats; st != nil {
		if x, ok := st["total_inactive_file"]; ok && float64(x) < mem {
			mem -= float64(x)
		} else if x, ok := st["inactive_file"]; ok && float64(x) < mem {
			mem -= float64(x)
		}
	}
	e.mem, e.memLimit = mem, float64(v.MemoryStats.Limit)
	if e.memLimit > 0 {
		e.memPerc = mem / e.memLimit * 100
	}
	for _, n := range v.Networks {
		e.netRx += float64(n.RxBytes)
		e.netTx += float64(n.TxBytes)
	}
	for _, b := range v.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(b.Op) {
		case "read":
			e.blkRead += float64(b.Value)
		case "write":
			e.blkWr += float64(b.Value)
		}
	}
	e.pids = v.PidsStats.Current
	return e
}

func (c *berthCLI) runStats(ctx context.Context, o *statsOptions, names []string) error {
	api, err := c.Client()
	if err != nil {
		return err
	}
	format := o.format
	if format == "" || format == formatter.TableFormatKey {
		format = defaultStatsFormat
	}
	isJSON := format == formatter.JSONFormatKey
	table := strings.HasPrefix(format, formatter.TableFormatKey)
	var tmpl *template.Template
	if !isJSON {
		body := strings.TrimSpace(strings.TrimPrefix(format, formatter.TableFormatKey))
		if tmpl, err = formatter.ParseTemplate(body); err != nil {
			return fmt.Errorf("template parsing error: %w", err)
		}
	}
	render := func(entries []statsEntry) string {
		var buf bytes.Buffer
		tw := tabwriter.NewWriter(&buf, 10, 1, 3, ' ', 0)
		if table {
			_ = tmpl.Execute(tw, statsHeader)
			fmt.Fprintln(tw)
		}
		for _, e := range entries {
			e.noTrunc = o.noTrunc
			if isJSON {
				b, _ := json.Marshal(e)
				tw.Write(append(b, '\n'))
				continue
			}
			_ = tmpl.Execute(tw, e)
			fmt.Fprintln(tw)
		}
		_ = tw.Flush()
		return buf.String()
	}

	explicit := len(names) > 0
	list := func() ([]string, error) {
		if explicit {
			return names, nil
		}
		res, err := api.ContainerList(ctx, client.ContainerListOptions{All: o.all})
		if err != nil {
			return nil, err
		}
		var ids []string
		for _, s := range res.Items {
			ids = append(ids, s.ID)
		}
		return ids, nil
	}

	if o.noStream {
		ids, err := list()
		if err != nil {
			return err
		}
		entries := make([]statsEntry, len(ids))
		errs := parallel(ctx, ids, func(ctx context.Context, id string) error {
			res, err := api.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: false, IncludePreviousSample: true})
			if err != nil {
				return err
			}
			defer res.Body.Close()
			var v container.StatsResponse
			if err := json.NewDecoder(res.Body).Decode(&v); err != nil {
				return err
			}
			for i := range ids {
				if ids[i] == id {
					entries[i] = entryFrom(id, &v)
				}
			}
			return nil
		})
		for _, err := range errs {
			if err != nil && explicit {
				return err
			}
		}
		var ok []statsEntry
		for i, e := range entries {
			if errs[i] == nil {
				ok = append(ok, e)
			}
		}
		_, err = io.WriteString(c.out, render(ok))
		return err
	}

	// Streaming: one stats stream per container, the screen redrawn each
	// second.
	var mu sync.Mutex
	latest := map[string]statsEntry{}
	order := []string{}
	watching := map[string]bool{}
	var firstErr error
	watch := func(id string) {
		mu.Lock()
		if watching[id] {
			mu.Unlock()
			return
		}
		watching[id] = true
		order = append(order, id)
		mu.Unlock()
		go func() {
			defer func() {
				mu.Lock()
				delete(watching, id)
				if !explicit {
					delete(latest, id)
					for i, x := range order {
						if x == id {
							order = append(order[:i], order[i+1:]...)
							break
						}
					}
				}
				mu.Unlock()
			}()
			res, err := api.ContainerStats(ctx, id, client.ContainerStatsOptions{Stream: true})
			if err != nil {
				mu.Lock()
				if explicit && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			defer res.Body.Close()
			dec := json.NewDecoder(res.Body)
			for {
				var v container.StatsResponse
				if err := dec.Decode(&v); err != nil {
					return
				}
				mu.Lock()
				latest[id] = entryFrom(id, &v)
				mu.Unlock()
			}
		}()
	}
	ids, err := list()
	if err != nil {
		return err
	}
	for _, id := range ids {
		watch(id)
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !explicit {
			if ids, err := list(); err == nil {
				for _, id := range ids {
					watch(id)
				}
			}
		}
		mu.Lock()
		if firstErr != nil {
			err := firstErr
			mu.Unlock()
			return err
		}
		var entries []statsEntry
		for _, id := range order {
			if e, ok := latest[id]; ok {
				entries = append(entries, e)
			}
		}
		mu.Unlock()
		out := render(entries)
		if c.out.IsTerminal() {
			out = "\033[2J\033[H" + out
		}
		if _, err := io.WriteString(c.out, out); err != nil {
			return err
		}
		if len(entries) == 0 && explicit && len(order) == 0 {
			return errors.New("no containers to watch")
		}
	}
}
