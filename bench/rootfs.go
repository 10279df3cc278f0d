package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// busyboxPath is Debian's busybox-static: one static binary, so the rootfs
// needs no libraries and every engine runs exactly the same bytes.
const busyboxPath = "/bin/busybox"

// writeBusyboxTar writes the benchmark image's rootfs as a tarball: bin/
// with busybox and a symlink per applet (`busybox --list`), etc/passwd,
// etc/group and the usual empty mount points.
func writeBusyboxTar(path string) error {
	out, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("%s --list: %w (apt-get install busybox-static)", busyboxPath, err)
	}
	bb, err := os.Open(busyboxPath)
	if err != nil {
		return err
	}
	defer bb.Close()
	st, err := bb.Stat()
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	now := time.Now().Truncate(time.Second)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, ModTime: now})
	}
	file := func(name, content string) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content)), ModTime: now}); err != nil {
			return err
		}
		_, err := io.WriteString(tw, content)
		return err
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "root", "sys"} {
		if err := dir(d, 0o755); err != nil {
			return err
		}
	}
	if err := dir("tmp", 0o1777); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: st.Size(), ModTime: now}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, bb); err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", Mode: 0o777, ModTime: now}); err != nil {
			return err
		}
	}
	if err := file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"); err != nil {
		return err
	}
	if err := file("etc/group", "root:x:0:\nnogroup:x:65534:\n"); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}
