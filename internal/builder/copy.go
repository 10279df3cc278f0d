package builder

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-engine/berth/internal/api"
	"github.com/berth-engine/berth/internal/snapshot"
	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/go-archive/compression"
	containertypes "github.com/moby/moby/api/types/container"
	"github.com/moby/sys/user"
	"github.com/opencontainers/go-digest"
)

// copySpec is a COPY or ADD after expansion.
type copySpec struct {
	name     string // "COPY" or "ADD"
	text     string
	srcs     []string
	contents []instructions.SourceContent // heredoc sources
	dest     string
	from     string
	chown    string
	chmod    string
	add      bool
}

// source is one file or tree to copy.
type source struct {
	fsys srcFS  // the filesystem it is in
	rel  string // its path under the root ("" for the root itself)
	fi   os.FileInfo
	// data, for heredocs and downloads, replaces the file's content.
	name string
	data []byte
}

func (r *run) copyStep(ctx context.Context, stage int, st *stageState, c copySpec) error {
	var fsys srcFS = r.ctx.fs
	if c.from != "" {
		if c.add {
			return errdefs.ErrInvalidArgument.WithMessage("ADD does not support --from")
		}
		id, err := r.fromImage(ctx, stage, c.from)
		if err != nil {
			return err
		}
		dir, release, err := r.b.mountImage(ctx, id)
		if err != nil {
			return err
		}
		defer release()
		fsys = dirFS{root: dir}
	}
	uid, gid, err := r.chownIDs(ctx, st, c.chown)
	if err != nil {
		return err
	}
	srcs, dest, destIsDir, mode, err := r.copyPlan(ctx, fsys, st, c)
	if err != nil {
		return err
	}

	// One pass writes the layer into the content store and hashes the
	// content (names, modes, owners and bytes, not times) for the cache.
	w, err := r.b.d.Content.Writer(ctx)
	if err != nil {
		return err
	}
	defer w.Close()
	sum := sha256.New()
	tw := tar.NewWriter(w)
	cw := &copyWriter{tw: tw, sum: sum, uid: uid, gid: gid, mode: mode, now: time.Now()}
	for _, s := range srcs {
		if err := cw.copy(s, dest, destIsDir, c.add); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	contentSum := hex.EncodeToString(sum.Sum(nil))
	createdBy := fmt.Sprintf("/bin/sh -c #(nop) %s %s:%s in %s ", c.name, kindOf(srcs), contentSum, dest)
	key := r.cacheKey(st, "copy", c.name, contentSum, dest, c.chown, c.chmod, configDigest(st.cfg.Config))
	if r.useCache(ctx, st, key) {
		return nil
	}
	if !destIsDir && len(srcs) == 1 && (srcs[0].data != nil || !srcs[0].fi.IsDir()) && st.id != "" {
		// `COPY file /existing-dir` copies into the directory: look at the
		// stage's filesystem (only on a cache miss; the parent image,
		// part of the key, decides it).
		isDir, err := r.isDirInImage(ctx, st, dest)
		if err != nil {
			return err
		}
		if isDir {
			w.Close()
			if w, err = r.b.d.Content.Writer(ctx); err != nil {
				return err
			}
			defer w.Close()
			tw = tar.NewWriter(w)
			cw = &copyWriter{tw: tw, sum: sha256.New(), uid: uid, gid: gid, mode: mode, now: cw.now}
			if err := cw.copy(srcs[0], dest, true, c.add); err != nil {
				return err
			}
			if err := tw.Close(); err != nil {
				return err
			}
		}
	}
	d, size := w.Digest(), w.Size()
	l := &layer{desc: descLayer(d, size), diffID: d, finish: func(ctx context.Context) error {
		if _, err := w.Commit(ctx, d, size); err != nil {
			return fmt.Errorf("store layer: %w", err)
		}
		return nil
	}}
	return r.commit(ctx, st, key, createdBy, l, "")
}

// copyPlan resolves a COPY/ADD's sources in fsys and its destination in
// the stage (relative to WORKDIR; whether it names a directory).
func (r *run) copyPlan(ctx context.Context, fsys srcFS, st *stageState, c copySpec) (srcs []source, dest string, destIsDir bool, mode *os.FileMode, err error) {
	if c.chmod != "" {
		m, err := strconv.ParseUint(c.chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return nil, "", false, nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid chmod parameter %q", c.chmod))
		}
		fm := os.FileMode(m)
		mode = &fm
	}
	for _, sc := range c.contents {
		srcs = append(srcs, source{name: path.Base(sc.Path), data: []byte(sc.Data)})
	}
	for _, s := range c.srcs {
		if c.add && isURL(s) {
			data, name, err := fetchURL(ctx, s)
			if err != nil {
				return nil, "", false, nil, err
			}
			srcs = append(srcs, source{name: name, data: data})
			continue
		}
		found, err := resolveSources(fsys, s, c.from == "")
		if err != nil {
			return nil, "", false, nil, err
		}
		srcs = append(srcs, found...)
	}
	if len(srcs) == 0 {
		return nil, "", false, nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%s failed: no source files were specified", c.name))
	}
	dest = c.dest
	destIsDir = strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		dest = path.Join("/", st.cfg.Config.WorkingDir, dest)
	}
	dest = path.Clean(dest)
	if len(srcs) > 1 && !destIsDir {
		return nil, "", false, nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("When using %s with more than one source file, the destination must be a directory and end with a /", c.name))
	}
	if dest == "/" {
		destIsDir = true
	}
	return srcs, dest, destIsDir, mode, nil
}

func kindOf(srcs []source) string {
	if len(srcs) == 1 && srcs[0].fi != nil && !srcs[0].fi.IsDir() {
		return "file"
	}
	if len(srcs) == 1 && srcs[0].data != nil {
		return "file"
	}
	return "multi"
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// fetchURL downloads an ADD source.
func fetchURL(ctx context.Context, s string) ([]byte, string, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid URL %q", s))
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s, nil)
	if err != nil {
		return nil, "", errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("ADD failed: cannot download %s: %v", s, err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("ADD failed: cannot download %s: %s", s, resp.Status))
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<30))
	if err != nil {
		return nil, "", fmt.Errorf("ADD failed: download %s: %w", s, err)
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		name = "index.html"
	}
	return b, name, nil
}

// resolveSources finds the files a COPY source names, with wildcards.
func resolveSources(fsys srcFS, src string, fromContext bool) ([]source, error) {
	rel := relClean(src)
	var matches []string
	if strings.ContainsAny(rel, "*?[") {
		ms, err := fsys.Glob(rel)
		if err != nil {
			return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid source pattern %q: %v", src, err))
		}
		if len(ms) == 0 {
			return nil, nil
		}
		matches = ms
	} else {
		matches = []string{rel}
	}
	var out []source
	for _, m := range matches {
		fi, real, err := fsys.Stat(m)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				where := "build context or excluded by .dockerignore"
				if !fromContext {
					where = "the source image"
				}
				return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("COPY failed: file not found in %s: stat %s: file does not exist", where, src))
			}
			return nil, err
		}
		out = append(out, source{fsys: fsys, rel: real, fi: fi})
	}
	return out, nil
}

// copyWriter writes COPY sources as tar entries under their destination.
type copyWriter struct {
	tw       *tar.Writer
	sum      hash.Hash
	uid, gid int
	mode     *os.FileMode
	now      time.Time
	written  map[string]bool
}

func (cw *copyWriter) copy(s source, dest string, destIsDir, add bool) error {
	if s.data != nil {
		target := dest
		if destIsDir {
			target = path.Join(dest, s.name)
		}
		return cw.file(target, 0o644, s.data)
	}
	if s.fi.IsDir() {
		// A directory's contents go into the destination.
		if err := cw.dir(dest, s.fi.Mode().Perm(), s.fi.ModTime()); err != nil {
			return err
		}
		return cw.walk(s.fsys, s.rel, dest)
	}
	target := dest
	if destIsDir {
		target = path.Join(dest, path.Base("/"+s.rel))
	}
	if add {
		if ok, err := cw.untar(s.fsys, s.rel, dest); ok || err != nil {
			return err
		}
	}
	return cw.entry(s.fsys, s.rel, target, s.fi)
}

// walk copies the tree below rel to dest, in name order.
func (cw *copyWriter) walk(fsys srcFS, rel, dest string) error {
	names, err := fsys.ReadDir(rel)
	if err != nil {
		return err
	}
	for _, n := range names {
		child := path.Join(rel, n)
		fi, _, err := fsys.Lstat(child)
		if err != nil {
			return err
		}
		if err := cw.entry(fsys, child, path.Join(dest, n), nil); err != nil {
			return err
		}
		if fi.IsDir() {
			if err := cw.walk(fsys, child, path.Join(dest, n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// untar extracts a local archive for ADD; ok is false when it is not one.
func (cw *copyWriter) untar(fsys srcFS, rel, dest string) (bool, error) {
	f, err := fsys.Open(rel)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	if !isArchive(head[:n]) {
		return false, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	dec, err := compression.DecompressStream(f)
	if err != nil {
		return false, nil
	}
	defer dec.Close()
	tr := tar.NewReader(dec)
	first := true
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			if first {
				return false, nil // not a tar after all: copy as a file
			}
			return true, fmt.Errorf("ADD failed: %s: %w", path.Base("/"+rel), err)
		}
		first = false
		name := path.Join(dest, path.Clean("/"+hdr.Name))
		h := *hdr
		h.Name = strings.TrimPrefix(name, "/")
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if h.Typeflag == tar.TypeLink {
			h.Linkname = strings.TrimPrefix(path.Join(dest, path.Clean("/"+hdr.Linkname)), "/")
		}
		fmt.Fprintf(cw.sum, "%s|%o|%d|%d|%s|%d\n", h.Name, h.Mode, h.Uid, h.Gid, h.Linkname, h.Size)
		if err := cw.tw.WriteHeader(&h); err != nil {
			return true, err
		}
		if _, err := io.Copy(io.MultiWriter(cw.tw, cw.sum), tr); err != nil {
			return true, err
		}
	}
}

func (cw *copyWriter) perm(m os.FileMode) int64 {
	if cw.mode != nil {
		return int64(*cw.mode)
	}
	return int64(m.Perm() | (m & (os.ModeSetuid | os.ModeSetgid | os.ModeSticky)))
}

func (cw *copyWriter) dir(name string, m os.FileMode, mt time.Time) error {
	n := strings.TrimPrefix(name, "/")
	if n == "" {
		return nil
	}
	if cw.written == nil {
		cw.written = map[string]bool{}
	}
	if cw.written[n] {
		return nil
	}
	cw.written[n] = true
	h := &tar.Header{Typeflag: tar.TypeDir, Name: n + "/", Mode: cw.perm(m) | modeBits(m), Uid: cw.uid, Gid: cw.gid, ModTime: mt, Format: tar.FormatPAX}
	fmt.Fprintf(cw.sum, "d|%s|%o|%d|%d\n", h.Name, h.Mode, h.Uid, h.Gid)
	return cw.tw.WriteHeader(h)
}

func modeBits(os.FileMode) int64 { return 0 }

func (cw *copyWriter) file(name string, m os.FileMode, data []byte) error {
	h := &tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(name, "/"), Mode: cw.perm(m), Uid: cw.uid, Gid: cw.gid, Size: int64(len(data)), ModTime: cw.now, Format: tar.FormatPAX}
	fmt.Fprintf(cw.sum, "f|%s|%o|%d|%d|%d\n", h.Name, h.Mode, h.Uid, h.Gid, h.Size)
	if err := cw.tw.WriteHeader(h); err != nil {
		return err
	}
	_, err := io.MultiWriter(cw.tw, cw.sum).Write(data)
	return err
}

// entry writes rel as name; fi, when given, is what a followed symlink
// led to (a top-level source), otherwise rel itself is described.
func (cw *copyWriter) entry(fsys srcFS, rel, name string, fi os.FileInfo) error {
	link := ""
	if fi == nil {
		var err error
		if fi, link, err = fsys.Lstat(rel); err != nil {
			return err
		}
	}
	if fi.IsDir() {
		return cw.dir(name, fi.Mode(), fi.ModTime())
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return err
	}
	h.Name = strings.TrimPrefix(name, "/")
	h.Uid, h.Gid, h.Uname, h.Gname = cw.uid, cw.gid, "", ""
	h.Format = tar.FormatPAX
	h.AccessTime, h.ChangeTime = time.Time{}, time.Time{}
	//lint:ignore SA1019 clearing the deprecated field too: the context's xattrs are not copied
	h.PAXRecords, h.Xattrs = nil, nil
	if fi.Mode()&os.ModeSymlink == 0 {
		h.Mode = cw.perm(fi.Mode())
	}
	fmt.Fprintf(cw.sum, "e|%s|%o|%d|%d|%s|%d|%c\n", h.Name, h.Mode, h.Uid, h.Gid, h.Linkname, h.Size, h.Typeflag)
	if err := cw.tw.WriteHeader(h); err != nil {
		return err
	}
	if h.Typeflag != tar.TypeReg {
		return nil
	}
	f, err := fsys.Open(rel)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.MultiWriter(cw.tw, cw.sum), io.LimitReader(f, h.Size))
	return err
}

// chownIDs resolves --chown: numbers directly, names from the stage's
// /etc/passwd and /etc/group.
func (r *run) chownIDs(ctx context.Context, st *stageState, spec string) (int, int, error) {
	if spec == "" {
		return 0, 0, nil
	}
	if uid, gid, ok := numericChown(spec); ok {
		return uid, gid, nil
	}
	if st == nil || st.id == "" {
		return 0, 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unable to convert uid/gid chown string to host mapping: no users in a scratch image (%s)", spec))
	}
	if err := st.flush(); err != nil {
		return 0, 0, err
	}
	dir, release, err := r.b.mountImage(ctx, st.id)
	if err != nil {
		return 0, 0, err
	}
	defer release()
	passwd, _ := securejoin.SecureJoin(dir, "/etc/passwd")
	group, _ := securejoin.SecureJoin(dir, "/etc/group")
	eu, err := user.GetExecUserPath(spec, &user.ExecUser{}, passwd, group)
	if err != nil {
		return 0, 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("unable to convert uid/gid chown string to host mapping: %v", err))
	}
	// A user name alone sets the group to the user's own, as docker does.
	return eu.Uid, eu.Gid, nil
}

// numericChown parses a --chown of IDs only ("UID" or "UID:GID", each a
// decimal from 0 to 2147483647, docker's range), which needs no passwd or
// group lookup. Anything else goes to the lookup, which names the error.
func numericChown(spec string) (uid, gid int, ok bool) {
	u, g, hasGroup := strings.Cut(spec, ":")
	id := func(x string) (int, bool) {
		if x == "" || strings.TrimLeft(x, "0123456789") != "" {
			return 0, false // no sign, no spaces: digits only
		}
		n, err := strconv.ParseUint(x, 10, 31)
		return int(n), err == nil
	}
	uid, ok = id(u)
	if !ok {
		return 0, 0, false
	}
	if !hasGroup {
		return uid, uid, true
	}
	gid, ok = id(g)
	return uid, gid, ok
}

// fromImage resolves COPY --from: an earlier stage or an image.
func (r *run) fromImage(ctx context.Context, stage int, from string) (digest.Digest, error) {
	if j, ok := r.stageByName(from, stage); ok {
		st := r.stage(j)
		if st == nil {
			return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("stage %s is not built", from))
		}
		return st.id, nil
	}
	img, err := r.b.d.Images.Resolve(ctx, from)
	if err != nil && errdefs.IsNotFound(err) {
		if perr := r.b.d.Puller.Pull(ctx, from, api.PullOptions{}, io.Discard); perr == nil {
			img, err = r.b.d.Images.Resolve(ctx, from)
		}
	}
	if err != nil {
		return "", errdefs.ErrNotFound.WithMessage(fmt.Sprintf("COPY --from=%s: no stage or image named %s: %v", from, from, err))
	}
	return img.ID, nil
}

// mountImage mounts an image's root filesystem (read through a stopped
// container's writable layer) on a temporary directory.
func (b *Builder) mountImage(ctx context.Context, id digest.Digest) (string, func(), error) {
	created, err := b.d.Containers.Create(ctx, api.ContainerCreateRequest{Config: &containertypes.Config{
		Image: id.String(), Cmd: []string{"/dev/null/nothing"}, Entrypoint: []string{},
		Healthcheck: &containertypes.HealthConfig{Test: []string{"NONE"}},
	}})
	if err != nil {
		return "", nil, fmt.Errorf("reach the files of image %s: %w", shortID(id), err)
	}
	cleanup := func() {
		_ = b.d.Containers.Remove(context.WithoutCancel(ctx), created.ID, api.RemoveOptions{Force: true, RemoveVolumes: true})
	}
	mounts, err := b.d.Snapshots.Mounts(ctx, created.ID)
	if err != nil {
		cleanup()
		return "", nil, err
	}
	dir, err := os.MkdirTemp(filepath.Join(b.d.DataRoot, "builder", "tmp"), "root-")
	if err != nil {
		cleanup()
		return "", nil, err
	}
	if err := snapshot.MountAll(mounts, dir); err != nil {
		os.Remove(dir)
		cleanup()
		return "", nil, err
	}
	return dir, func() {
		_ = snapshot.UnmountAll(dir)
		_ = os.Remove(dir)
		cleanup()
	}, nil
}

// isDirInImage reports whether p is a directory in the stage's image.
func (r *run) isDirInImage(ctx context.Context, st *stageState, p string) (bool, error) {
	if err := st.flush(); err != nil {
		return false, err
	}
	dir, release, err := r.b.mountImage(ctx, st.id)
	if err != nil {
		return false, err
	}
	defer release()
	full, err := securejoin.SecureJoin(dir, p)
	if err != nil {
		return false, nil
	}
	fi, err := os.Stat(full)
	return err == nil && fi.IsDir(), nil
}
