// Command gocompat is the Go side of bench/gocompat/run.sh: Go's net/rpc
// calculator server (gob and jsonrpc on two ports) and a load client using
// Go's own net/rpc clients.  Standard library only (GO111MODULE=off).
//
//	gocompat server                      prints "gob ADDR" and "jsonrpc ADDR"
//	gocompat client -addr A -codec gob|jsonrpc -conns C -depth D -seconds S
//
// The client keeps D calls in flight per connection (one goroutine each,
// the idiomatic Go way) and prints "RESULT calls=N seconds=S calls_per_s=R".
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type Args struct{ A, B int }

type Calculator int

func (*Calculator) Add(a *Args, r *int) error { *r = a.A + a.B; return nil }
func (*Calculator) Div(a *Args, r *int) error {
	if a.B == 0 {
		return errors.New("divide by zero")
	}
	*r = a.A / a.B
	return nil
}

func server() error {
	rpc.Register(new(Calculator))
	g, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	j, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("gob %s\njsonrpc %s\n", g.Addr(), j.Addr())
	go rpc.Accept(g)
	for {
		c, err := j.Accept()
		if err != nil {
			return err
		}
		go jsonrpc.ServeConn(c)
	}
}

func client(addr, codec string, conns, depth int, seconds float64, warmupMs int) error {
	var done uint64
	var stop int32
	var failed atomic.Value
	var wg sync.WaitGroup
	cs := make([]*rpc.Client, conns)
	for i := range cs {
		var err error
		if codec == "jsonrpc" {
			cs[i], err = jsonrpc.Dial("tcp", addr)
		} else {
			cs[i], err = rpc.Dial("tcp", addr)
		}
		if err != nil {
			return err
		}
	}
	for _, c := range cs {
		for d := 0; d < depth; d++ {
			wg.Add(1)
			go func(c *rpc.Client) {
				defer wg.Done()
				args := &Args{1, 2}
				for atomic.LoadInt32(&stop) == 0 {
					var r int
					if err := c.Call("Calculator.Add", args, &r); err != nil || r != 3 {
						failed.Store(fmt.Sprintf("call failed: %v (reply %d)", err, r))
						return
					}
					atomic.AddUint64(&done, 1)
				}
			}(c)
		}
	}
	time.Sleep(time.Duration(warmupMs) * time.Millisecond)
	c0 := atomic.LoadUint64(&done)
	t0 := time.Now()
	// The server's CPU time is read by run.sh at these two marks.
	fmt.Println("MARK start")
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	c1 := atomic.LoadUint64(&done)
	el := time.Since(t0)
	fmt.Println("MARK stop")
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	for _, c := range cs {
		c.Close()
	}
	if f := failed.Load(); f != nil {
		return errors.New(f.(string))
	}
	fmt.Printf("RESULT calls=%d seconds=%.3f calls_per_s=%.0f\n", c1-c0, el.Seconds(),
		float64(c1-c0)/el.Seconds())
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gocompat server|client [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	addr := fs.String("addr", "", "server to call")
	codec := fs.String("codec", "gob", "gob or jsonrpc")
	conns := fs.Int("conns", 1, "connections")
	depth := fs.Int("depth", 64, "calls in flight per connection")
	seconds := fs.Float64("seconds", 2, "measured seconds")
	warmupMs := fs.Int("warmup-ms", 300, "warm-up milliseconds")
	fs.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "server":
		err = server()
	case "client":
		err = client(*addr, *codec, *conns, *depth, *seconds, *warmupMs)
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gocompat:", err)
		os.Exit(1)
	}
}
