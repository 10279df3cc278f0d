package api

import (
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/jsonstream"
)

// maxFrame bounds one stdcopy frame; longer writes are split so that a
// reader never needs a huge buffer.
const maxFrame = 1 << 20

// stdWriter frames everything written to it as one stream of docker's
// multiplexed format (8-byte header: stream, 0, 0, 0, big-endian size).
type stdWriter struct {
	w      io.Writer
	stream stdcopy.StdType
	hdr    [8]byte
}

// NewStdWriter returns a writer that frames each Write as stdcopy frames of
// the given stream (stdcopy.Stdout, Stderr or Systemerr), the format of
// non-TTY attach and logs streams; github.com/moby/moby/api/pkg/stdcopy
// only has the reading side. Each frame is written with a single Write.
func NewStdWriter(w io.Writer, stream stdcopy.StdType) io.Writer {
	return &stdWriter{w: w, stream: stream}
}

func (s *stdWriter) Write(p []byte) (int, error) {
	written := 0
	buf := make([]byte, 0, 8+min(len(p), maxFrame))
	for len(p) > 0 {
		chunk := p[:min(len(p), maxFrame)]
		s.hdr = [8]byte{byte(s.stream)}
		binary.BigEndian.PutUint32(s.hdr[4:], uint32(len(chunk)))
		buf = append(append(buf[:0], s.hdr[:]...), chunk...)
		if _, err := s.w.Write(buf); err != nil {
			return written, err
		}
		written += len(chunk)
		p = p[len(chunk):]
	}
	return written, nil
}

// streamWriter writes a response body that the client consumes while it is
// produced: it remembers whether anything was written (after that, errors
// can only be reported in the stream) and optionally flushes every write.
type streamWriter struct {
	w          http.ResponseWriter
	rc         *http.ResponseController
	flushEach  bool
	wroteBytes bool
}

func newStreamWriter(w http.ResponseWriter, flushEach bool) *streamWriter {
	return &streamWriter{w: w, rc: http.NewResponseController(w), flushEach: flushEach}
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.wroteBytes = true
	n, err := s.w.Write(p)
	if err == nil && s.flushEach {
		err = s.rc.Flush()
	}
	return n, err
}

// Flush sends buffered data to the client.
func (s *streamWriter) Flush() error { return s.rc.Flush() }

// started reports whether the response has begun, i.e. an error can no
// longer change the status code.
func (s *streamWriter) started() bool { return s.wroteBytes }

// streamNewline ends JSON messages the way dockerd's streamformatter does.
const streamNewline = "\r\n"

// jsonErrorMessage is an in-stream error of a JSON message stream: docker
// clients read errorDetail; old ones read the deprecated "error" string.
type jsonErrorMessage struct {
	ErrorDetail *jsonstream.Error `json:"errorDetail"`
	Error       string            `json:"error"`
}

// writeJSONMessage writes one message of a JSON message stream.
func writeJSONMessage(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, streamNewline...))
	return err
}

// writeStreamError reports err inside a JSON message stream that has
// already started.
func writeStreamError(w io.Writer, err error) error {
	return writeJSONMessage(w, jsonErrorMessage{
		ErrorDetail: &jsonstream.Error{Message: err.Error()},
		Error:       err.Error(),
	})
}
