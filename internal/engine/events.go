package engine

import (
	"context"
	"maps"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/container"
	"github.com/berth-engine/berth/internal/events"
	"github.com/containerd/errdefs"
	eventtypes "github.com/moby/moby/api/types/events"
)

// EventService implements api.EventsBackend over the event bus.
type EventService struct {
	bus *events.Bus
}

var _ api.EventsBackend = (*EventService)(nil)

// Events implements GET /events.
func (s *EventService) Events(ctx context.Context, opts api.EventsOptions) ([]eventtypes.Message, <-chan eventtypes.Message, error) {
	f := events.Filters(opts.Filters)
	if err := f.Validate(); err != nil {
		return nil, nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	past, live := s.bus.Subscribe(ctx, opts.Since, opts.Until, f.Match)
	return past, live, nil
}

// emitContainer publishes a container event with docker's attributes: the
// container's labels, its name and image, plus extra.
func (s *ContainerService) emitContainer(c *container.Container, action eventtypes.Action, extra map[string]string) {
	if s.ev == nil {
		return
	}
	attrs := make(map[string]string, 2+len(extra))
	if c.Config != nil {
		maps.Copy(attrs, c.Config.Labels)
		attrs["image"] = c.Config.Image
	}
	attrs["name"] = c.Name
	maps.Copy(attrs, extra)
	s.ev.Publish(eventtypes.Message{
		Type:   eventtypes.ContainerEventType,
		Action: action,
		Actor:  eventtypes.Actor{ID: c.ID, Attributes: attrs},
	})
}
