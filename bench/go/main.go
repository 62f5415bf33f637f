// Command gorpc-bench is the Go net/rpc reference for tether's benchmark:
// the calculator service of the Go net/rpc pattern (default gob codec) and
// a client running the same workloads as tether-bench-client, printing the
// same RESULT lines. Standard library only; bench/run.sh builds it with
// GO111MODULE=off, so no module download is ever attempted.
//
//	gorpc-bench server --listen 127.0.0.1:PORT
//	gorpc-bench client --addr 127.0.0.1:PORT --mode seq [--calls N] [--warmup N]
//	gorpc-bench client --addr 127.0.0.1:PORT --mode pipe [--conns C] [--depth D]
//	                   [--seconds S] [--warmup-ms W]
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/rpc"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Args and Calculator are written exactly as in the Go pattern tether
// mirrors, so the service is what a Go user would deploy.
type Args struct {
	A, B int
}

type Calculator int

func (t *Calculator) Add(args *Args, reply *int) error {
	*reply = args.A + args.B
	return nil
}

func (t *Calculator) Sub(args *Args, reply *int) error {
	*reply = args.A - args.B
	return nil
}

func (t *Calculator) Mul(args *Args, reply *int) error {
	*reply = args.A * args.B
	return nil
}

func (t *Calculator) Div(args *Args, reply *int) error {
	if args.B == 0 {
		return errors.New("divide by zero")
	}
	*reply = args.A / args.B
	return nil
}

func serve(addr string) error {
	if err := rpc.Register(new(Calculator)); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	// One goroutine per connection, gob codec: net/rpc's defaults.
	rpc.Accept(ln)
	return nil
}

// percentile uses the same nearest-rank definition as bench_util.h.
func percentile(v []time.Duration, q float64) time.Duration {
	rank := int(q*float64(len(v)) + 0.999999)
	if rank < 1 {
		rank = 1
	}
	if rank > len(v) {
		rank = len(v)
	}
	return v[rank-1]
}

func runSeq(addr string, calls, warmup int) error {
	c, err := rpc.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	lat := make([]time.Duration, calls)
	args := &Args{1, 2}
	for i := 0; i < warmup+calls; i++ {
		var reply int
		t0 := time.Now()
		if err := c.Call("Calculator.Add", args, &reply); err != nil {
			return err
		}
		d := time.Since(t0)
		if reply != 3 {
			return fmt.Errorf("wrong reply %d", reply)
		}
		if i >= warmup {
			lat[i-warmup] = d
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Printf("RESULT p50_us=%.2f p99_us=%.2f calls=%d\n",
		float64(percentile(lat, 0.50).Nanoseconds())/1e3,
		float64(percentile(lat, 0.99).Nanoseconds())/1e3, calls)
	return nil
}

// runPipe keeps depth calls outstanding on each of conns connections, the
// idiomatic Go way: one goroutine per outstanding call, all sharing the
// connection's *rpc.Client.
func runPipe(addr string, conns, depth int, seconds float64, warmupMs int) error {
	var done uint64
	var stop int32
	var failed atomic.Value
	var wg sync.WaitGroup
	clients := make([]*rpc.Client, conns)
	for i := range clients {
		c, err := rpc.Dial("tcp", addr)
		if err != nil {
			return err
		}
		clients[i] = c
	}
	for _, c := range clients {
		for d := 0; d < depth; d++ {
			wg.Add(1)
			go func(c *rpc.Client) {
				defer wg.Done()
				args := &Args{1, 2}
				for atomic.LoadInt32(&stop) == 0 {
					var reply int
					if err := c.Call("Calculator.Add", args, &reply); err != nil || reply != 3 {
						failed.Store(fmt.Sprintf("call failed: %v (reply %d)", err, reply))
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
	time.Sleep(time.Duration(seconds * float64(time.Second)))
	c1 := atomic.LoadUint64(&done)
	el := time.Since(t0)
	atomic.StoreInt32(&stop, 1)
	wg.Wait()
	for _, c := range clients {
		c.Close()
	}
	if f := failed.Load(); f != nil {
		return errors.New(f.(string))
	}
	fmt.Printf("RESULT calls_per_s=%.0f calls=%d conns=%d depth=%d\n",
		float64(c1-c0)/el.Seconds(), c1-c0, conns, depth)
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: gorpc-bench server|client [flags]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "server address")
	addr := fs.String("addr", "", "server to call")
	mode := fs.String("mode", "seq", "seq or pipe")
	calls := fs.Int("calls", 20000, "measured sequential calls")
	warmup := fs.Int("warmup", 2000, "warm-up sequential calls")
	conns := fs.Int("conns", 1, "connections (pipe)")
	depth := fs.Int("depth", 64, "calls in flight per connection (pipe)")
	seconds := fs.Float64("seconds", 2, "measured seconds (pipe)")
	warmupMs := fs.Int("warmup-ms", 500, "warm-up milliseconds (pipe)")
	fs.Parse(os.Args[2:])

	var err error
	switch os.Args[1] {
	case "server":
		err = serve(*listen)
	case "client":
		if *mode == "pipe" {
			err = runPipe(*addr, *conns, *depth, *seconds, *warmupMs)
		} else {
			err = runSeq(*addr, *calls, *warmup)
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gorpc-bench:", err)
		os.Exit(1)
	}
}
