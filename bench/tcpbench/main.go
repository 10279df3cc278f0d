// Command tcpbench is the bench's TCP throughput probe: a static binary
// that runs in any container (bind-mounted) and on the host.
//
//	tcpbench server ADDR        accept connections and discard what they send
//	tcpbench client ADDR SECS   write 256 KiB chunks for SECS seconds; print Gbit/s
package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"
)

const chunk = 256 << 10

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: tcpbench server ADDR | client ADDR SECS")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "server":
		l, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				continue
			}
			go func() {
				_, _ = io.CopyBuffer(io.Discard, c, make([]byte, chunk))
				c.Close()
			}()
		}
	case "client":
		secs := 3.0
		if len(os.Args) > 3 {
			secs, _ = strconv.ParseFloat(os.Args[3], 64)
		}
		var c net.Conn
		var err error
		for i := 0; i < 100; i++ { // the server may still be starting
			if c, err = net.Dial("tcp", os.Args[2]); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		buf := make([]byte, chunk)
		var n int64
		start := time.Now()
		end := start.Add(time.Duration(secs * float64(time.Second)))
		for time.Now().Before(end) {
			w, err := c.Write(buf)
			n += int64(w)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
		el := time.Since(start)
		c.Close()
		fmt.Printf("%.3f\n", float64(n)*8/el.Seconds()/1e9)
	default:
		fmt.Fprintln(os.Stderr, "unknown mode", os.Args[1])
		os.Exit(2)
	}
}
