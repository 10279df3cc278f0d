package shim

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berth-engine/berth/internal/shim/wire"
)

// HealthConfig is what the shim's health check runs; WriteHealthConfig
// puts it in the bundle before Spawn.
type HealthConfig = wire.HealthConfig

// HealthState is a shim's health record: status, failing streak, the last
// results.
type HealthState = wire.HealthState

// HealthResult is one probe's outcome.
type HealthResult = wire.HealthResult

// HealthNotice is a shim's datagram about a health status change.
type HealthNotice = wire.HealthNotice

// ParseHealthNotice decodes a shim's datagram.
func ParseHealthNotice(b []byte) (HealthNotice, error) { return wire.ParseHealthNotice(b) }

// Health statuses.
const (
	HealthStarting  = wire.HealthStarting
	HealthHealthy   = wire.HealthHealthy
	HealthUnhealthy = wire.HealthUnhealthy
)

// HealthProcessPath is where the probe's OCI process goes in a bundle.
func HealthProcessPath(bundle string) string {
	return filepath.Join(bundle, wire.HealthProcessFile)
}

// WriteHealthConfig writes the health check's configuration and its
// probe's process (OCI process JSON) to the bundle; a shim spawned on
// the bundle afterwards runs the check once the container starts.
func WriteHealthConfig(bundle string, cfg HealthConfig, process []byte) error {
	cfg.Process = HealthProcessPath(bundle)
	if err := os.WriteFile(cfg.Process, process, 0o600); err != nil {
		return fmt.Errorf("write health check process: %w", err)
	}
	data := wire.AppendHealthConfig(nil, cfg)
	if _, err := wire.ParseHealthConfig(data); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bundle, wire.HealthConfigFile), data, 0o600); err != nil {
		return fmt.Errorf("write health config: %w", err)
	}
	return nil
}

// ReadHealthState reads the state a shim left in the bundle when its
// container exited.
func ReadHealthState(bundle string) (HealthState, error) {
	data, err := os.ReadFile(filepath.Join(bundle, wire.HealthStateFile))
	if err != nil {
		return HealthState{}, err
	}
	return wire.ParseHealthState(data)
}

// Health asks the shim for its container's health state. It fails with
// errdefs.ErrNotFound when the shim runs no health check.
func (c *Client) Health(ctx context.Context) (HealthState, error) {
	conn, stop, err := c.dial(ctx)
	if err != nil {
		return HealthState{}, err
	}
	defer conn.Close()
	defer stop()
	if err := writeRequest(conn, wire.Request{Op: wire.OpHealth}); err != nil {
		return HealthState{}, c.lost(ctx, err)
	}
	line, err := readLineLimited(bufio.NewReaderSize(conn, 4096))
	if err != nil {
		return HealthState{}, c.lost(ctx, err)
	}
	// An error comes as a Response; a state has no error member.
	if _, err := c.decode(line); err != nil {
		return HealthState{}, err
	}
	st, err := wire.ParseHealthState(line)
	if err != nil {
		return HealthState{}, fmt.Errorf("shim %s: %w", c.socket, err)
	}
	return st, nil
}
