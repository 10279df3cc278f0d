package engine

import (
	eventtypes "github.com/moby/moby/api/types/events"
	imagetypes "github.com/moby/moby/api/types/image"
)

// emitImage publishes an image event: actor is the image ID (or reference,
// for load), name the reference involved.
func (s *ImageService) emitImage(action eventtypes.Action, actor, name string) {
	if s.st.Events == nil {
		return
	}
	attrs := map[string]string{}
	if name != "" {
		attrs["name"] = name
	}
	s.st.Events.Publish(eventtypes.Message{
		Type:   eventtypes.ImageEventType,
		Action: action,
		Actor:  eventtypes.Actor{ID: actor, Attributes: attrs},
	})
}

// emitDeleteRecords publishes untag and delete events for what an image
// removal did.
func (s *ImageService) emitDeleteRecords(id string, records []imagetypes.DeleteResponse) {
	for _, r := range records {
		switch {
		case r.Untagged != "":
			s.emitImage(eventtypes.ActionUnTag, id, r.Untagged)
		case r.Deleted != "":
			s.emitImage(eventtypes.ActionDelete, r.Deleted, "")
		}
	}
}
