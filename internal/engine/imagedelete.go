package engine

import (
	"context"
	"fmt"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/image"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/berth-engine/berth/internal/stringid"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	imagetypes "github.com/moby/moby/api/types/image"
	"github.com/opencontainers/go-digest"
)

// Remove implements DELETE /images/{name} with docker's rules: removing a
// name only untags while other names remain; the last name of an image used
// by a container needs force; an ID with several names needs force; an image
// used by a running container or with child images can't be removed at all.
func (s *ImageService) Remove(ctx context.Context, name string, force, noPrune bool) ([]imagetypes.DeleteResponse, error) {
	var id string
	if img, err := s.st.Images.Resolve(ctx, name); err == nil {
		id = img.ID.String()
	}
	records, err := s.remove(ctx, name, force, noPrune)
	s.emitDeleteRecords(id, records)
	return records, err
}

func (s *ImageService) remove(ctx context.Context, name string, force, noPrune bool) ([]imagetypes.DeleteResponse, error) {
	img, err := s.st.Images.Resolve(ctx, name)
	if err != nil {
		return nil, err
	}
	refs, err := s.st.Images.References(ctx, img.ID)
	if err != nil {
		return nil, err
	}
	records := []imagetypes.DeleteResponse{}
	short := stringid.Truncate(img.ID.String())
	removedRef := false
	if !isIDReference(name, img.ID) {
		ref, err := image.ParseReference(name)
		if err != nil {
			return nil, err
		}
		if !force && isSingleReference(refs) {
			if running, stopped := s.users.ImageUsers(img.ID); len(running)+len(stopped) > 0 {
				user := append(running, stopped...)[0]
				return nil, errdefs.ErrConflict.WithMessage(fmt.Sprintf("conflict: unable to remove repository reference %q (must force) - container %s is using its referenced image %s", name, stringid.Truncate(user), short))
			}
		}
		if err := s.st.Images.DeleteReference(ctx, ref); err != nil {
			return nil, err
		}
		records = append(records, imagetypes.DeleteResponse{Untagged: reference.FamiliarString(ref)})
		refs, _ = s.st.Images.References(ctx, img.ID)
		// A tag removed whose repository keeps only digest references:
		// those go too, as in docker.
		if _, canonical := ref.(reference.Canonical); !canonical {
			sameRepoTag := false
			for _, r := range refs {
				if _, c := r.(reference.Canonical); !c && r.Name() == ref.Name() {
					sameRepoTag = true
				}
			}
			if !sameRepoTag {
				var keep []reference.Named
				for _, r := range refs {
					if _, c := r.(reference.Canonical); c && r.Name() == ref.Name() {
						if err := s.st.Images.DeleteReference(ctx, r); err == nil {
							records = append(records, imagetypes.DeleteResponse{Untagged: reference.FamiliarString(r)})
						}
						continue
					}
					keep = append(keep, r)
				}
				refs = keep
			}
		}
		if len(refs) > 0 {
			return records, nil
		}
		removedRef = true
	} else if isSingleReference(refs) {
		if err := s.deleteConflict(img, force, false); err != nil {
			return nil, err
		}
		for _, r := range refs {
			if err := s.st.Images.DeleteReference(ctx, r); err == nil {
				records = append(records, imagetypes.DeleteResponse{Untagged: reference.FamiliarString(r)})
			}
		}
		refs = nil
	}
	if err := s.deleteImage(ctx, img, refs, force, removedRef, &records); err != nil {
		return records, err
	}
	if !noPrune {
		s.pruneParents(ctx, img.Parent, &records)
	}
	return records, nil
}

// pruneParents deletes the untagged local parents (a build's intermediate
// images) that nothing else uses any more, as docker's rmi does unless
// --no-prune.
func (s *ImageService) pruneParents(ctx context.Context, id digest.Digest, records *[]imagetypes.DeleteResponse) {
	for id != "" {
		parent, err := s.st.Images.Get(ctx, id)
		if err != nil {
			return
		}
		if refs, _ := s.st.Images.References(ctx, id); len(refs) > 0 {
			return
		}
		if len(s.children(id)) > 0 {
			return
		}
		if running, stopped := s.users.ImageUsers(id); len(running)+len(stopped) > 0 {
			return
		}
		if err := s.deleteImage(ctx, parent, nil, false, false, records); err != nil {
			return
		}
		id = parent.Parent
	}
}

// isSingleReference is docker's rule: at most one tag, and any digest
// references in that tag's repository only.
func isSingleReference(refs []reference.Named) bool {
	if len(refs) <= 1 {
		return len(refs) == 1
	}
	var single reference.Named
	canonical := map[string]bool{}
	for _, r := range refs {
		if _, ok := r.(reference.Canonical); ok {
			canonical[r.Name()] = true
		} else if single == nil {
			single = r
		} else {
			return false
		}
	}
	if single == nil {
		single = refs[0]
	}
	return len(canonical) == 1 && canonical[single.Name()]
}

// deleteConflict reports why img can't be deleted: hard conflicts (running
// containers, child images) always, soft ones (stopped containers, names)
// unless forced.
func (s *ImageService) deleteConflict(img *image.Image, force, checkRefs bool) error {
	short := stringid.Truncate(img.ID.String())
	hard := func(why string) error {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("conflict: unable to delete %s (cannot be forced) - %s", short, why))
	}
	soft := func(why string) error {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("conflict: unable to delete %s (must be forced) - %s", short, why))
	}
	if children := s.children(img.ID); len(children) > 0 {
		return hard("image has dependent child images")
	}
	running, stopped := s.users.ImageUsers(img.ID)
	if len(running) > 0 {
		return hard("image is being used by running container " + stringid.Truncate(running[0]))
	}
	if force {
		return nil
	}
	if checkRefs {
		return soft("image is referenced in multiple repositories")
	}
	if len(stopped) > 0 {
		return soft("image is being used by stopped container " + stringid.Truncate(stopped[0]))
	}
	return nil
}

func (s *ImageService) children(id digest.Digest) []digest.Digest {
	imgs, _ := s.st.Images.List(context.Background())
	var out []digest.Digest
	for _, img := range imgs {
		if img.Parent == id {
			out = append(out, img.ID)
		}
	}
	return out
}

// deleteImage removes the record, its remaining references, the layers no
// other image or container needs, and blobs nothing else references.
func (s *ImageService) deleteImage(ctx context.Context, img *image.Image, refs []reference.Named, force, quietOnConflict bool, records *[]imagetypes.DeleteResponse) error {
	if err := s.deleteConflict(img, force, len(refs) > 0); err != nil {
		if quietOnConflict && len(refs) == 0 {
			// The last name was removed but a container still uses the
			// image: docker keeps it, now dangling.
			if running, stopped := s.users.ImageUsers(img.ID); len(running)+len(stopped) > 0 {
				return nil
			}
		}
		return err
	}
	for _, r := range refs {
		if err := s.st.Images.DeleteReference(ctx, r); err == nil {
			*records = append(*records, imagetypes.DeleteResponse{Untagged: reference.FamiliarString(r)})
		}
	}
	s.gc.Lock()
	defer s.gc.Unlock()
	if err := s.st.Images.Delete(ctx, img.ID); err != nil {
		return err
	}
	*records = append(*records, imagetypes.DeleteResponse{Deleted: img.ID.String()})
	// Layers top-down: a chain still used by another image's layer or a
	// container's writable layer is a parent the snapshotter refuses to
	// remove, which stops the walk.
	chains := img.ChainIDs()
	for i := len(chains) - 1; i >= 0; i-- {
		if s.chainInUse(ctx, chains[i]) {
			break
		}
		if err := s.st.Snapshots.Remove(ctx, chains[i].String()); err != nil {
			if !errdefs.IsNotFound(err) {
				s.log.Debug("keeping layer", "chain", chains[i], "err", err)
				break
			}
			continue
		}
		*records = append(*records, imagetypes.DeleteResponse{Deleted: chains[i].String()})
	}
	s.sweepBlobs(ctx, img)
	return nil
}

// gcSnapshots removes committed layers that no image references any more
// and nothing builds on (left behind when an image was force-removed while a
// container still used it). Callers hold s.gc exclusively.
func gcSnapshots(ctx context.Context, st Stores) {
	imgs, err := st.Images.List(ctx)
	if err != nil {
		return
	}
	wanted := map[string]bool{}
	for _, img := range imgs {
		for _, c := range img.ChainIDs() {
			wanted[c.String()] = true
		}
	}
	for {
		parents := map[string]bool{}
		var committed []string
		_ = st.Snapshots.Walk(ctx, func(info snapshot.Info) error {
			if info.Parent != "" {
				parents[info.Parent] = true
			}
			if info.Kind == snapshot.KindCommitted {
				committed = append(committed, info.Name)
			}
			return nil
		})
		removed := 0
		for _, name := range committed {
			if wanted[name] || parents[name] {
				continue
			}
			if err := st.Snapshots.Remove(ctx, name); err == nil {
				removed++
			}
		}
		if removed == 0 {
			return
		}
	}
}

// chainInUse reports whether another image's layer stack contains chain.
func (s *ImageService) chainInUse(ctx context.Context, chain digest.Digest) bool {
	imgs, _ := s.st.Images.List(ctx)
	for _, other := range imgs {
		for _, c := range other.ChainIDs() {
			if c == chain {
				return true
			}
		}
	}
	return false
}

// sweepBlobs deletes the deleted image's blobs that no remaining image
// references. Callers hold s.gc exclusively.
func (s *ImageService) sweepBlobs(ctx context.Context, img *image.Image) {
	used := map[digest.Digest]bool{}
	imgs, err := s.st.Images.List(ctx)
	if err != nil {
		return
	}
	for _, other := range imgs {
		used[other.ID] = true
		used[other.Manifest] = true
		for _, l := range other.Layers {
			used[l.Digest] = true
		}
	}
	candidates := []digest.Digest{img.ID, img.Manifest}
	for _, l := range img.Layers {
		candidates = append(candidates, l.Digest)
	}
	for _, d := range candidates {
		if d == "" || used[d] {
			continue
		}
		if err := s.st.Content.Delete(ctx, d); err != nil && !errdefs.IsNotFound(err) {
			s.log.Warn("delete blob", "digest", d, "err", err)
		}
	}
}

// Prune implements POST /images/prune: dangling images, or with
// dangling=false every image no container uses.
func (s *ImageService) Prune(ctx context.Context, fs api.Filters) (imagetypes.PruneReport, error) {
	danglingOnly := true
	if v := fs["dangling"]; len(v) == 1 && (v[0] == "false" || v[0] == "0") {
		danglingOnly = false
	}
	// label!= (keep what carries the label) is a prune filter only.
	notLabels := fs["label!"]
	f, err := s.newImageFilter(ctx, withoutKey(withoutKey(fs, "dangling"), "label!"))
	if err != nil {
		return imagetypes.PruneReport{}, err
	}
	report := imagetypes.PruneReport{ImagesDeleted: []imagetypes.DeleteResponse{}}
	imgs, err := s.st.Images.List(ctx)
	if err != nil {
		return report, err
	}
	for _, img := range imgs {
		tags, digests := s.repoTagsAndDigests(ctx, img.ID)
		if danglingOnly && len(tags) > 0 {
			continue
		}
		if !f.match(img, tags, digests) || matchAnyLabel(notLabels, img.Config.Config.Labels) {
			continue
		}
		if running, stopped := s.users.ImageUsers(img.ID); len(running)+len(stopped) > 0 {
			continue
		}
		if len(s.children(img.ID)) > 0 {
			continue
		}
		size := s.imageSize(ctx, img)
		refs, _ := s.st.Images.References(ctx, img.ID)
		var recs []imagetypes.DeleteResponse
		if err := s.deleteImage(ctx, img, refs, true, false, &recs); err != nil {
			s.log.Warn("prune image", "id", img.ID, "err", err)
			continue
		}
		report.ImagesDeleted = append(report.ImagesDeleted, recs...)
		report.SpaceReclaimed += uint64(size)
	}
	return report, nil
}

func withoutKey(fs api.Filters, key string) api.Filters {
	out := api.Filters{}
	for k, v := range fs {
		if k != key {
			out[k] = v
		}
	}
	return out
}
