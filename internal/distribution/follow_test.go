package distribution

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ingestFile is an ingest being written: a file the test appends to.
func ingestFile(t *testing.T) (*os.File, *os.File) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ingest")
	w, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	r, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	return w, r
}

func TestFollowerReadsBehindTheDownload(t *testing.T) {
	w, r := ingestFile(t)
	var progress bytes.Buffer
	fl := newFollower(r, NewProgress(&progress), "abc", 11)
	out := make(chan string, 1)
	go func() {
		b, err := io.ReadAll(fl)
		if err != nil {
			b = append(b, "ERR:"+err.Error()...)
		}
		out <- string(b)
	}()
	io.MultiWriter(w, fl).Write([]byte("hello "))
	io.MultiWriter(w, fl).Write([]byte("world"))
	// Everything is written, but only the download's end (verified) ends
	// the stream: the reader is still waiting.
	select {
	case got := <-out:
		t.Fatalf("the extraction ended before the download did: %q", got)
	default:
	}
	if strings.Contains(progress.String(), "Extracting") {
		t.Errorf("extraction progress during the download: %s", progress.String())
	}
	fl.reportProgress()
	fl.end(nil)
	if got := <-out; got != "hello world" {
		t.Errorf("read %q", got)
	}
	if !strings.Contains(progress.String(), `"status":"Extracting","progressDetail":{"current":11,"total":11}`) {
		t.Errorf("no final extraction progress: %s", progress.String())
	}
	fl.end(errors.New("too late")) // only the first end counts
	if n, err := fl.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Errorf("read after the end: %d, %v", n, err)
	}
}

func TestFollowerFailsWithTheDownload(t *testing.T) {
	w, r := ingestFile(t)
	fl := newFollower(r, nil, "", 100)
	io.MultiWriter(w, fl).Write([]byte("partial"))
	b := make([]byte, 3)
	if n, err := fl.Read(b); n != 3 || err != nil {
		t.Fatalf("read: %d, %v", n, err)
	}
	cut := errors.New("connection reset")
	fl.end(cut)
	// Bytes are left, but a cut or wrong download must not look complete.
	if n, err := fl.Read(b); n != 0 || !errors.Is(err, cut) {
		t.Errorf("read after a failed download: %d, %v", n, err)
	}
}
