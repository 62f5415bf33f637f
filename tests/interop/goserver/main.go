// Command goserver is a plain Go net/rpc server for tether's interop
// tests: the calculator and the Codec echo service, served with Go's
// default gob codec on one port and net/rpc/jsonrpc on another.
// Standard library only.
//
//	goserver
//
// Prints "gob ADDR" and "jsonrpc ADDR" once listening; runs until killed.
package main

import (
	"errors"
	"fmt"
	"net"
	"net/rpc"
	"net/rpc/jsonrpc"
	"os"
)

type Args struct{ A, B int }

type Calculator int

func (*Calculator) Add(a *Args, r *int) error { *r = a.A + a.B; return nil }
func (*Calculator) Sub(a *Args, r *int) error { *r = a.A - a.B; return nil }
func (*Calculator) Mul(a *Args, r *int) error { *r = a.A * a.B; return nil }
func (*Calculator) Div(a *Args, r *int) error {
	if a.B == 0 {
		return errors.New("divide by zero")
	}
	*r = a.A / a.B
	return nil
}

type Inner struct {
	Name  string
	Count int64
}

type Rich struct {
	Name   string
	Values []int64
	Scores map[string]int64
	Child  *Inner
	Tags   []string
	Data   []byte
	Ratio  float64
	Ok     bool
	Big    uint64
	Small  int32
	USmall uint32
	F      float32
	Color  int32
	Items  []Inner
	Labels map[int64]string
	Opt    *int64
	S      int64
	Ratios []float64
}

type Codec int

func (*Codec) Echo(a *Rich, r *Rich) error     { *r = *a; return nil }
func (*Codec) EchoPool(a *Rich, r *Rich) error { *r = *a; return nil }

func listen() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "goserver:", err)
		os.Exit(1)
	}
	return ln
}

func main() {
	rpc.Register(new(Calculator))
	rpc.Register(new(Codec))
	g, j := listen(), listen()
	fmt.Printf("gob %s\njsonrpc %s\n", g.Addr(), j.Addr())
	go rpc.Accept(g)
	for {
		c, err := j.Accept()
		if err != nil {
			return
		}
		go jsonrpc.ServeConn(c)
	}
}
