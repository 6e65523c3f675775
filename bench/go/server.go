// The Go baseline for netbench: the seed's line protocol written with Go's net and bufio
// packages, as a Go programmer writes it by hand.
//
//	server [-flush idle|each]
//
// It listens on 127.0.0.1 at a port the OS picks, prints "PORT <n> PID <pid>" on stdout (its
// own process id, for netbench to read its CPU time from when a profiler wraps it), greets every
// connection with "Please enter your name", answers every line NAME with "Hello, NAME!", and
// exits when its stdin closes (the netbench driver holds the other end).
//
// Flushing: with -flush idle (the default, and what netbench's `go` baseline runs) replies
// collect in a bufio.Writer that is flushed only when the bufio.Reader holds no complete
// request line, the usual Go idiom for pipelined line protocols (the common spelling checks
// r.Buffered() == 0; we also flush when only a partial line is buffered, since the next read
// may wait for more input). With -flush each every reply is flushed as it is written, which
// is what a server without pipelining in mind does.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
)

const greeting = "Please enter your name\n"

func main() {
	flush := flag.String("flush", "idle", "when to flush replies: idle (no complete request buffered) or each")
	flag.Parse()
	var each bool
	switch *flush {
	case "idle":
	case "each":
		each = true
	default:
		fmt.Fprintf(os.Stderr, "unknown -flush %q (idle or each)\n", *flush)
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("PORT %d PID %d\n", ln.Addr().(*net.TCPAddr).Port, os.Getpid())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			continue
		}
		go serve(conn, each)
	}
}

// serve answers one connection until the client leaves. Go's TCP connections have
// TCP_NODELAY set by default, as ours and the tokio baselines do.
func serve(conn net.Conn, each bool) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	w := bufio.NewWriter(conn)
	w.WriteString(greeting)
	if w.Flush() != nil {
		return
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		name := strings.TrimRight(line, "\r\n")
		w.WriteString("Hello, ")
		w.WriteString(name)
		w.WriteString("!\n")
		if each || !completeLineBuffered(r) {
			if w.Flush() != nil {
				return
			}
		}
	}
}

// completeLineBuffered says whether r can return another line without reading from the
// connection.
func completeLineBuffered(r *bufio.Reader) bool {
	n := r.Buffered()
	if n == 0 {
		return false
	}
	buffered, _ := r.Peek(n)
	return bytes.IndexByte(buffered, '\n') >= 0
}
