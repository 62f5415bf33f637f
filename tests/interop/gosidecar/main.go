// Command gosidecar is a plain Go net/rpc server (gob codec, standard
// library only) for tests/integration/test_sidecar.sh: a program that
// knows nothing of tether, run under `tether register`.
//
//	gosidecar -addr 127.0.0.1:PORT [-delay 1s] [-on-term 'CMD'] [-exit-code 3]
//
// It waits -delay before it listens (so a test sees the time before the
// port is up), prints "listening ADDR", and serves Calculator.Add and
// Calculator.Div.  On SIGTERM it prints "got SIGTERM", runs -on-term with
// /bin/sh -c and prints each line of its output as "on-term: LINE" (the
// test passes `tether list` here, to see the registry as it was when the
// signal arrived), prints "on-term done" and exits with -exit-code.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/rpc"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

type Args struct{ A, B int64 }

type Calculator int

func (*Calculator) Add(a *Args, r *int64) error { *r = a.A + a.B; return nil }
func (*Calculator) Div(a *Args, r *int64) error {
	if a.B == 0 {
		return errors.New("divide by zero")
	}
	*r = a.A / a.B
	return nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	delay := flag.Duration("delay", 0, "wait this long before listening")
	onTerm := flag.String("on-term", "", "shell command to run when SIGTERM arrives")
	code := flag.Int("exit-code", 0, "exit status after SIGTERM")
	flag.Parse()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Println("got SIGTERM")
		if *onTerm != "" {
			out, err := exec.Command("/bin/sh", "-c", *onTerm).CombinedOutput()
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				fmt.Println("on-term:", sc.Text())
			}
			if err != nil {
				fmt.Println("on-term failed:", err)
			}
		}
		fmt.Println("on-term done")
		os.Exit(*code)
	}()

	time.Sleep(*delay)
	rpc.Register(new(Calculator))
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gosidecar:", err)
		os.Exit(1)
	}
	fmt.Println("listening", ln.Addr())
	rpc.Accept(ln)
}
