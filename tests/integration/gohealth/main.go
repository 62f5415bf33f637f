// gohealth - Go's own net/rpc clients (gob and jsonrpc, standard library
// only) calling tether's built-in _tether.Health.Check, for
// test_health_go.sh.  It reads commands from stdin, one per line, and
// prints one answer line per command:
//
//	check SERVICE   -> the status string ("SERVING", ...), "" for the server
//	slow N          -> starts N Calculator.Add calls (the server's handlers
//	                   are slow), prints "started"
//	wait            -> waits for the slow calls, prints "done ERRORS"
package main

import (
	"bufio"
	"fmt"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
	"strconv"
	"strings"
)

type Args struct{ A, B int }

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: gohealth ADDR gob|jsonrpc")
		os.Exit(2)
	}
	addr, codec := os.Args[1], os.Args[2]
	var c *rpc.Client
	var err error
	if codec == "jsonrpc" {
		c, err = jsonrpc.Dial("tcp", addr)
	} else {
		c, err = rpc.Dial("tcp", addr)
	}
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	var pending []*rpc.Call
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "check":
			service := ""
			if len(f) > 1 {
				service = f[1]
			}
			var status string
			if err := c.Call("_tether.Health.Check", service, &status); err != nil {
				fmt.Println("error:", err)
			} else {
				fmt.Println(status)
			}
		case "slow":
			n, _ := strconv.Atoi(f[1])
			for i := 0; i < n; i++ {
				var r int
				pending = append(pending, c.Go("Calculator.Add", &Args{i, 1}, &r, nil))
			}
			fmt.Println("started")
		case "wait":
			bad := 0
			for _, p := range pending {
				<-p.Done
				if p.Error != nil {
					bad++
				}
			}
			pending = nil
			fmt.Println("done", bad)
		}
	}
}
